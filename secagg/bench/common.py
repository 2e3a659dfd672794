"""Shared benchmark helpers: machine description, interleaved best-of-N timing,
markdown tables and JSON output.

Nothing here imports torch or tenseal: their versions are read from the installed
package metadata, so describing the machine stays cheap.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from secagg.errors import ParameterError

__all__ = [
    "Timing",
    "best_of",
    "machine_info",
    "markdown_table",
    "write_json",
]

_PACKAGES = ("numpy", "cryptography", "torch", "tenseal", "opacus", "transformers", "psutil")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"aes", "avx2", "avx512f", "vaes", "sha_ni"})
    except OSError:
        pass
    return []


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, Python and library versions (``None`` if not installed)."""
    versions: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    physical: int | None = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is an optional extra
        physical = None
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": affinity,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "versions": versions,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Best and median wall time (seconds) of ``repeat`` runs of one function."""

    best_s: float
    median_s: float
    samples: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"best_s": self.best_s, "median_s": self.median_s, "samples_s": list(self.samples)}


def best_of(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeat: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time several functions, interleaved, best of ``repeat``.

    Each round runs every function once in the given order (so ours and the
    baseline see the same machine state: turbo, caches, neighbors on a shared
    box), timing each with ``clock`` (:func:`time.perf_counter`; single-threaded
    benchmarks on a crowded box may pass :func:`time.thread_time`).

    Raises
    ------
    ParameterError
        If ``repeat < 1``, ``warmup < 0`` or ``fns`` is empty.
    """
    if repeat < 1 or warmup < 0 or not fns:
        raise ParameterError("best_of needs repeat >= 1, warmup >= 0 and at least one function")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            samples[name].append(clock() - t0)
    out = {}
    for name, s in samples.items():
        ordered = sorted(s)
        out[name] = Timing(best_s=ordered[0], median_s=ordered[len(ordered) // 2], samples=tuple(s))
    return out


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table (floats to 4 significant digits)."""
    head = "| " + " | ".join(headers) + " |"
    sep = "|" + "|".join("---" for _ in headers) + "|"
    body = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def write_json(doc: Mapping[str, Any], path: str) -> None:
    """Write ``doc`` as indented JSON to ``path``; ``"-"`` means standard output."""
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
