"""Benchmarks, each measured against a baseline in the same run.

``secagg bench [prg|mask|server|round|scale|keys|lightsecagg|he|dp|net|flower|all]
[--quick] [--json PATH]``.
Every benchmark is a module ``secagg.bench.<name>`` exposing
``run(quick: bool) -> dict``; the dict is JSON-serialisable and carries the
machine description (:func:`secagg.bench.common.machine_info`).
"""

from __future__ import annotations

#: Benchmarks the CLI knows about, in the order ``all`` runs them.
BENCHMARKS: tuple[str, ...] = (
    "prg", "mask", "server", "round", "scale", "keys", "lightsecagg", "he", "dp", "net",
    "flower",
)

__all__ = ["BENCHMARKS"]
