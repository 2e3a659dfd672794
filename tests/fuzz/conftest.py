"""Counts of fuzzed inputs per test, printed in the terminal summary (the long job's
figures in the report come from here)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

COUNTS: Counter[str] = Counter()
STARTED: dict[str, float] = {}
ELAPSED: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _time_fuzz_test(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    yield
    ELAPSED[request.node.name] += time.perf_counter() - t0


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not COUNTS:
        return
    tr = terminalreporter
    tr.section("fuzzed inputs")
    for name, n in sorted(COUNTS.items()):
        tr.write_line(f"{n:>9}  {ELAPSED.get(name, 0.0):8.1f} s  {name}")
    tr.write_line(f"{sum(COUNTS.values()):>9}  {sum(ELAPSED.values()):8.1f} s  total")
