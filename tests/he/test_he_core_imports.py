"""The HE parties are sans-IO: no network, clock, thread or direct TenSEAL import
(TenSEAL only through ``secagg._extras.require``).  The round driver is
:func:`secagg.runtime.he_sum` and the simulation :mod:`secagg.sim.he`: nothing in
``secagg/he`` drives a round or imports the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HE = Path(__file__).resolve().parents[2] / "secagg" / "he"
FORBIDDEN = {"socket", "asyncio", "threading", "concurrent", "multiprocessing", "time",
             "subprocess", "http", "urllib", "tenseal", "torch", "random", "secagg.sim",
             "secagg.runtime"}
CORE = ["params.py", "envelope.py", "keys.py", "session.py", "client.py", "server.py",
        "decryptor.py", "payload.py", "api.py"]


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports(name):
    mods: set[str] = set()
    for node in ast.walk(ast.parse((HE / name).read_text())):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    bad = {m for m in mods for f in FORBIDDEN if m == f or m.startswith(f + ".")}
    assert not bad and "numpy.random" not in mods, bad


def test_every_he_module_is_classified():
    assert set(CORE) | {"__init__.py"} == {
        p.name for p in HE.glob("*.py")}
