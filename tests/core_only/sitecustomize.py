"""Make this interpreter look like a core-only install (``pip install secagg``).

Put this directory first on ``PYTHONPATH``: Python imports ``sitecustomize`` at
start-up, and this one installs a finder that refuses every optional dependency
(the extras in pyproject.toml: he, dp, train, bench, ray, flwr), so ``import
rich`` raises ``ModuleNotFoundError`` exactly as on a machine without it.
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = frozenset({
    "rich", "torch", "tenseal", "ray", "flwr", "opacus", "transformers", "peft",
    "matplotlib", "psutil", "scipy",
})


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (core-only)", name=fullname)
        return None


sys.meta_path.insert(0, _Blocker())
