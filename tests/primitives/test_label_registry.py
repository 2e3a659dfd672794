"""Every KDF purpose used in the code is listed in the label registry of protocols/primitives.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _purposes_in_code() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "secagg").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            lit = None
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "purpose" and isinstance(kw.value, ast.Constant):
                        lit = kw.value.value
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else getattr(fn, "attr", None)
                if name == "encode_info" and node.args and isinstance(node.args[0], ast.Constant):
                    lit = node.args[0].value
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for tgt in node.targets:
                    if isinstance(tgt, ast.Name) and tgt.id.endswith("_PURPOSE"):
                        lit = node.value.value
            if isinstance(lit, str):
                found.setdefault(lit, str(path.relative_to(ROOT)))
    return found


def test_registry_lists_every_purpose():
    spec = (ROOT / "protocols" / "primitives.md").read_text()
    registry = set(re.findall(r"^\| `([^`]+)` \|", spec, flags=re.M))
    code = _purposes_in_code()
    assert {"prg/aes-128-ctr", "insecure-deterministic-rng", "aead-ad"} <= set(code)
    missing = {p: where for p, where in code.items() if p not in registry}
    assert not missing, f"add these purposes to the registry in protocols/primitives.md: {missing}"
