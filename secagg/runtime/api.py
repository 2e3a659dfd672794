"""Round-level entry points on top of the driver: :func:`secure_sum`,
:func:`secure_sum_floats`, :func:`he_sum`, :func:`dp_secure_mean`, and the pool
factory :func:`make_pool` behind every ``--engine``.

Each entry point draws a fresh round from its randomness (it *forks* the given
source once per call, so one seeded source reused for many rounds never repeats
masks, keys or noise), builds the client recipe, runs the round with one
:class:`~secagg.runtime.driver.RoundDriver` on the chosen engine, and returns its
result type.  Same seed, same engine-independent transcript digest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, ParameterError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.phase import Phase
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.primitives.sign import SigningKey
from secagg.runtime.driver import (
    HEServerParty,
    Hooks,
    LightSecAggServerParty,
    Listener,
    MaskingServerParty,
    RoundDriver,
    RoundOutcome,
    ServerParty,
)
from secagg.runtime.parties import (
    ArrayInputs,
    ClientFactory,
    HEClientFactory,
    LightSecAggClientFactory,
    MaskingClientFactory,
    RngRecipe,
)
from secagg.runtime.pool import ClientPool, InProcessPool, ProcessPool

__all__ = [
    "ENGINES",
    "DPAggregate",
    "FloatSumResult",
    "SumResult",
    "build_config",
    "dp_secure_mean",
    "he_sum",
    "make_pool",
    "run_lightsecagg_round",
    "run_masking_round",
    "secure_sum",
    "secure_sum_floats",
]

#: The engines ``--engine`` accepts.
ENGINES = ("inprocess", "processes", "ray")
#: ``n * m`` from which the in-process engine masks with threads by default.
_THREAD_WORK = 1 << 20

#: ``("to_server" | "to_client", client_id, wire bytes)``
Observer = Callable[[str, int, bytes], None]


def make_pool(engine: str, factory: ClientFactory, *, workers: int | None = None,
              ray_address: str | None = None) -> ClientPool:
    """A pool of the named engine hosting the factory's clients.

    Parameters
    ----------
    engine:
        ``"inprocess"`` (threads), ``"processes"`` (forked workers) or ``"ray"``.
    workers:
        Threads / processes / Ray actors (default: one per CPU).
    ray_address:
        Ray only: a cluster to join (``None``: a fresh local Ray on this machine).

    Raises
    ------
    ParameterError
        Unknown engine, bad worker count, or ``ray_address`` for another engine.
    MissingExtraError
        Ray engine without the ``ray`` extra.
    """
    if engine not in ENGINES:
        raise ParameterError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if ray_address is not None and engine != "ray":
        raise ParameterError("ray_address is for the ray engine")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ParameterError("workers must be an integer >= 1")
    w = workers if workers is not None else (os.cpu_count() or 1)
    if engine == "inprocess":
        return InProcessPool(factory, workers=w)
    if engine == "processes":
        return ProcessPool(factory, workers=w)
    from secagg.runtime.ray_pool import RayPool

    return RayPool(factory, workers=workers, address=ray_address)


@dataclass(frozen=True, slots=True, kw_only=True)
class SumResult:
    """Outcome of :func:`secure_sum`."""

    total: UIntArray | None
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    bits: int
    bytes_per_client_upload: float
    transcript_digest: str = ""
    engine: str = "inprocess"
    workers: int = 1
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


def drop_schedule(dropouts: Mapping[Phase, Collection[int]] | None,
                  security: SecurityMode | None = None) -> dict[int, Phase]:
    """``{phase: clients}`` -> ``{client: first phase it misses}`` (earliest wins).
    Semi-honest rounds have no consistency phase: a drop before it is a drop
    before unmasking."""
    out: dict[int, Phase] = {}
    for phase, who in (dropouts or {}).items():
        p = Phase(phase)
        if p is Phase.CONSISTENCY and security is SecurityMode.SEMI_HONEST:
            p = Phase.UNMASKING
        for u in who:
            if u not in out or p.order < out[u].order:
                out[u] = p
    return out


class _Observe(Listener):
    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
        self._observer(direction, client, bytes(data))


def _drive(
    party: ServerParty,
    factory: Any,
    clients: Sequence[int],
    *,
    engine: str,
    workers: int | None,
    ray_address: str | None,
    pool: ClientPool | None,
    dropouts: Mapping[int, Phase] | None,
    hooks: Hooks | None,
    listener: Listener | None,
    phase_timeout: float | None,
    unmask_threads: int,
    measure_memory: bool,
    digest: bool,
) -> RoundOutcome:
    """Run ``party`` against ``factory``'s clients on an engine (or a given pool, which
    the caller then closes) with the one :class:`RoundDriver`."""
    if hooks is None:
        hooks = Hooks(drop_before=dict(dropouts or {}))
    elif dropouts:
        raise ParameterError("give dropouts or hooks, not both")
    own = pool is None
    p = pool if pool is not None else make_pool(engine, factory, workers=workers,
                                                ray_address=ray_address)
    try:
        driver = RoundDriver(party, p, clients=clients,
                             phase_timeout=phase_timeout, hooks=hooks, listener=listener,
                             unmask_threads=unmask_threads, measure_memory=measure_memory,
                             digest=digest)
        return driver.run()
    finally:
        if own:
            p.close()


def run_masking_round(
    factory: MaskingClientFactory,
    *,
    engine: str = "inprocess",
    workers: int | None = None,
    ray_address: str | None = None,
    pool: ClientPool | None = None,
    dropouts: Mapping[int, Phase] | None = None,
    hooks: Hooks | None = None,
    listener: Listener | None = None,
    phase_timeout: float | None = None,
    unmask_threads: int = 1,
    measure_memory: bool = False,
    digest: bool = True,
) -> RoundOutcome:
    """One SecAgg / SecAgg+ round of ``factory.config`` on an engine (or a given pool,
    which the caller then closes)."""
    cfg = factory.config
    return _drive(MaskingServerParty(cfg), factory, cfg.clients, engine=engine,
                  workers=workers, ray_address=ray_address, pool=pool, dropouts=dropouts,
                  hooks=hooks, listener=listener, phase_timeout=phase_timeout,
                  unmask_threads=unmask_threads, measure_memory=measure_memory,
                  digest=digest)


def run_lightsecagg_round(
    factory: LightSecAggClientFactory,
    *,
    engine: str = "inprocess",
    workers: int | None = None,
    ray_address: str | None = None,
    pool: ClientPool | None = None,
    dropouts: Mapping[int, Phase] | None = None,
    hooks: Hooks | None = None,
    listener: Listener | None = None,
    phase_timeout: float | None = None,
    unmask_threads: int = 1,
    measure_memory: bool = False,
    digest: bool = True,
) -> RoundOutcome:
    """One LightSecAgg round of ``factory.config`` on an engine (or a given pool,
    which the caller then closes) — the same :class:`RoundDriver` as every scheme."""
    cfg = factory.config
    return _drive(LightSecAggServerParty(cfg), factory, cfg.clients, engine=engine,
                  workers=workers, ray_address=ray_address, pool=pool, dropouts=dropouts,
                  hooks=hooks, listener=listener, phase_timeout=phase_timeout,
                  unmask_threads=unmask_threads, measure_memory=measure_memory,
                  digest=digest)


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
        if bits < 8 * np.dtype(dt).itemsize and len(x) and int(x.max()) >> bits:
            raise ParameterError(f"input of client {u} has elements outside [0, 2^{bits})")
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
    dropouts: Mapping[Phase, Collection[int]] | None = None,
    rng: RandomSource | None = None,
    observer: Observer | None = None,
    engine: str = "inprocess",
    workers: int | None = None,
    ray_address: str | None = None,
    phase_timeout: float | None = None,
) -> SumResult:
    """Securely sum ``inputs`` with SecAgg / SecAgg+ (through the wire codec).

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
    engine, workers, ray_address:
        Where the clients run (:func:`make_pool`); in-process by default.
    phase_timeout:
        Seconds each phase waits for replies (``None``: until all answered).

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
    cfg, idkeys = build_config(inputs, bits=bits, length=length, protocol=protocol,
                               security=security, neighbors=neighbors, threshold=threshold,
                               rng=src)
    factory = MaskingClientFactory(
        config=cfg,
        inputs=ArrayInputs({u: np.ascontiguousarray(x) for u, x in inputs.items()}),
        rng=RngRecipe.of(src),
        identity={u: k.private_bytes() for u, k in idkeys.items()},
    )
    if workers is None and engine == "inprocess":
        # masking releases the GIL (AES-CTR, numpy adds): threads for large rounds only
        workers = min(4, os.cpu_count() or 1) if len(inputs) * length >= _THREAD_WORK else 1
    out = run_masking_round(
        factory, engine=engine, workers=workers, ray_address=ray_address,
        dropouts=drop_schedule(dropouts, security),
        listener=_Observe(observer) if observer is not None else None,
        phase_timeout=phase_timeout, unmask_threads=min(2, os.cpu_count() or 1),
    )
    return masking_sum_result(out, cfg)


