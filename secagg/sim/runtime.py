"""In-process runtime: drives ``n`` client state machines and the server through
the wire codec (bytes), with dropout injection, attack hooks and measurements.

This is a runtime, not core: it may use threads (an optional executor for the
masking step and for the server's unmasking jobs) and clocks.  Every message
crosses the codec: parties decode the bytes they receive; the runtime encodes
what they return.

Determinism: with an :class:`~secagg.primitives.rand.InsecureDeterministicRandom`
``rng`` the session id, graph seed, identity keys, every client's randomness
(``rng.child("client/<id>")``) and the dropout choice are fixed by the seed, and
threads only change timing, never bytes.
"""

from __future__ import annotations

import enum
import os
import time
import tracemalloc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import ParameterError, SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server, ServerPhase
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.rand import RandomSource, SystemRandom, randbelow
from secagg.primitives.sign import SigningKey

__all__ = [
    "PHASES",
    "ClientHook",
    "DropPhase",
    "FloatSumResult",
    "Observer",
    "RoundReport",
    "ServerHook",
    "SumResult",
    "choose_dropouts",
    "run_round",
    "secure_sum",
    "secure_sum_floats",
]

#: Phase names used in the per-phase statistics, in protocol order.
PHASES = ("advertise_keys", "share_keys", "masked_input", "consistency", "unmasking")


class DropPhase(enum.Enum):
    """Before which phase a client stops replying."""

    SHARE_KEYS = "share-keys"  #: in U1, not in U2
    MASKED_INPUT = "masked-input"  #: in U2, not in U3 (server must rebuild its pairwise masks)
    CONSISTENCY = "consistency"  #: in U3, not in U4 (semi-honest: same as UNMASKING)
    UNMASKING = "unmasking"  #: in U4, sends no unmasking shares


_DROP_ROUND = {
    DropPhase.SHARE_KEYS: 1,
    DropPhase.MASKED_INPUT: 2,
    DropPhase.CONSISTENCY: 3,
    DropPhase.UNMASKING: 4,
}
_REPLY_ROUND = {
    m.MessageType.KEYS_BROADCAST: 1,
    m.MessageType.MASKED_INPUT_REQUEST: 2,
    m.MessageType.CONSISTENCY_REQUEST: 3,
    m.MessageType.UNMASKING_REQUEST: 4,
    m.MessageType.ABORT: 0,
}
_SERVER_PHASE_NAME = {
    ServerPhase.COLLECT_KEYS: "advertise_keys",
    ServerPhase.COLLECT_SHARES: "share_keys",
    ServerPhase.COLLECT_MASKED: "masked_input",
    ServerPhase.COLLECT_SIGNATURES: "consistency",
    ServerPhase.COLLECT_UNMASKING: "unmasking",
    ServerPhase.FINALIZING: "unmasking",
}

#: ``n * m`` from which :func:`secure_sum` masks with a thread pool.
_POOL_WORK = 1 << 20

_TRACED_PHASES = (ServerPhase.COLLECT_MASKED, ServerPhase.FINALIZING)

