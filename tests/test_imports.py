"""Import hygiene of the core packages.

* ``secagg.primitives`` and ``secagg.encoding`` never import :mod:`random` or
  ``numpy.random`` (checked on the source AST and, in a fresh interpreter, on
  ``sys.modules``): secrets come only from ``secagg.primitives.rand``.
* The sans-IO core packages (primitives, encoding, masking, lightsecagg, he, dp —
  whichever exist) import no network/async stack and no torch/tenseal at module
  import time.
* Layering: a core never imports the layers above it (runtime, net, sim, train,
  integrations, bench) — not at module level, not inside a function, not under
  ``TYPE_CHECKING`` and not through ``importlib``.
* The runtime and the simulation layer load no optional heavy dependency (torch,
  tenseal, ray) when imported: a core-only install runs ``secagg simulate``.
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
RNG_FREE = ("primitives", "encoding", "lightsecagg")
CORE = ("primitives", "encoding", "masking", "lightsecagg", "he", "dp")
FORBIDDEN_IN_CORE = ("socket", "asyncio", "http", "torch", "tenseal")
ABOVE_CORE = ("runtime", "net", "sim", "train", "integrations", "bench")
RUNTIME_LAYERS = ("runtime", "sim")
HEAVY = ("torch", "tenseal", "ray", "opacus", "transformers")


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


def _secagg_imports(tree: ast.AST) -> set[str]:
    """Every ``secagg.*`` module a file imports, however it does it (``import``,
    ``from``, relative ``from``, or a string passed to ``import_module``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 0:
                found.add(node.module)
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in {"import_module", "__import__", "require"}:
                found.update(a.value for a in node.args
                             if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return {n for n in found if n == "secagg" or n.startswith("secagg.")}


@pytest.mark.parametrize("pkg", _existing(CORE))
def test_cores_never_import_the_layers_above_them(pkg):
    forbidden = tuple(f"secagg.{p}" for p in ABOVE_CORE)
    for path in sorted((PKG / pkg).rglob("*.py")):
        names = _secagg_imports(ast.parse(path.read_text(), filename=str(path)))
        bad = sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_layering_scan_catches_every_spelling():
    src = (
        "import secagg.sim\nfrom secagg.runtime import driver\n"
        "def f():\n    from secagg.bench import scale\n"
        "import importlib\nimportlib.import_module('secagg.train.loop')\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from secagg.net import x\n"
    )
    assert {"secagg.sim", "secagg.runtime", "secagg.bench", "secagg.train.loop",
            "secagg.net"} <= _secagg_imports(ast.parse(src))


def test_runtime_and_sim_load_no_heavy_optional_dependency():
    mods = [m for p in RUNTIME_LAYERS for m in _modules(p) if m != "secagg.runtime.ray_pool"]
    out = _probe([*mods, "secagg.sim.cli", "secagg.cli"], HEAVY)
    assert out["errors"] == {} and out["missing"] == [], out
    assert out["present"] == [], out