def masking_sum_result(out: RoundOutcome, cfg: RoundConfig) -> SumResult:
    """A :class:`SumResult` from a masking round's outcome."""
    client_cpu = {p.key: s.client_cpu_s for p, s in out.phases.items()}
    server_cpu = {p.key: s.server_cpu_s for p, s in out.phases.items()}
    server_cpu["unmasking"] = server_cpu.get("unmasking", 0.0) + out.finalize_cpu_s
    stats: dict[str, object] = {
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "client_cpu_total_s": sum(client_cpu.values()),
        "server_cpu_total_s": sum(server_cpu.values()),
        "bytes_to_server": out.bytes_to_server,
        "bytes_to_clients": out.bytes_to_clients,
        "wall_s": out.wall_s,
        "sets": {k: list(v) for k, v in out.sets.items()},
        "client_errors": dict(out.client_errors),
        "server_rejections": dict(out.server_rejections),
        "threshold": cfg.threshold,
        "neighbors": cfg.degree,
        "engine": out.engine,
        "workers": out.workers,
        "transcript_digest": out.transcript_digest,
    }
    return SumResult(
        total=out.result if not out.aborted else None,
        survivors=tuple(out.survivors),
        aborted=out.aborted,
        abort_reason=out.abort_reason,
        bits=cfg.bits,
        bytes_per_client_upload=out.bytes_to_server / cfg.n,
        transcript_digest=out.transcript_digest,
        engine=out.engine,
        workers=out.workers,
        stats=stats,
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
    # The deployable halves (secagg.runtime.schemes) around the round.
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


# -- HE -------------------------------------------------------------------------------


class _PartialUploads:
    """``to_server`` hook: client ``u`` sends only its first ``limit[u]`` chunks."""

    def __init__(self, limits: Mapping[int, int]) -> None:
        self._limits = dict(limits)
        self._sent: dict[int, int] = {}

    def __call__(self, u: int, phase: Phase, data: bytes) -> bytes | None:
        lim = self._limits.get(u)
        if lim is None:
            return data
        k = self._sent.get(u, 0)
        self._sent[u] = k + 1
        return data if k < lim else None


def he_sum(
    inputs: Mapping[int, npt.ArrayLike],
    *,
    scheme: Any,
    preset: Any = None,
    custody: Any = None,
    dropouts: Collection[int] = (),
    partial_dropouts: Mapping[int, int] | None = None,
    observer: Observer | None = None,
    rng: RandomSource | None = None,
    keys: Any = None,
    round: int = 0,
    max_ciphertexts_per_chunk: int = 64,
    min_contributors: int = 2,
    n_threads: int = 2,
    engine: str = "inprocess",
    workers: int | None = None,
    ray_address: str | None = None,
    phase_timeout: float | None = None,
) -> Any:
    """Homomorphically sum client vectors; only the aggregate is decrypted.

    The round runs through the :class:`~secagg.runtime.driver.RoundDriver`: the
    clients (:class:`~secagg.he.client.HEClient`, on ``engine``) upload signed
    envelopes, the :class:`~secagg.he.server.HEServer` (public context only) adds
    them as they arrive, and the key holder (:class:`~secagg.he.decryptor.HEDecryptor`)
    decrypts only the aggregate.

    Parameters
    ----------
    inputs:
        Client id (``>= 1``) -> 1-D vector, all the same length.  CKKS: reals with
        ``|x| <= params.clip``.  BFV: integer arrays in ``[0, 2^value_bits)``
        (summed exactly) or float arrays (quantized, then dequantized).
    scheme, preset, custody:
        :class:`~secagg.he.params.Scheme`, a preset or custom params, and the
        :class:`~secagg.he.params.KeyCustody` (default: separate decryptor).
    dropouts:
        Clients that never send (they are not in the sum).
    partial_dropouts:
        Client id -> number of chunks it sends before dropping (an incomplete
        upload is discarded by the server).
    observer:
        Sees every message (``"to_server"``, ``"to_decryptor"`` / ``"to_client"``).
    rng:
        Randomness for the session id, identity keys and stochastic rounding
        (SEAL's key and encryption randomness comes from SEAL's own CSPRNG, so the
        ciphertext bytes — and the transcript digest — differ between runs).
    keys:
        Reuse an existing :class:`~secagg.he.keys.HEKeys` (else fresh ones).
    round, max_ciphertexts_per_chunk, min_contributors, n_threads:
        See :class:`~secagg.he.session.HESession`; ``n_threads`` is TenSEAL's.
    engine, workers, ray_address, phase_timeout:
        Where the clients run and how long the upload phase waits.

    Returns
    -------
    secagg.he.api.HESumResult
        ``aborted=True`` (and no sum) when fewer than ``min_contributors``
        clients complete their upload.  A client whose authenticated upload the
        server rejects (:class:`~secagg.errors.RejectedUploadError`, e.g. a
        ciphertext with forged SEAL metadata) is a dropout: it is listed in
        ``rejected``, none of its chunks is summed, and the round goes on.

    Raises
    ------
    ParameterError
        Bad inputs or parameters (including more clients than ``max_clients``).
    """
    from secagg.he.api import HESumResult, check_he_inputs, mean_upload
    from secagg.he.client import quantization_spec
    from secagg.he.decryptor import HEDecryptor
    from secagg.he.keys import HEKeys, generate_keys
    from secagg.he.params import KeyCustody, Scheme, resolve_params
    from secagg.he.server import HEServer
    from secagg.he.session import HESession

    t_wall = time.perf_counter()
    custody = KeyCustody.SEPARATE_DECRYPTOR if custody is None else custody
    params = resolve_params(scheme, preset)
    arrays, length, integer = check_he_inputs(inputs, scheme)
    if not isinstance(custody, KeyCustody):
        raise ParameterError("custody must be a KeyCustody")
    dropped = set(dropouts)
    partial = dict(partial_dropouts or {})
    unknown = (dropped | set(partial)) - set(arrays)
    if unknown:
        raise ParameterError(f"dropouts name unknown clients {sorted(unknown)}")
    src = (rng if rng is not None else SystemRandom()).fork("he-sum")

    t0 = time.process_time()
    if keys is None:
        keys = generate_keys(params, n_threads=n_threads)
    elif not isinstance(keys, HEKeys) or keys.params.param_set_id != params.param_set_id:
        raise ParameterError("keys were generated for another parameter set")
    keygen_s = time.process_time() - t0

    ids = sorted(arrays)
    signing = {cid: SigningKey.generate(src.child(f"he-identity/{cid}")) for cid in ids}
    server_key = SigningKey.generate(src.child("he-identity/server"))
    session = HESession(
        params=params, key_id=keys.key_id, custody=custody, session_id=src.random_bytes(16),
        round=round, vector_length=length,
        client_keys={cid: k.public for cid, k in signing.items()},
        server_key=server_key.public, max_ciphertexts_per_chunk=max_ciphertexts_per_chunk,
        min_contributors=min_contributors,
    )
    for cid, k in partial.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < session.chunk_count:
            raise ParameterError(
                f"partial dropout of client {cid} must send 0..{session.chunk_count - 1} chunks"
            )
    shared = custody is KeyCustody.SHARED_CLIENT_KEY
    quant = quantization_spec(params) if scheme is Scheme.BFV and not integer else None
    factory = HEClientFactory(
        session=session,
        context=keys.secret_context if shared else keys.public_context,
        secret_context=shared,
        inputs=ArrayInputs(arrays),
        rng=RngRecipe.of(src),
        identity={cid: k.private_bytes() for cid, k in signing.items()},
        quantize=quant is not None,
        n_threads=n_threads if engine == "inprocess" else 1,
    )
    server = HEServer(session=session, public_context=keys.public_context,
                      signing_key=server_key, n_threads=n_threads)
    decryptor = HEDecryptor(session=session, secret_context=keys.secret_context,
                            n_threads=n_threads)
    party = HEServerParty(server, decryptor, to="to_client" if shared else "to_decryptor")
    hooks = Hooks(
        drop_before={u: Phase.MASKED_INPUT for u in dropped | {u for u, k in partial.items()
                                                                 if k == 0}},
        to_server=_PartialUploads(partial) if partial else None,
    )
    listener: Listener | None = None
    if observer is not None:
        obs: Observer = observer

        class _HEObserve(Listener):
            def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
                if direction == "to_client":  # the aggregate goes to every contributor
                    for cid in server.contributors:
                        obs(direction, cid, bytes(data))
                else:
                    obs(direction, client, bytes(data))

        listener = _HEObserve()
    pool = make_pool(engine, factory, workers=workers if workers is not None else 1,
                     ray_address=ray_address)
    try:
        out = RoundDriver(party, pool, clients=ids, phase_timeout=phase_timeout, hooks=hooks,
                          listener=listener).run()
    finally:
        pool.close()
    stats = out.phases.get(Phase.MASKED_INPUT)
    enc_s = stats.client_cpu_s if stats is not None else 0.0
    server_s = (stats.server_cpu_s if stats is not None else 0.0)
    # the key holder's decryption ran inside finalize: split it out below
    sent = {u: b for u, b in out.bytes_up_by_client.items()}
    timings = {"keygen_s": keygen_s, "client_encrypt_s": enc_s,
               "server_s": server_s + out.finalize_cpu_s, "decrypt_s": 0.0,
               "wall_s": time.perf_counter() - t_wall}
    common: dict[str, Any] = {
        "scheme": scheme, "params": params, "custody": custody,
        "ciphertexts_per_client": session.ciphertext_count,
        "server_peak_ciphertexts": server.peak_ciphertexts, "timings": timings,
        "transcript_digest": out.transcript_digest, "engine": out.engine,
        "workers": out.workers,
        # a RejectedUploadError is its sender's dropout: blamed on it, the round goes on
        "rejected": party.rejected,
    }
    if out.aborted or out.result is None:
        return HESumResult(sum=None, total=None, count=0, contributors=(), aborted=True,
                           abort_reason=out.abort_reason, error_bound=0.0,
                           bytes_per_client_upload=mean_upload(sent, server.contributors),
                           **common)
    agg = out.result
    total: npt.NDArray[np.int64] | None = None
    if scheme is Scheme.CKKS:
        fsum = np.asarray(agg.values, dtype=np.float64)
        bound = params.ckks_error_bound(agg.count)
    else:
        total = np.asarray(agg.values, dtype=np.int64)
        bound = 0.0
        fsum = (quant.dequantize_sum(total.astype(np.uint64), agg.count) if quant is not None
                else total.astype(np.float64))
    return HESumResult(sum=fsum, total=total, count=agg.count, contributors=agg.contributors,
                       aborted=False, abort_reason=None, error_bound=bound,
                       bytes_per_client_upload=mean_upload(sent, agg.contributors), **common)


# -- distributed DP ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DPAggregate:
    """Result of :func:`dp_secure_mean`."""

    mean: npt.NDArray[np.float64]
    sum: npt.NDArray[np.float64]
    survivors: tuple[int, ...]
    result: SumResult


def dp_secure_mean(
    updates: Mapping[int, npt.ArrayLike],
    ddp_round: Any,
    *,
    rng: RandomSource | None = None,
    **secure_sum_kwargs: Any,
) -> DPAggregate:
    """Encode every client's update (:meth:`secagg.dp.DDPRound.encode`), run
    :func:`secure_sum`, decode the mean.

    Parameters
    ----------
    updates:
        Client id (≥ 1) → float update of length ``dim``.
    ddp_round:
        :class:`~secagg.dp.distributed.DDPRound`.
    rng:
        Randomness; each client gets ``rng.child("dp-client/<id>")`` and the secure sum
        ``rng.child("secure-sum")``.
    secure_sum_kwargs:
        Passed to :func:`secure_sum` (protocol, neighbors, threshold, security,
        dropouts, observer, engine, workers); ``bits`` is fixed by the parameters.

    Raises
    ------
    AbortedError
        If the secure sum aborted or fewer than ``n_min`` inputs survived.
    ParameterError
        On malformed updates or parameters.
    """
    if "bits" in secure_sum_kwargs:
        raise ParameterError("bits is fixed by the DP parameters")
    src = (rng if rng is not None else SystemRandom()).fork("dp-secure-mean")
    encoded = {
        int(cid): ddp_round.encode(u, src.child(f"dp-client/{int(cid)}"))
        for cid, u in updates.items()
    }
    res = secure_sum(encoded, bits=ddp_round.params.bits, rng=src.child("secure-sum"),
                     **secure_sum_kwargs)
    if res.aborted or res.total is None:
        raise AbortedError(f"secure sum aborted: {res.abort_reason}")
    total = ddp_round.decode_sum(res.total, len(res.survivors))
    return DPAggregate(mean=total / len(res.survivors), sum=total,
                       survivors=tuple(res.survivors), result=res)


