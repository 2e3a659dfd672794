"""Simulation layer over :mod:`secagg.runtime`: message-level attack hooks, dropout
choice and measured reports.

:func:`run_round` runs one SecAgg / SecAgg+ round with the one
:class:`~secagg.runtime.driver.RoundDriver` on any engine (in-process by default)
and returns a :class:`RoundReport`.  Attacks are written against decoded
messages (:data:`ServerHook`, :data:`ClientHook`); this module turns them into the
driver's byte-level hooks (decode, call, re-encode — only when a hook is given).

Determinism: with an :class:`~secagg.primitives.rand.InsecureDeterministicRandom`
``rng`` the session id, graph seed, identity keys, every client's randomness
(``rng.child("client/<id>")``) and the dropout choice are fixed by the seed;
threads, processes and actors change timing, never bytes (same transcript digest).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from secagg.errors import ParameterError
from secagg.masking import messages as m
from secagg.masking.config import RoundConfig
from secagg.phase import ROUND_PHASES, Phase
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.rand import RandomSource, SystemRandom, randbelow
from secagg.primitives.sign import SigningKey
from secagg.runtime.api import (
    FloatSumResult,
    SumResult,
    build_config,
    drop_schedule,
    run_masking_round,
    secure_sum,
    secure_sum_floats,
)
from secagg.runtime.driver import Hooks, Listener, PhaseStats
from secagg.runtime.parties import ArrayInputs, MaskingClientFactory, RngRecipe
from secagg.runtime.pool import InProcessPool, Reply

__all__ = [
    "PHASES",
    "ClientHook",
    "FloatSumResult",
    "Observer",
    "Phase",
    "RoundReport",
    "ServerHook",
    "SumResult",
    "build_config",
    "choose_dropouts",
    "plaintext_sum",
    "run_round",
    "secure_sum",
    "secure_sum_floats",
]

#: Phase keys of the per-phase statistics, in protocol order.
PHASES = tuple(p.key for p in ROUND_PHASES)

#: ``(recipient, message) -> message | bytes | None``: rewrite what the server sends
#: (``None`` drops it).  Models a malicious server.
ServerHook = Callable[[int, m.Message], "m.Message | bytes | None"]
#: ``(sender, message) -> message | bytes | None``: tamper with a client's message.
ClientHook = Callable[[int, m.Message], "m.Message | bytes | None"]
#: ``("to_server" | "to_client", client_id, wire bytes)``
Observer = Callable[[str, int, bytes], None]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RoundReport:
    """Everything :func:`run_round` measured."""

    config: RoundConfig
    total: UIntArray | None
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    sets: Mapping[str, tuple[int, ...]]
    client_cpu_s: Mapping[str, float]  #: per phase, mean over clients that did the step
    server_cpu_s: Mapping[str, float]  #: per phase, total
    client_steps: Mapping[str, int]
    bytes_to_server: int
    bytes_to_clients: int
    server_peak_mb: float | None
    wall_s: float
    client_errors: Mapping[int, str]  #: clients that refused/aborted, with the reason
    server_rejections: Mapping[int, str]  #: client messages the server rejected
    client_phases: Mapping[int, str]  #: in-process engine only (else empty)
    engine: str = "inprocess"
    workers: int = 1
    transcript_digest: str = ""
    phase_wall_s: Mapping[str, float] | None = None

    @property
    def bytes_per_client_upload(self) -> float:
        return self.bytes_to_server / self.config.n

    def stats(self) -> dict[str, object]:
        return {
            "client_cpu_s": dict(self.client_cpu_s),
            "server_cpu_s": dict(self.server_cpu_s),
            "client_cpu_total_s": sum(self.client_cpu_s[p] * self.client_steps[p] for p in PHASES),
            "server_cpu_total_s": sum(self.server_cpu_s.values()),
            "bytes_to_server": self.bytes_to_server,
            "bytes_to_clients": self.bytes_to_clients,
            "server_peak_mb": self.server_peak_mb,
            "wall_s": self.wall_s,
            "sets": {k: list(v) for k, v in self.sets.items()},
            "client_errors": dict(self.client_errors),
            "server_rejections": dict(self.server_rejections),
            "threshold": self.config.threshold,
            "neighbors": self.config.degree,
            "engine": self.engine,
            "workers": self.workers,
            "transcript_digest": self.transcript_digest,
        }


def choose_dropouts(clients: Collection[int], fraction: float, rng: RandomSource) -> frozenset[int]:
    """``round(fraction * n)`` clients chosen uniformly (partial Fisher-Yates on ``rng``)."""
    if not 0.0 <= fraction <= 1.0:
        raise ParameterError("dropout fraction must be in [0, 1]")
    pool = sorted(clients)
    k = round(fraction * len(pool))
    for i in range(k):
        j = i + randbelow(rng, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
    return frozenset(pool[:k])


def message_hooks(
    drop_before: Mapping[int, Phase],
    server_hook: ServerHook | None,
    client_hook: ClientHook | None,
) -> Hooks:
    """The driver's byte-level :class:`Hooks` for message-level attack hooks."""

    def _bytes(res: m.Message | bytes) -> bytes:
        return res if isinstance(res, bytes) else m.encode(res)

    to_client = None
    if server_hook is not None:
        sh = server_hook

        def to_client(u: int, phase: Phase | None, data: bytes) -> bytes | None:
            res = sh(u, m.decode(data))
            return None if res is None else _bytes(res)

    to_server = None
    if client_hook is not None:
        ch = client_hook

        def to_server(u: int, phase: Phase, data: bytes) -> bytes | None:
            res = ch(u, m.decode(data))
            return None if res is None else _bytes(res)

    return Hooks(drop_before=dict(drop_before), to_client=to_client, to_server=to_server)


