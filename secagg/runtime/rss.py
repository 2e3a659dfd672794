"""This process's resident memory, read from Linux's ``/proc`` (runtime, not core).

One place for what the process pool, the simulator, ``secagg bench scale`` and the
network simulation measure: the peak RSS of a process above its RSS when the
measurement started.  Where there is no procfs every figure is ``None`` / 0.
"""

from __future__ import annotations

__all__ = ["PeakRSS", "status_kb"]


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``; 0 where there is no procfs)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakRSS:
    """Started at construction: resets the high-water mark (``clear_refs`` 5) to the
    current RSS, which becomes the baseline."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")
            self._reset = True
        except OSError:
            self._reset = False
        self.baseline_kb = status_kb("VmRSS")  # read after the reset, not before

    def peak_mb(self) -> float | None:
        """Peak RSS above the baseline so far, in MiB (``None`` when the mark could not
        be reset, so the peak may predate the measurement)."""
        if not self._reset:
            return None
        # the kernel's RSS counters are per-thread and folded in lazily (tens of pages), so
        # a round that allocates nothing new can read a few kB below its baseline: 0 then
        return max(0, status_kb("VmHWM") - self.baseline_kb) / 1024
