"""The sans-IO core imports no network, clock, thread, asyncio or heavy ML modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "secagg" / "masking"
FORBIDDEN = {
    "socket",
    "asyncio",
    "threading",
    "concurrent",
    "multiprocessing",
    "time",
    "subprocess",
    "http",
    "urllib",
    "requests",
    "torch",
    "tenseal",
    "transformers",
    "opacus",
    "random",
    "secagg.sim",
}
FILES = ["client.py", "server.py", "messages.py", "config.py", "graph.py", "_common.py"]


@pytest.mark.parametrize("name", FILES)
def test_no_io_imports(name: str) -> None:
    tree = ast.parse((CORE / name).read_text())
    mods: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module)
    bad = {x for x in mods for f in FORBIDDEN if x == f or x.startswith(f + ".")}
    assert not bad, bad
    assert "numpy.random" not in mods
