"""Per-test input counter shared by the fuzz tests (see conftest.py)."""

from __future__ import annotations

import os

__all__ = ["count"]


def count() -> None:
    """Count one executed input for the currently running test."""
    from .conftest import COUNTS

    name = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    COUNTS[name] += 1
