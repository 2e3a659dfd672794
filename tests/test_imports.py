"""Import hygiene of the core packages.

* ``secagg.primitives`` and ``secagg.encoding`` never import :mod:`random` or
  ``numpy.random`` (checked on the source AST and, in a fresh interpreter, on
  ``sys.modules``): secrets come only from ``secagg.primitives.rand``.
* The sans-IO core packages (primitives, encoding, masking, he, dp, sim — whichever
  exist) import no network/async stack and no torch/tenseal at module import time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "secagg"
RNG_FREE = ("primitives", "encoding")
CORE = ("primitives", "encoding", "masking", "he", "dp", "sim")
FORBIDDEN_IN_CORE = ("socket", "asyncio", "http", "torch", "tenseal")


def _modules(pkg: str) -> list[str]:
    base = PKG / pkg
    mods = []
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(["secagg", *parts]))
    return mods


def _existing(pkgs: tuple[str, ...]) -> list[str]:
    return [p for p in pkgs if (PKG / p).is_dir() and any((PKG / p).rglob("*.py"))]


def _imported_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Attribute) and node.attr == "random":
            # np.random / numpy.random used through an attribute
            if isinstance(node.value, ast.Name) and node.value.id in {"np", "numpy"}:
                names.add("numpy.random")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
            node.func.id == "__import__"
        ):
            names.add("__import__")
    return names


@pytest.mark.parametrize("pkg", RNG_FREE)
def test_source_never_imports_random(pkg):
    files = sorted((PKG / pkg).rglob("*.py"))
    assert files
    for path in files:
        names = _imported_names(ast.parse(path.read_text(), filename=str(path)))
        bad = {n for n in names if n == "random" or n.startswith("random.")
               or n.startswith("numpy.random") or n == "__import__"}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_ast_scan_catches_what_it_should():
    src = (
        "import random\nfrom numpy.random import default_rng\n"
        "import numpy as np\nnp.random.seed(1)\n"
    )
    names = _imported_names(ast.parse(src))
    assert {"random", "numpy.random", "numpy.random.default_rng"} <= names


def _probe(modules: list[str], forbidden: tuple[str, ...]) -> dict[str, object]:
    script = f"""
import importlib, json, sys
missing, errors = [], {{}}
for m in {modules!r}:
    try:
        importlib.import_module(m)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("secagg"):
            missing.append(m)
        else:
            errors[m] = repr(exc)
    except Exception as exc:
        errors[m] = repr(exc)
present = sorted(
    n for n in sys.modules if any(n == f or n.startswith(f + ".") for f in {forbidden!r})
)
print(json.dumps({{"present": present, "missing": missing, "errors": errors}}))
"""
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    out: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_rng_free_packages_do_not_load_random_modules():
    mods = [m for p in RNG_FREE for m in _modules(p)]
    out = _probe(mods, ("random", "numpy.random"))
    assert out["errors"] == {} and out["missing"] == []
    assert out["present"] == [], out


@pytest.mark.parametrize("pkg", _existing(CORE))
def test_core_package_imports_no_io_or_heavy_modules(pkg):
    out = _probe(_modules(pkg), FORBIDDEN_IN_CORE)
    assert out["errors"] == {}, out["errors"]
    assert out["present"] == [], f"secagg.{pkg} pulls in {out['present']}"


def test_probe_detects_a_forbidden_import():
    out = _probe(["asyncio"], FORBIDDEN_IN_CORE)
    assert "asyncio" in out["present"] and "socket" in out["present"]