class _SimListener(Listener):
    def __init__(self, observer: Observer | None,
                 progress: Callable[[str, int, int], None] | None) -> None:
        self._observer = observer
        self._progress = progress
        self._done = 0
        self._asked = 0

    def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
        if self._observer is not None:
            self._observer(direction, client, bytes(data))

    def on_phase_start(self, phase: Phase | None, clients: int) -> None:
        self._done, self._asked = 0, clients

    def on_reply(self, phase: Phase | None, reply: Reply) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress(phase.key if phase is not None else "abort", self._done, self._asked)


def run_round(
    inputs: Mapping[int, UIntArray],
    *,
    config: RoundConfig,
    rng: RandomSource | None = None,
    identity_keys: Mapping[int, SigningKey] | None = None,
    dropouts: Mapping[Phase, Collection[int]] | None = None,
    server_hook: ServerHook | None = None,
    client_hook: ClientHook | None = None,
    observer: Observer | None = None,
    workers: int = 1,
    engine: str = "inprocess",
    ray_address: str | None = None,
    phase_timeout: float | None = None,
    measure_memory: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> RoundReport:
    """Run one round and measure it.

    Parameters
    ----------
    inputs:
        ``x_u`` per registered client (keys must equal ``config.clients``).
    config:
        The round configuration.
    rng:
        Parent randomness; client ``u`` draws from ``rng.child(f"client/{u}")``.
    identity_keys:
        Malicious mode: each client's Ed25519 identity key.
    dropouts:
        Who stops replying before which phase.
    server_hook, client_hook:
        Rewrite (or drop, with ``None``) messages in flight; a hook may return
        bytes to inject arbitrary garbage.
    observer:
        Sees every wire message.
    workers, engine, ray_address:
        Where the clients run (:func:`secagg.runtime.make_pool`); with the
        in-process engine, ``workers`` threads step the clients.
    phase_timeout:
        Seconds each phase waits for replies.
    measure_memory:
        Trace the server's allocations with :mod:`tracemalloc` while it collects
        masked inputs and while it finalizes (where its O(m) arrays live).
    progress:
        ``(phase, done, total)`` callback.

    Raises
    ------
    ParameterError
        If ``inputs`` do not match the configuration.
    """
    if set(inputs) != set(config.clients):
        raise ParameterError("inputs must be given for exactly the registered clients")
    drop = drop_schedule(dropouts, config.security)
    unknown = sorted(set(drop) - set(config.clients))
    if unknown:
        raise ParameterError(f"dropout of unknown client {unknown[0]}")
    factory = MaskingClientFactory(
        config=config,
        inputs=ArrayInputs(dict(inputs)),
        rng=RngRecipe.of(rng if rng is not None else SystemRandom()),
        identity={u: k.private_bytes() for u, k in (identity_keys or {}).items()},
    )
    pool = None
    if engine == "inprocess":
        pool = InProcessPool(factory, workers=workers)
    try:
        out = run_masking_round(
            factory, engine=engine, workers=workers, ray_address=ray_address, pool=pool,
            hooks=message_hooks(drop, server_hook, client_hook),
            listener=_SimListener(observer, progress), phase_timeout=phase_timeout,
            unmask_threads=max(1, workers), measure_memory=measure_memory,
        )
    finally:
        if pool is not None:
            pool.close()
    stats: dict[str, PhaseStats] = {p.key: s for p, s in out.phases.items()}
    zero = PhaseStats(phase=Phase.ADVERTISE_KEYS)
    client_cpu = {}
    steps = {}
    server_cpu = {}
    for p in PHASES:
        s = stats.get(p, zero)
        steps[p] = s.client_steps
        client_cpu[p] = s.client_cpu_s / s.client_steps if s.client_steps else 0.0
        server_cpu[p] = s.server_cpu_s
    server_cpu["unmasking"] += out.finalize_cpu_s
    sets = out.sets
    return RoundReport(
        config=config,
        total=out.result if not out.aborted else None,
        survivors=out.survivors if not out.aborted else sets["U3"],
        aborted=out.aborted,
        abort_reason=out.abort_reason,
        sets=sets,
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        client_steps=steps,
        bytes_to_server=out.bytes_to_server,
        bytes_to_clients=out.bytes_to_clients,
        server_peak_mb=out.server_peak_mb,
        wall_s=out.wall_s,
        client_errors=out.client_errors,
        server_rejections=out.server_rejections,
        client_phases=({u: p.state for u, p in pool.parties.items()} if pool is not None
                       else {}),
        engine=out.engine,
        workers=out.workers,
        transcript_digest=out.transcript_digest,
        phase_wall_s={p: s.wall_s for p, s in stats.items()},
    )


def plaintext_sum(inputs: Mapping[int, UIntArray], ids: Iterable[int], bits: int) -> UIntArray:
    """``Σ inputs[u] mod 2^bits`` in the clear (the reference the simulator compares to)."""
    dt = dtype_for_bits(bits)
    ids = list(ids)
    length = len(next(iter(inputs.values())))
    acc = cast(UIntArray, np.zeros(length, dtype=dt))
    for u in ids:
        np.add(acc, inputs[u], out=acc)
    if bits < 8 * np.dtype(dt).itemsize:
        np.bitwise_and(acc, dt((1 << bits) - 1), out=acc)
    return acc