#: ``(recipient, message) -> message | bytes | None``: rewrite what the server sends
#: (``None`` drops it).  Models a malicious server.
ServerHook = Callable[[int, m.Message], "m.Message | bytes | None"]
#: ``(sender, message) -> message | bytes | None``: tamper with a client's message.
ClientHook = Callable[[int, m.Message], "m.Message | bytes | None"]
#: ``("to_server" | "to_client", client_id, wire bytes)``
Observer = Callable[[str, int, bytes], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SumResult:
    """Outcome of :func:`secure_sum` (the cross-team contract)."""

    total: UIntArray | None
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    bits: int
    bytes_per_client_upload: float
    stats: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aborted and self.total is not None:
            raise ParameterError("an aborted round has no total")
        if not self.aborted and self.total is None:
            raise ParameterError("a completed round has a total")


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatSumResult:
    """Outcome of :func:`secure_sum_floats`: dequantized sum over the survivors."""

    sum: npt.NDArray[np.float64] | None
    count: int
    result: SumResult

    @property
    def mean(self) -> npt.NDArray[np.float64] | None:
        if self.sum is None or self.count == 0:
            return None
        return self.sum / self.count


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
    client_phases: Mapping[int, str]

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


class _Clock:
    """Per-phase CPU accounting (thread CPU time of the measured calls)."""

    def __init__(self) -> None:
        self.client: dict[str, list[float]] = {p: [] for p in PHASES}
        self.server: dict[str, float] = dict.fromkeys(PHASES, 0.0)


def _windowed(
    executor: Executor | None,
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    window: int,
    *,
    exclusive: bool = False,
) -> Iterator[Any]:
    """``map(fn, items)`` in order, with at most ``window`` calls in flight.

    ``exclusive``: finish each window before yielding from it, so that nothing
    runs in the pool while the consumer works (clean server memory tracing).
    """
    if executor is None:
        yield from map(fn, items)
        return
    if exclusive:
        todo = list(items)
        for i in range(0, len(todo), window):
            yield from list(executor.map(fn, todo[i : i + window]))
        return
    pending: list[Any] = []
    for it in items:
        pending.append(executor.submit(fn, it))
        if len(pending) >= window:
            yield pending.pop(0).result()
    for f in pending:
        yield f.result()


def run_round(
    inputs: Mapping[int, UIntArray],
    *,
    config: RoundConfig,
    rng: RandomSource | None = None,
    identity_keys: Mapping[int, SigningKey] | None = None,
    dropouts: Mapping[DropPhase, Collection[int]] | None = None,
    server_hook: ServerHook | None = None,
    client_hook: ClientHook | None = None,
    observer: Observer | None = None,
    executor: Executor | None = None,
    workers: int = 1,
    measure_memory: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> RoundReport:
    """Run one round in-process and measure it.

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
    executor, workers:
        Optional executor (and its size) for the masking step and the server's
        unmasking jobs.
    measure_memory:
        Trace the server's allocations with :mod:`tracemalloc` while it collects
        masked inputs and while it applies the unmasking jobs (where its O(m)
        arrays live); ``server_peak_mb`` is the largest traced peak of one step
        plus the running sum and the message being handled.  The key, share and
        reconstruction steps (O(n k) small objects) are not traced because
        tracing triples their CPU time.
    progress:
        ``(phase, done, total)`` callback.

    Raises
    ------
    ParameterError
        If ``inputs`` do not match the configuration.
    """
    if set(inputs) != set(config.clients):
        raise ParameterError("inputs must be given for exactly the registered clients")
    src = rng if rng is not None else SystemRandom()
    drop_at: dict[int, int] = dict.fromkeys(config.clients, 99)
    for phase, who in (dropouts or {}).items():
        r = _DROP_ROUND[DropPhase(phase)]
        if config.security is SecurityMode.SEMI_HONEST and r == 3:
            r = 4
        for u in who:
            if u not in drop_at:
                raise ParameterError(f"dropout of unknown client {u}")
            drop_at[u] = min(drop_at[u], r)
    wall0 = time.perf_counter()
    clock = _Clock()
    clients = {
        u: Client(
            config=config,
            client_id=u,
            input_vector=inputs[u],
            rng=src.child(f"client/{u}"),
            identity_key=(identity_keys or {}).get(u),
        )
        for u in config.clients
    }
    server = Server(config=config)
    bytes_up = 0
    bytes_down = 0
    peak = 0
    client_errors: dict[int, str] = {}
    rejections: dict[int, str] = {}
    gone: set[int] = set()

    def server_step(
        fn: Callable[[], list[tuple[int, m.Message]]], extra_bytes: int = 0
    ) -> list[tuple[int, bytes]]:
        nonlocal peak
        name = _SERVER_PHASE_NAME.get(server.phase, "unmasking")
        base = server.running_sum_bytes + extra_bytes
        # Only where the O(m) arrays live: tracing the Python-heavy key/share steps
        # would triple their CPU time and they hold O(n k) small objects only.
        traced = measure_memory and server.phase in _TRACED_PHASES
        if traced:
            tracemalloc.start()
        t0 = time.thread_time()
        try:
            out = fn()
        except SecAggError as exc:
            out = []
            raise _Rejected(str(exc)) from exc
        finally:
            if traced:
                peak = max(peak, tracemalloc.get_traced_memory()[1] + base)
                tracemalloc.stop()
            clock.server[name] += time.thread_time() - t0
        t1 = time.thread_time()
        encoded = []
        for u, msg in out:
            res = server_hook(u, msg) if server_hook is not None else msg
            if res is None:
                continue
            encoded.append((u, res if isinstance(res, bytes) else m.encode(res)))
        clock.server[name] += time.thread_time() - t1
        return encoded

    def deliver_to_server(u: int, msg: m.Message, encoded: bytes) -> list[tuple[int, bytes]]:
        nonlocal bytes_up
        res = client_hook(u, msg) if client_hook is not None else msg
        if res is None:
            return []
        data = encoded if res is msg else res if isinstance(res, bytes) else m.encode(res)
        bytes_up += len(data)
        if observer is not None:
            observer("to_server", u, data)
        try:
            return server_step(lambda: server.receive(u, data), len(data))
        except _Rejected as exc:
            rejections[u] = str(exc)
            return []

    def client_step(item: tuple[int, bytes, str]) -> tuple[int, list[m.Message], float, str | None]:
        u, data, _phase = item
        t0 = time.thread_time()
        try:
            replies = clients[u].receive(data)
            err = None
        except SecAggError as exc:
            replies, err = [], f"{type(exc).__name__}: {exc}"
        # encoding is the client's work too: do it here, inside its CPU time
        encoded = [(r, m.encode(r)) for r in replies]
        return u, encoded, time.thread_time() - t0, err  # type: ignore[return-value]

    # round 0
    batch: list[tuple[int, bytes]] = []
    for i, u in enumerate(config.clients):
        if drop_at[u] <= 0:
            continue
        t0 = time.thread_time()
        adv = clients[u].start()
        data0 = m.encode(adv)
        clock.client["advertise_keys"].append(time.thread_time() - t0)
        batch += deliver_to_server(u, adv, data0)
        if progress is not None:
            progress("advertise_keys", i + 1, config.n)
    guard = 0
    while True:
        guard += 1
        if guard > 64:  # pragma: no cover - defensive
            raise RuntimeError("simulation did not terminate")
        phase_before = server.phase
        if not batch and phase_before in (
            ServerPhase.FINALIZING,
            ServerPhase.ABORTED,
            ServerPhase.COMPLETED,
        ):
            break
        items: list[tuple[int, bytes, str]] = []
        for u, data in batch:
            bytes_down += len(data)
            if observer is not None:
                observer("to_client", u, data)
            try:
                tcode = m.MessageType(data[2]) if len(data) > 2 else None
            except ValueError:
                tcode = None
            r = _REPLY_ROUND.get(tcode, 0) if tcode is not None else 0
            if u in gone or (r and drop_at[u] <= r):
                gone.add(u)  # the client is gone: it never sees this message
                continue
            name = PHASES[r] if r else "abort"
            items.append((u, data, name))
        batch = []
        parallel = executor is not None and any(i[2] == "masked_input" for i in items)
        results = _windowed(
            executor if parallel else None,
            client_step,
            items,
            max(2, 2 * workers),
            exclusive=measure_memory,
        )
        for done, ((u, encoded, cpu, err), (_, _, name)) in enumerate(
            zip(results, items, strict=True), start=1
        ):
            if err is not None:
                client_errors[u] = err
            if name in clock.client and (encoded or err is None):
                clock.client[name].append(cpu)
            for msg, data in encoded:
                batch += deliver_to_server(u, msg, data)
            if progress is not None:
                progress(name, done, len(items))
        if server.phase is phase_before and phase_before in (
            ServerPhase.COLLECT_KEYS,
            ServerPhase.COLLECT_SHARES,
            ServerPhase.COLLECT_MASKED,
            ServerPhase.COLLECT_SIGNATURES,
            ServerPhase.COLLECT_UNMASKING,
        ):
            batch += server_step(server.deadline_passed)
    if server.phase is ServerPhase.FINALIZING:

        def timed_map(fn: Callable[[Any], Any], ranges: Iterable[Any]) -> list[Any]:
            def run(r: Any) -> float:
                t0 = time.thread_time()
                fn(r)
                return time.thread_time() - t0

            if executor is None:
                return [run(r) for r in ranges]
            cpu = list(executor.map(run, ranges))
            clock.server["unmasking"] += sum(cpu)
            return cpu

        server_step(lambda: (server.finalize(timed_map), [])[1])
    total = server.result
    sets = server.sets
    return RoundReport(
        config=config,
        total=total,
        survivors=server.survivors if total is not None else sets["U3"],
        aborted=server.aborted,
        abort_reason=server.abort_reason,
        sets=sets,
        client_cpu_s={p: (float(np.mean(v)) if v else 0.0) for p, v in clock.client.items()},
        server_cpu_s=dict(clock.server),
        client_steps={p: len(v) for p, v in clock.client.items()},
        bytes_to_server=bytes_up,
        bytes_to_clients=bytes_down,
        server_peak_mb=(peak / 2**20) if measure_memory else None,
        wall_s=time.perf_counter() - wall0,
        client_errors=client_errors,
        server_rejections=rejections,
        client_phases={u: c.phase.value for u, c in clients.items()},
    )


class _Rejected(Exception):
    pass


def build_config(
    clients: Collection[int],
    *,
    bits: int,
    length: int,
    protocol: ProtocolKind,
    security: SecurityMode,
    neighbors: int | None,
    threshold: int | None,
    rng: RandomSource,
) -> tuple[RoundConfig, dict[int, SigningKey]]:
    """A fresh config (session id, graph seed, identity keys drawn from ``rng``)."""
    ids = sorted(clients)
    idkeys: dict[int, SigningKey] = {}
    if security is SecurityMode.MALICIOUS:
        idkeys = {u: SigningKey.generate(rng.child(f"identity/{u}")) for u in ids}
    server_rng = rng.child("server")
    session_id = server_rng.random_bytes(32)
    graph_seed = server_rng.random_bytes(32) if protocol is ProtocolKind.SECAGG_PLUS else b""
    cfg = RoundConfig.create(
        session_id=session_id,
        clients=ids,
        bits=bits,
        length=length,
        protocol=protocol,
        security=security,
        neighbors=neighbors,
        threshold=threshold,
        graph_seed=graph_seed,
        identity_keys={u: k.public for u, k in idkeys.items()},
    )
    return cfg, idkeys


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


def _check_inputs(inputs: Mapping[int, np.ndarray], bits: int) -> int:
    if not inputs:
        raise ParameterError("no inputs")
    dt = dtype_for_bits(bits)
    lengths = set()
    for u, x in inputs.items():
        if isinstance(u, bool) or not isinstance(u, int) or u < 1:
            raise ParameterError("client ids are integers >= 1")
        if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype != dt:
            raise ParameterError(f"inputs must be 1-D {np.dtype(dt).name} arrays for bits={bits}")
        lengths.add(len(x))
    if len(lengths) != 1:
        raise ParameterError("all inputs must have the same length")
    return lengths.pop()


def secure_sum(
    inputs: Mapping[int, np.ndarray],
    *,
    bits: int,
    protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
    neighbors: int | None = None,
    threshold: int | None = None,
    security: SecurityMode = SecurityMode.SEMI_HONEST,
    dropouts: Mapping[DropPhase, Collection[int]] | None = None,
    rng: RandomSource | None = None,
    observer: Observer | None = None,
) -> SumResult:
    """Securely sum ``inputs`` with SecAgg / SecAgg+ run in-process through the codec.

    Parameters
    ----------
    inputs:
        Client id (>= 1) -> 1-D array in Z_{2^bits} (uint32 if bits <= 32 else
        uint64), all of the same length.
    bits:
        Modulus exponent.
    protocol, neighbors, threshold, security:
        Round parameters; ``None`` picks safe defaults (see
        :meth:`secagg.masking.config.RoundConfig.create`).
    dropouts:
        Who stops replying before which phase.
    rng:
        Randomness (``os.urandom`` by default; pass an
        :class:`~secagg.primitives.rand.InsecureDeterministicRandom` to reproduce).
    observer:
        Sees every wire message ``(direction, client_id, bytes)``.

    Returns
    -------
    SumResult
        ``total`` is the exact sum mod ``2^bits`` over ``survivors``, or ``None``
        when the round aborted.

    Raises
    ------
    ParameterError
        On malformed inputs or parameters.
    """
    length = _check_inputs(inputs, bits)
    # fork: a seeded source reused for many rounds must not repeat masks or keys
    src = (rng if rng is not None else SystemRandom()).fork("secure-sum")
    cfg, idkeys = build_config(
        inputs,
        bits=bits,
        length=length,
        protocol=protocol,
        security=security,
        neighbors=neighbors,
        threshold=threshold,
        rng=src,
    )
    contiguous = {u: np.ascontiguousarray(x) for u, x in inputs.items()}
    workers = min(4, os.cpu_count() or 1)
    if workers > 1 and len(inputs) * length >= _POOL_WORK:
        # masking releases the GIL (AES-CTR, numpy adds): use the cores; bytes are unchanged
        with ThreadPoolExecutor(max_workers=workers) as pool:
            report = run_round(
                contiguous,
                config=cfg,
                rng=src,
                identity_keys=idkeys,
                dropouts=dropouts,
                observer=observer,
                executor=pool,
                workers=workers,
            )
    else:
        report = run_round(
            contiguous,
            config=cfg,
            rng=src,
            identity_keys=idkeys,
            dropouts=dropouts,
            observer=observer,
        )
    return SumResult(
        total=report.total,
        survivors=tuple(report.survivors) if not report.aborted else (),
        aborted=report.aborted,
        abort_reason=report.abort_reason,
        bits=bits,
        bytes_per_client_upload=report.bytes_per_client_upload,
        stats=report.stats(),
    )


def secure_sum_floats(
    inputs: Mapping[int, np.ndarray], *, spec: QuantizationSpec, **kwargs: Any
) -> FloatSumResult:
    """Quantize float vectors with ``spec`` and sum them securely.

    Each input is clipped and stochastically rounded with randomness from
    ``rng.child("quantize/<id>")``; the modular sum is dequantized with the number
    of contributors.  ``kwargs`` are those of :func:`secure_sum` (``bits`` is
    ``spec.bits``).

    Raises
    ------
    ParameterError
        If ``bits`` is given, or more clients than ``spec.max_clients``.
    """
    # The deployable halves (secagg.runtime.schemes) around the in-process round.
    import dataclasses

    from secagg.errors import AbortedError
    from secagg.runtime.schemes import MaskedClientHalf, MaskedServerHalf, SchemeKind, SumOutcome

    if "bits" in kwargs:
        raise ParameterError("bits comes from the QuantizationSpec")
    if len(inputs) > spec.max_clients:
        raise ParameterError(f"{len(inputs)} clients exceed spec.max_clients={spec.max_clients}")
    if not inputs:
        raise ParameterError("no inputs")
    first = np.asarray(next(iter(inputs.values())))
    if first.ndim != 1:
        raise ParameterError("inputs must be 1-D vectors")
    length = int(first.shape[0])
    protocol = kwargs.get("protocol", ProtocolKind.SECAGG_PLUS)
    kind = SchemeKind.SECAGG if protocol is ProtocolKind.SECAGG else SchemeKind.SECAGG_PLUS
    client = MaskedClientHalf(kind=kind, spec=spec, length=length)  # on every device
    server = MaskedServerHalf(kind=kind, spec=spec, length=length)  # on the server
    rng = kwargs.get("rng")
    src: RandomSource = (rng if rng is not None else SystemRandom()).fork("secure-sum-floats")
    kwargs["rng"] = src
    quantized = {u: client.encode(x, src.child(f"quantize/{u}")) for u, x in inputs.items()}
    res = secure_sum(quantized, bits=spec.bits, **kwargs)
    outcome = (
        SumOutcome.abort(res.abort_reason or "aborted")
        if res.aborted or res.total is None
        else SumOutcome(total=res.total, survivors=res.survivors)
    )
    try:
        agg = server.decode(outcome)
    except AbortedError as exc:
        if not res.aborted:  # the sum was refused by the server half: report it as an abort
            res = dataclasses.replace(
                res, total=None, survivors=(), aborted=True, abort_reason=str(exc)
            )
        return FloatSumResult(sum=None, count=0, result=res)
    return FloatSumResult(sum=agg.sum, count=agg.count, result=res)
