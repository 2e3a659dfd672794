"""The server loop of one round over a ClientPool (stand-in for ``runtime.RoundDriver``).

The runtime contract puts the ONE server loop in ``secagg.runtime.driver.RoundDriver``.
Until it is on ``main`` this module holds the loop in one function,
:func:`drive_round`, with the same division of labour: it owns the masking
server party, the per-phase deadlines (a phase that is not closed by the last
awaited reply is closed with ``deadline_passed()``), the transcript digest and
a listener; the pool only moves bytes.  The loop never parses message bodies.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.server import Server, ServerPhase
from secagg.primitives.prg import UIntArray

__all__ = ["PHASE_NAMES", "RoundOutcome", "drive_round"]

PHASE_NAMES = {
    ServerPhase.COLLECT_KEYS: "advertise_keys",
    ServerPhase.COLLECT_SHARES: "share_keys",
    ServerPhase.COLLECT_MASKED: "masked_input",
    ServerPhase.COLLECT_SIGNATURES: "consistency",
    ServerPhase.COLLECT_UNMASKING: "unmasking",
}
_OPEN = tuple(PHASE_NAMES)


class _Pool(Protocol):
    def start(
        self, clients: Any, *, deadline: float | None
    ) -> Iterable[tuple[int, list[bytes]]]: ...
    def exchange(
        self, batch: Any, *, deadline: float | None
    ) -> Iterable[tuple[int, list[bytes]]]: ...


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RoundOutcome:
    """What :func:`drive_round` produced."""

    total: UIntArray | None
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    sets: dict[str, tuple[int, ...]]
    transcript_digest: str
    phases: dict[str, dict[str, Any]]  #: per phase: wall_s, answered, server_cpu_s
    rejections: dict[int, str]  #: client -> why the server refused its message
    server_peak_bytes: int | None  #: traced peak while collecting masked inputs and unmasking
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def drive_round(
    server: Server,
    pool: _Pool,
    *,
    phase_timeout: float | None,
    start_timeout: float | None = None,
    listener: Callable[[str, dict[str, Any]], None] | None = None,
    measure_memory: bool = False,
    map_fn: Any = None,
) -> RoundOutcome:
    """Run one round of ``server`` with the clients of ``pool``.

    Parameters
    ----------
    server:
        A fresh masking :class:`~secagg.masking.server.Server`.
    pool:
        A ClientPool (``start``/``exchange``; optional ``reject(client, reason)``).
    phase_timeout:
        Seconds each phase after the first may last (``None``: no deadline).
    start_timeout:
        Seconds the first phase (clients joining) may last; ``phase_timeout`` if None.
    listener:
        ``(event, info)`` after each phase (``event`` = phase name, "aborted" or "completed").
    measure_memory:
        Trace allocations (tracemalloc) from the masked-input phase to the end.
    map_fn:
        Passed to :meth:`Server.finalize` (parallel unmasking).
    """
    wall0 = time.perf_counter()
    digest = hashlib.sha256()
    phases: dict[str, dict[str, Any]] = {}
    rejections: dict[int, str] = {}
    reject = getattr(pool, "reject", None)
    peak: int | None = None
    tracing = False

    def fold(direction: bytes, items: list[tuple[int, bytes]]) -> None:
        # canonical order: ascending client id within a phase and direction
        for u, h in sorted(items):
            digest.update(direction + u.to_bytes(4, "big") + h)

    def deadline(seconds: float | None) -> float | None:
        return None if seconds is None else time.monotonic() + seconds

    def collect(
        replies: Iterable[tuple[int, list[bytes]]], name: str
    ) -> list[tuple[int, m.Message]]:
        """Feed every reply to the server as it arrives; close the phase at the end."""
        t0 = time.perf_counter()
        cpu = 0.0
        answered = 0
        seen: list[tuple[int, bytes]] = []
        out: list[tuple[int, m.Message]] = []
        phase = server.phase
        for u, frames in replies:
            for data in frames:
                seen.append((u, hashlib.sha256(data).digest()))
                c0 = time.thread_time()
                try:
                    out += server.receive(u, data)
                    answered += 1
                except SecAggError as exc:
                    rejections[u] = f"{type(exc).__name__}: {exc}"
                    if reject is not None:
                        reject(u, str(exc))
                cpu += time.thread_time() - c0
        fold(b"C", seen)
        if server.phase is phase and phase in _OPEN:
            c0 = time.thread_time()
            out = server.deadline_passed()  # whoever did not answer is a dropout
            cpu += time.thread_time() - c0
        phases[name] = {
            "wall_s": time.perf_counter() - t0,
            "answered": answered,
            "server_cpu_s": cpu,
        }
        return out

    out = collect(
        pool.start(server.config.clients, deadline=deadline(start_timeout or phase_timeout)),
        PHASE_NAMES[ServerPhase.COLLECT_KEYS],
    )
    if listener is not None:
        listener(
            PHASE_NAMES[ServerPhase.COLLECT_KEYS], phases[PHASE_NAMES[ServerPhase.COLLECT_KEYS]]
        )
    try:
        while server.phase in _OPEN:
            name = PHASE_NAMES[server.phase]
            if measure_memory and server.phase is ServerPhase.COLLECT_MASKED and not tracing:
                tracemalloc.start()
                tracing = True
            batch = {u: m.encode(msg) for u, msg in out}
            fold(b"S", [(u, hashlib.sha256(d).digest()) for u, d in batch.items()])
            out = collect(pool.exchange(batch, deadline=deadline(phase_timeout)), name)
            if listener is not None:
                listener(name, phases[name])
        if out:  # Abort messages to the remaining clients
            batch = {u: m.encode(msg) for u, msg in out}
            fold(b"S", [(u, hashlib.sha256(d).digest()) for u, d in batch.items()])
            for _ in pool.exchange(batch, deadline=deadline(phase_timeout)):
                pass
        total = None
        if server.phase is ServerPhase.FINALIZING:
            t0 = time.perf_counter()
            total = server.finalize(map_fn)
            phases["finalize"] = {"wall_s": time.perf_counter() - t0}
    finally:
        if tracing:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    aborted = server.aborted
    if listener is not None:
        listener("aborted" if aborted else "completed", {"reason": server.abort_reason})
    return RoundOutcome(
        total=total,
        survivors=server.survivors if not aborted else (),
        aborted=aborted,
        abort_reason=server.abort_reason,
        sets=server.sets,
        transcript_digest=digest.hexdigest(),
        phases=phases,
        rejections=rejections,
        server_peak_bytes=peak,
        wall_s=time.perf_counter() - wall0,
    )
