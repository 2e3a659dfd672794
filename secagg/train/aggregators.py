"""Aggregators: the clients' flattened float updates go in, only their mean comes out.

An :class:`Aggregator` takes the updates of the clients sampled in a round (1-D
float vectors of equal length, keyed by client id ``>= 1``) and the ids that drop
out before sending, and returns an :class:`AggregateResult`: the mean over the
*survivors*, the survivor ids, mean bytes each client uploaded, the fraction of
coordinates the clients' encoding clipped, and seconds per phase.  The training
loop applies nothing else.

Every aggregator is written as the deployment runs it, with the halves of
:mod:`secagg.runtime.schemes`: each client's **client half** encodes its update
(clip, quantize, DP noise ...); the protocol runs in process (the stand-in for the
transport: :func:`secagg.runtime.secure_sum` for the masking protocols,
:func:`secagg.runtime.he_sum` for HE); the **server half** decodes the protocol's
outcome into the float aggregate or raises :class:`~secagg.errors.AbortedError`,
which becomes an aborted result.  In a deployment the same halves run on the
devices and on the server, with the protocol between them.

Implementations
---------------
* :class:`InsecurePlainAggregator` (``plain``) — **insecure baseline**: every update
  travels in the clear (float32) and the server sees each one.  For comparison only.
* :class:`MaskedAggregator` (``secagg`` / ``secagg+``) — pairwise-masked secure
  aggregation (:class:`~secagg.runtime.schemes.MaskedClientHalf` /
  :class:`~secagg.runtime.schemes.MaskedServerHalf`): each update is clipped to
  ``[-clip, clip]``, stochastically rounded to ``value_bits`` bits (unbiased), and
  summed exactly in Z_{2^b} with ``b = bits_for_sum(value_bits, max_clients)``; the
  server learns only the sum over survivors.
* :class:`HEAggregator` (``he-ckks`` / ``he-bfv``) — homomorphic summation
  (:class:`~secagg.runtime.schemes.HEClientHalf` / ``HEServerHalf``; TenSEAL; a
  separate decryptor sees only the aggregate).
* :class:`LightSecAggAggregator` (``lightsecagg``) — LightSecAgg (So et al., MLSys
  2022; :class:`~secagg.runtime.schemes.LightSecAggClientHalf` / ``ServerHalf``): the
  masked halves' quantization, one mask per client whose Lagrange-coded pieces go to
  the others; the server decodes the survivors' aggregate mask from any ``U``
  responses.  Per round, with ``N`` the sampled cohort: privacy threshold
  ``T = max(1, N // 4)`` unless given, target ``U = max(T + 1, ceil(N / 2))`` unless
  given — lowered to the fewest survivors the loop plans for (``min_survivors``) when
  that is smaller — and dropout tolerance ``D = N - U``.  Semi-honest (SECURITY.md).
* :class:`DPMaskedAggregator` — ``secagg`` / ``secagg+`` with user-level distributed
  DP (:class:`~secagg.runtime.schemes.DPMaskedClientHalf` / ``DPMaskedServerHalf``):
  clients add discrete noise before masking.

Security notes
--------------
Secrets (masks, keys, rounding noise) come from a :class:`~secagg.primitives.rand.
RandomSource`: :class:`~secagg.primitives.rand.SystemRandom` unless an
``InsecureDeterministicRandom`` is passed for a reproducible simulation.  Never from
torch or numpy.  The optional ``observer`` sees exactly the bytes the (simulated)
server receives and sends, which is how the tests check that no individual update
can be read on the server side.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib.util
import math
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from secagg.dp.accounting import Mechanism
from secagg.dp.distributed import DDPParams, DDPRound, plan
from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, ParameterError
from secagg.he.keys import HEKeys, generate_keys
from secagg.he.params import Preset, Scheme
from secagg.lightsecagg.config import LightSecAggConfig, default_lightsecagg_parameters
from secagg.phase import Phase
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.runtime.api import (
    SumResult,
    drop_schedule,
    he_sum,
    run_lightsecagg_round,
    secure_sum,
)
from secagg.runtime.driver import Listener, RoundOutcome
from secagg.runtime.parties import ArrayInputs, LightSecAggClientFactory, RngRecipe
from secagg.runtime.schemes import (
    ClientHalf,
    DPMaskedClientHalf,
    DPMaskedServerHalf,
    FloatAggregate,
    HEClientHalf,
    HEServerHalf,
    LightSecAggClientHalf,
    LightSecAggServerHalf,
    MaskedClientHalf,
    MaskedServerHalf,
    PlainClientHalf,
    PlainServerHalf,
    SchemeKind,
    ServerHalf,
    SumOutcome,
)

__all__ = [
    "AggregateResult",
    "Aggregator",
    "AggregatorKind",
    "ClientEngine",
    "DPMaskedAggregator",
    "DPSettings",
    "DropTiming",
    "HEAggregator",
    "InsecurePlainAggregator",
    "LightSecAggAggregator",
    "MaskedAggregator",
    "Observer",
    "available_kinds",
    "lightsecagg_parameters",
    "make_aggregator",
]

#: ``observer(direction, client_id, wire_bytes)`` with direction ``"to_server"`` or
#: ``"to_client"`` — the hook of :func:`secagg.runtime.secure_sum`.
Observer = Callable[[str, int, bytes], None]


#: Which aggregation protocol the training loop uses: the scheme vocabulary of
#: :mod:`secagg.runtime.schemes` (``plain``, ``secagg``, ``secagg+``, ``he-ckks``,
#: ``he-bfv``).
AggregatorKind = SchemeKind


class DropTiming(enum.Enum):
    """When a dropped client stops replying in the masking protocols.

    ``BEFORE_SHARING``: after advertising its keys, before sharing them (it sent
    nothing that involves its update).  ``BEFORE_MASKED_INPUT``: after sharing its
    keys, before sending its masked input — the hard case: the server must rebuild
    and remove that client's pairwise masks from the shares of the others.
    """

    BEFORE_SHARING = "share-keys"
    BEFORE_MASKED_INPUT = "masked-input"


def _backend_ok(kind: AggregatorKind) -> bool:
    """HE needs the optional TenSEAL package (extra ``he``); the rest is core."""
    if kind in (AggregatorKind.HE_CKKS, AggregatorKind.HE_BFV):
        return importlib.util.find_spec("tenseal") is not None
    return True


def available_kinds() -> tuple[AggregatorKind, ...]:
    """The kinds whose backend is installed (HE needs ``secagg[he]``)."""
    return tuple(k for k in AggregatorKind if _backend_ok(k))


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateResult:
    """What the server gets out of one aggregation.

    Attributes
    ----------
    mean:
        Mean update over ``survivors`` (float64); ``None`` when the round aborted.
    survivors:
        Sorted ids of the clients whose updates are in the mean.
    aborted, abort_reason:
        Whether the round aborted (nothing is revealed then) and why.
    bytes_per_client_upload:
        Mean bytes a client sent to the server.
    phase_seconds:
        Seconds per phase (informative).
    clipped_fraction:
        Mean over the sampled clients of the fraction of coordinates their client
        half clipped (0 for schemes without a coordinate clip).
    """

    mean: npt.NDArray[np.float64] | None
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None = None
    bytes_per_client_upload: float = 0.0
    phase_seconds: Mapping[str, float] = field(default_factory=dict)
    clipped_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.aborted != (self.mean is None):
            raise ParameterError("mean must be None exactly when the round aborted")
        if list(self.survivors) != sorted(set(self.survivors)):
            raise ParameterError("survivors must be sorted and distinct")


def _check_updates(
    updates: Mapping[int, npt.ArrayLike], dropped: Collection[int]
) -> tuple[dict[int, npt.NDArray[np.float64]], frozenset[int]]:
    if not updates:
        raise ParameterError("no updates to aggregate")
    out: dict[int, npt.NDArray[np.float64]] = {}
    length = None
    for cid, vec in updates.items():
        if isinstance(cid, bool) or not isinstance(cid, int) or cid < 1:
            raise ParameterError("client ids must be integers >= 1")
        arr = np.asarray(vec, dtype=np.float64)
        if arr.ndim != 1:
            raise ParameterError("updates must be 1-D vectors")
        if length is None:
            length = arr.size
        elif arr.size != length:
            raise ParameterError("updates must all have the same length")
        if not np.all(np.isfinite(arr)):
            raise ParameterError(f"update of client {cid} holds NaN or infinity")
        out[cid] = arr
    drop = frozenset(dropped)
    if not drop <= out.keys():
        raise ParameterError("dropped ids must be among the sampled clients")
    return out, drop


class ClientEngine(Protocol):
    """Where the clients' device side runs when it is not this process
    (:class:`secagg.train.engine.RayTrainEngine`): it keeps each client's update,
    encodes it with a client half and hosts its protocol party."""

    engine: str
    workers: int

    def encode(self, half: Any, rng: RandomSource | None, label: str) -> dict[int, float]: ...

    def payloads(self, half: Any, clients: Collection[int]) -> dict[int, bytes]: ...

    def secure_sum(self, clients: Collection[int], *, length: int, bits: int,
                   protocol: Any, neighbors: int | None, threshold: int | None,
                   dropouts: Mapping[Phase, Collection[int]] | None,
                   rng: RandomSource, observer: Any = None) -> SumResult: ...

    def lightsecagg_round(self, config: LightSecAggConfig, recipe: RngRecipe, *,
                          dropouts: Mapping[Phase, Collection[int]] | None,
                          observer: Any = None) -> RoundOutcome: ...


def _check_ids(
    clients: Collection[int], dropped: Collection[int]
) -> tuple[tuple[int, ...], frozenset[int]]:
    ids = tuple(sorted(set(clients)))
    if not ids:
        raise ParameterError("no clients to aggregate")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ids):
        raise ParameterError("client ids must be integers >= 1")
    drop = frozenset(dropped)
    if not drop <= set(ids):
        raise ParameterError("dropped ids must be among the sampled clients")
    return ids, drop


def _mean_clipped(clipped: Mapping[int, float], ids: Collection[int]) -> float:
    """Mean clipped fraction over the sampled clients (in the order
    :func:`_encode_all` averages them: sorted ids)."""
    missing = set(ids) - clipped.keys()
    if missing:
        raise ParameterError(f"the engine encoded no update for clients {sorted(missing)[:5]}")
    return float(np.mean([clipped[c] for c in sorted(ids)]))


class Aggregator(abc.ABC):
    """Mean of the surviving clients' updates; the server sees nothing else."""

    kind: AggregatorKind
    #: engines whose workers can run this scheme's client side (``aggregate_on``)
    engines: tuple[str, ...] = ("inprocess",)

    def aggregate_on(
        self, engine: ClientEngine, clients: Collection[int], *, length: int,
        dropped: Collection[int] = (),
    ) -> AggregateResult:
        """Aggregate one round whose updates (of ``length`` floats) stay on
        ``engine``'s workers: the client half and the client party run there, this
        side sees only what the server would.  Same result as :meth:`aggregate` for
        the same randomness.

        Raises
        ------
        ParameterError
            If this scheme is not wired for ``engine``.
        """
        raise ParameterError(
            f"aggregator {self.kind.value!r} does not run on --engine {engine.engine} "
            f"(wired there: plain, secagg, secagg+, lightsecagg)"
        )

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """One line for reports (protocol and quantization)."""

    @abc.abstractmethod
    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        """Aggregate one round.

        Parameters
        ----------
        updates:
            Float update of every sampled client, keyed by client id ``>= 1``.
        dropped:
            Sampled clients that stop replying before they send their (masked)
            update; their updates are never used.

        Raises
        ------
        ParameterError
            Empty input, ids ``< 1``, unequal lengths, NaN/inf, or ``dropped`` not a
            subset of the sampled ids.
        """


def _encode_all(
    client: ClientHalf,
    updates: Mapping[int, npt.NDArray[np.float64]],
    rng: RandomSource | None,
    label: str,
) -> tuple[dict[int, npt.NDArray[Any]], float]:
    """Client side, on every sampled device: its client half encodes its update
    (randomness ``rng.child(f"{label}/<id>")``).  Also returns the mean clipped
    fraction (a statistic each client could report)."""
    encoded = {
        cid: client.encode(x, rng.child(f"{label}/{cid}") if rng is not None else None)
        for cid, x in updates.items()
    }
    clipped = float(np.mean([client.clipped_fraction(x) for x in updates.values()]))
    return encoded, clipped


def _result(
    server: ServerHalf,
    outcome: SumOutcome,
    *,
    bytes_per_client_upload: float,
    clipped_fraction: float,
    phase_seconds: Mapping[str, float],
) -> AggregateResult:
    """Server side: the server half decodes the protocol's outcome into the mean, or
    raises AbortedError (then nothing is released: an aborted result)."""
    try:
        agg: FloatAggregate = server.decode(outcome)
    except AbortedError as exc:
        return AggregateResult(
            mean=None, survivors=(), aborted=True, abort_reason=str(exc),
            bytes_per_client_upload=float(bytes_per_client_upload),
            phase_seconds=phase_seconds, clipped_fraction=clipped_fraction,
        )
    return AggregateResult(
        mean=agg.mean,
        survivors=agg.survivors,
        aborted=False,
        bytes_per_client_upload=float(bytes_per_client_upload),
        phase_seconds=phase_seconds,
        clipped_fraction=clipped_fraction,
    )


def _numeric_stats(stats: Mapping[str, object]) -> dict[str, float]:
    """The timing entries (keys ending in ``_s``) of a backend's statistics."""
    out = {}
    for k, v in stats.items():
        if str(k).endswith("_s") and isinstance(v, int | float) and not isinstance(v, bool):
            out[str(k)] = float(v)
    return out


def _round_rng(rng: RandomSource, index: int) -> RandomSource:
    """A fresh source per aggregation.

    The halves and the protocol derive per-client streams with ``rng.child(label)``;
    for a seeded ``InsecureDeterministicRandom`` a child depends only on the seed and
    the label, so without this every round would reuse the same masks, keys and
    noise — and the difference of two rounds' masked vectors would reveal the
    difference of the updates.  (``SystemRandom.child`` is the OS CSPRNG again.)
    """
    return rng.child(f"aggregation/{index}")


def _masked_round(
    kind: AggregatorKind,
    encoded: Mapping[int, npt.NDArray[Any]] | None,
    *,
    engine: ClientEngine | None = None,
    clients: Collection[int] = (),
    length: int = 0,
    bits: int,
    rng: RandomSource,
    drop_timing: DropTiming,
    drop: frozenset[int],
    observer: Observer | None,
    neighbors: int | None = None,
    threshold: int | None = None,
) -> tuple[SumOutcome, SumResult]:
    """The masking protocol between the halves, run in process (every message
    through the wire codec; the dropped clients stop replying at ``drop_timing``),
    or with the client parties of ``clients`` on ``engine`` (``encoded`` is then
    ``None``: the encoded updates are there)."""
    phase = (
        Phase.SHARE_KEYS if drop_timing is DropTiming.BEFORE_SHARING
        else Phase.MASKED_INPUT
    )
    dropouts = {phase: sorted(drop)} if drop else None
    if engine is None:
        assert encoded is not None
        res = secure_sum(
            dict(encoded), bits=bits, protocol=kind.protocol, neighbors=neighbors,
            threshold=threshold, dropouts=dropouts, rng=rng, observer=observer,
        )
    else:  # the encoded updates and the client parties live on the engine's workers
        res = engine.secure_sum(
            clients, length=length, bits=bits, protocol=kind.protocol, neighbors=neighbors,
            threshold=threshold, dropouts=dropouts, rng=rng, observer=observer,
        )
    if res.aborted or res.total is None:
        return SumOutcome.abort(res.abort_reason or "aborted"), res
    return SumOutcome(total=res.total, survivors=res.survivors), res


class InsecurePlainAggregator(Aggregator):
    """**Insecure baseline**: clients send float32 updates in the clear.

    The server sees every individual update.  Use it only to measure what secure
    aggregation costs.

    Parameters
    ----------
    observer:
        Called with ``("to_server", client_id, bytes)`` for every update sent.
    """

    kind = AggregatorKind.PLAIN
    engines = ("inprocess", "ray")

    def __init__(self, *, observer: Observer | None = None) -> None:
        self._observer = observer

    def aggregate_on(
        self, engine: ClientEngine, clients: Collection[int], *, length: int,
        dropped: Collection[int] = (),
    ) -> AggregateResult:
        ids, drop = _check_ids(clients, dropped)
        t0 = time.perf_counter()
        client = PlainClientHalf(length=length)
        server = PlainServerHalf(length=length)
        clipped = engine.encode(client, None, "plain")
        payloads = engine.payloads(client, sorted(set(ids) - drop))  # the dropped never send
        for cid in sorted(payloads):
            if self._observer is not None:
                self._observer("to_server", cid, payloads[cid])
        return _result(
            server,
            server.sum_payloads(payloads),
            bytes_per_client_upload=sum(map(len, payloads.values())) / len(ids),
            clipped_fraction=_mean_clipped(clipped, ids),
            phase_seconds={"aggregate": time.perf_counter() - t0},
        )

    @property
    def description(self) -> str:
        return "plain (INSECURE baseline: float32 updates in the clear)"

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        ups, drop = _check_updates(updates, dropped)
        t0 = time.perf_counter()
        length = next(iter(ups.values())).size
        client = PlainClientHalf(length=length)
        server = PlainServerHalf(length=length)
        encoded, clipped = _encode_all(client, ups, None, "plain")
        payloads: dict[int, bytes] = {}
        for cid in sorted(set(ups) - drop):  # the dropped never send
            payloads[cid] = client.payload(encoded[cid])
            if self._observer is not None:
                self._observer("to_server", cid, payloads[cid])
        return _result(
            server,
            server.sum_payloads(payloads),
            bytes_per_client_upload=sum(map(len, payloads.values())) / len(ups),
            clipped_fraction=clipped,
            phase_seconds={"aggregate": time.perf_counter() - t0},
        )


class MaskedAggregator(Aggregator):
    """SecAgg / SecAgg+ with the masked halves of :mod:`secagg.runtime.schemes`.

    Parameters
    ----------
    kind:
        ``AggregatorKind.SECAGG`` (complete graph) or ``SECAGG_PLUS`` (sparse graph).
    spec:
        Quantization: clip range, value bits, and ``max_clients`` (at least the
        number of clients sampled per round).
    rng:
        Source of every secret (default :class:`SystemRandom`).  Round ``r`` uses
        ``rng.child("aggregation/<r>")``: client ``u`` quantizes with its
        ``child("quantize/<u>")`` and the protocol runs on its ``child("secure-sum")``.
    neighbors, threshold:
        Passed to ``secure_sum``; ``None`` lets it choose safe defaults.
    observer:
        The ``observer`` hook of ``secure_sum``: every wire message to and from the
        server.

    Raises
    ------
    ParameterError
        ``kind`` is not a masking protocol.
    """

    def __init__(
        self,
        *,
        kind: AggregatorKind,
        spec: QuantizationSpec,
        rng: RandomSource | None = None,
        neighbors: int | None = None,
        threshold: int | None = None,
        observer: Observer | None = None,
        drop_timing: DropTiming = DropTiming.BEFORE_MASKED_INPUT,
    ) -> None:
        if not isinstance(drop_timing, DropTiming):
            raise ParameterError("drop_timing must be a DropTiming")
        if kind not in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
            raise ParameterError(f"{kind.value} is not a masking protocol")
        if not isinstance(spec, QuantizationSpec):
            raise ParameterError("spec must be a QuantizationSpec")
        self.kind = kind
        self.spec = spec
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self._neighbors = neighbors
        self._threshold = threshold
        self._calls = 0
        self._observer = observer
        self._drop_timing = drop_timing

    @property
    def description(self) -> str:
        s = self.spec
        return (
            f"{self.kind.value} (pairwise masking; quantized: clip ±{s.clip:g}, "
            f"{s.value_bits} value bits, step {s.step:.3g}, sum mod 2^{s.bits} "
            f"for up to {s.max_clients} clients)"
        )

    engines = ("inprocess", "ray")

    def _check_count(self, n: int) -> None:
        if n > self.spec.max_clients:
            raise ParameterError(
                f"{n} clients exceed the quantization spec's max_clients="
                f"{self.spec.max_clients}"
            )

    def aggregate_on(
        self, engine: ClientEngine, clients: Collection[int], *, length: int,
        dropped: Collection[int] = (),
    ) -> AggregateResult:
        ids, drop = _check_ids(clients, dropped)
        self._check_count(len(ids))
        self._calls += 1
        t0 = time.perf_counter()
        rng = _round_rng(self._rng, self._calls)
        client = MaskedClientHalf(kind=self.kind, spec=self.spec, length=length)
        server = MaskedServerHalf(kind=self.kind, spec=self.spec, length=length)
        clipped = engine.encode(client, rng, "quantize")  # on the clients' workers
        outcome, res = _masked_round(
            self.kind, None, engine=engine, clients=ids, length=length, bits=client.bits,
            rng=rng.child("secure-sum"), drop_timing=self._drop_timing, drop=drop,
            observer=self._observer, neighbors=self._neighbors, threshold=self._threshold,
        )
        return _result(
            server,
            outcome,
            bytes_per_client_upload=res.bytes_per_client_upload,
            clipped_fraction=_mean_clipped(clipped, ids),
            phase_seconds={"aggregate": time.perf_counter() - t0, **_numeric_stats(res.stats)},
        )

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        ups, drop = _check_updates(updates, dropped)
        self._check_count(len(ups))
        self._calls += 1
        t0 = time.perf_counter()
        rng = _round_rng(self._rng, self._calls)
        length = next(iter(ups.values())).size
        client = MaskedClientHalf(kind=self.kind, spec=self.spec, length=length)
        server = MaskedServerHalf(kind=self.kind, spec=self.spec, length=length)
        encoded, clipped = _encode_all(client, ups, rng, "quantize")
        outcome, res = _masked_round(
            self.kind, encoded, bits=client.bits, rng=rng.child("secure-sum"),
            drop_timing=self._drop_timing, drop=drop, observer=self._observer,
            neighbors=self._neighbors, threshold=self._threshold,
        )
        return _result(
            server,
            outcome,
            bytes_per_client_upload=res.bytes_per_client_upload,
            clipped_fraction=clipped,
            phase_seconds={"aggregate": time.perf_counter() - t0, **_numeric_stats(res.stats)},
        )


def lightsecagg_parameters(
    cohort: int, *, privacy: int | None = None, target: int | None = None,
    min_survivors: int | None = None,
) -> tuple[int, int, int]:
    """``(T, U, D)`` of a LightSecAgg round over ``cohort`` sampled clients.

    ``T`` defaults to ``max(1, N // 4)``; ``U`` to ``max(T + 1, ceil(N / 2))``, lowered
    to ``min_survivors`` (the fewest survivors the run plans for) when that is smaller;
    ``D = N - U`` (every dropout the target allows).

    Raises
    ------
    ParameterError
        ``T < U <= N - D`` cannot hold, or a given ``U`` exceeds ``min_survivors``
        (every round with the planned dropouts would abort).
    """
    if isinstance(cohort, bool) or not isinstance(cohort, int) or cohort < 2:
        raise ParameterError("LightSecAgg needs at least 2 clients per round")
    t0, u0, _ = default_lightsecagg_parameters(cohort)
    t = t0 if privacy is None else privacy
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ParameterError(f"LightSecAgg's privacy threshold T must be >= 1 (got {t})")
    floor = cohort if min_survivors is None else min_survivors
    if target is None:
        u = max(t + 1, min(u0, floor))
    else:
        u = target
        if isinstance(u, bool) or not isinstance(u, int):
            raise ParameterError("LightSecAgg's target U must be an integer")
        if u > floor:
            raise ParameterError(
                f"LightSecAgg target U={u} > N - D = {floor}: with {cohort - floor} of the "
                f"{cohort} sampled clients dropping each round, no round reaches U responses"
            )
    if not t < u <= cohort:
        raise ParameterError(
            f"LightSecAgg needs T < U <= N - D; got T={t}, U={u}, N={cohort}"
            + ("" if target is not None else " (raise the cohort or lower T)")
        )
    if u > floor:
        raise ParameterError(
            f"LightSecAgg needs U={u} > T={t} responses but only {floor} of the {cohort} "
            "sampled clients survive a round: lower --dropout or T, or raise --per-round"
        )
    return t, u, cohort - u


class LightSecAggAggregator(Aggregator):
    """LightSecAgg with the halves of :mod:`secagg.runtime.schemes`, every message
    through the wire codec and the runtime's :class:`~secagg.runtime.driver.RoundDriver`
    (in process, or with the client parties on ``--engine ray``'s actors).

    Parameters
    ----------
    spec:
        Quantization, as for :class:`MaskedAggregator` (``spec.bits <= 30`` and the
        overflow rule ``N (2^bits - 1) < 2^31 - 1`` for the cohort ``N``).
    privacy, target:
        ``T`` and ``U`` (see :func:`lightsecagg_parameters`); ``None``: derived from
        each round's cohort.
    min_survivors:
        The fewest survivors the run plans for (bounds the default ``U``).
    rng:
        Source of every secret (default :class:`SystemRandom`).  Round ``r`` uses
        ``rng.child("aggregation/<r>")``: client ``u`` quantizes with its
        ``child("quantize/<u>")``; the round's session id comes from
        ``child("lightsecagg").child("server")`` and client ``u``'s secrets from
        ``child("lightsecagg").child("lightsecagg-client/<u>")``.
    observer, drop_timing:
        As for :class:`MaskedAggregator` (``share-keys``: a dropped client stops
        before sending its coded shares; ``masked-input``: after, before its masked
        input — the server then decodes without it).

    Raises
    ------
    ParameterError
        Bad parameters.

    Security notes
    --------------
    LightSecAgg is a **semi-honest** protocol: a server that lies about who
    survived is not detected (SECURITY.md §LightSecAgg).
    """

    kind = AggregatorKind.LIGHTSECAGG
    engines = ("inprocess", "ray")

    def __init__(
        self,
        *,
        spec: QuantizationSpec,
        privacy: int | None = None,
        target: int | None = None,
        min_survivors: int | None = None,
        rng: RandomSource | None = None,
        observer: Observer | None = None,
        drop_timing: DropTiming = DropTiming.BEFORE_MASKED_INPUT,
    ) -> None:
        if not isinstance(drop_timing, DropTiming):
            raise ParameterError("drop_timing must be a DropTiming")
        if not isinstance(spec, QuantizationSpec):
            raise ParameterError("spec must be a QuantizationSpec")
        # refuse what no round of the largest cohort can run, before any training
        LightSecAggServerHalf(spec=spec, length=1).check_cohort(spec.max_clients)
        lightsecagg_parameters(spec.max_clients, privacy=privacy, target=target,
                               min_survivors=min_survivors)
        self.kind = AggregatorKind.LIGHTSECAGG
        self.spec = spec
        self.privacy = privacy
        self.target = target
        self.min_survivors = min_survivors
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self._observer = observer
        self._drop_timing = drop_timing
        self._calls = 0
        self._last: tuple[int, int, int] | None = None

    @property
    def description(self) -> str:
        s = self.spec
        if self._last is not None:
            t, u, d = self._last
        else:  # what a round of the full cohort will use
            t, u, d = lightsecagg_parameters(s.max_clients, privacy=self.privacy,
                                             target=self.target,
                                             min_survivors=self.min_survivors)
        tud = f"N={u + d}, T={t}, U={u}, D={d}; "
        return (
            f"lightsecagg (coded masks over GF(2^31-1), one-shot recovery; {tud}quantized: "
            f"clip ±{s.clip:g}, {s.value_bits} value bits, step {s.step:.3g}, sum mod "
            f"2^{s.bits} for up to {s.max_clients} clients; semi-honest)"
        )

    def _round(
        self, ids: tuple[int, ...], drop: frozenset[int], length: int,
        encoded: Mapping[int, npt.NDArray[Any]] | None, engine: ClientEngine | None,
        rng: RandomSource,
    ) -> tuple[SumOutcome, RoundOutcome, LightSecAggConfig]:
        if len(ids) > self.spec.max_clients:
            raise ParameterError(
                f"{len(ids)} clients exceed the quantization spec's max_clients="
                f"{self.spec.max_clients}"
            )
        floor = None if self.min_survivors is None else min(self.min_survivors, len(ids))
        t, u, d = lightsecagg_parameters(len(ids), privacy=self.privacy, target=self.target,
                                         min_survivors=floor)
        server = LightSecAggServerHalf(spec=self.spec, length=length)
        src = rng.child("lightsecagg")
        cfg = server.round_config(clients=ids, rng=src.child("server"), privacy=t, target=u,
                                  dropout=d)
        self._last = (t, u, d)
        phase = (Phase.SHARE_KEYS if self._drop_timing is DropTiming.BEFORE_SHARING
                 else Phase.MASKED_INPUT)
        dropouts = {phase: sorted(drop)} if drop else None
        recipe = RngRecipe.of(src)
        if engine is None:
            assert encoded is not None
            factory = LightSecAggClientFactory(config=cfg, inputs=ArrayInputs(dict(encoded)),
                                               rng=recipe)
            out = run_lightsecagg_round(
                factory, workers=1, dropouts=drop_schedule(dropouts, None),
                listener=_Observe(self._observer) if self._observer is not None else None,
            )
        else:  # the encoded updates and the client parties live on the engine's workers
            out = engine.lightsecagg_round(cfg, recipe, dropouts=dropouts,
                                           observer=self._observer)
        if out.aborted or out.result is None:
            return SumOutcome.abort(out.abort_reason or "aborted"), out, cfg
        return SumOutcome(total=np.asarray(out.result), survivors=out.survivors), out, cfg

    def _finish(self, outcome: SumOutcome, out: RoundOutcome, cfg: LightSecAggConfig,
                length: int, clipped: float, t0: float) -> AggregateResult:
        client_cpu = sum(s.client_cpu_s for s in out.phases.values())
        server_cpu = sum(s.server_cpu_s for s in out.phases.values()) + out.finalize_cpu_s
        return _result(
            LightSecAggServerHalf(spec=self.spec, length=length),
            outcome,
            bytes_per_client_upload=out.bytes_to_server / cfg.n,
            clipped_fraction=clipped,
            phase_seconds={"aggregate": time.perf_counter() - t0,
                           "client_cpu_total_s": client_cpu,
                           "server_cpu_total_s": server_cpu, "wall_s": out.wall_s},
        )

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        ups, drop = _check_updates(updates, dropped)
        self._calls += 1
        t0 = time.perf_counter()
        rng = _round_rng(self._rng, self._calls)
        length = next(iter(ups.values())).size
        ids = tuple(sorted(ups))
        if len(ids) > self.spec.max_clients:
            raise ParameterError(
                f"{len(ids)} clients exceed the quantization spec's max_clients="
                f"{self.spec.max_clients}"
            )
        client = LightSecAggClientHalf(spec=self.spec, length=length)
        encoded, clipped = _encode_all(client, ups, rng, "quantize")
        outcome, out, cfg = self._round(ids, drop, length, encoded, None, rng)
        return self._finish(outcome, out, cfg, length, clipped, t0)

    def aggregate_on(
        self, engine: ClientEngine, clients: Collection[int], *, length: int,
        dropped: Collection[int] = (),
    ) -> AggregateResult:
        ids, drop = _check_ids(clients, dropped)
        if len(ids) > self.spec.max_clients:
            raise ParameterError(
                f"{len(ids)} clients exceed the quantization spec's max_clients="
                f"{self.spec.max_clients}"
            )
        self._calls += 1
        t0 = time.perf_counter()
        rng = _round_rng(self._rng, self._calls)
        client = LightSecAggClientHalf(spec=self.spec, length=length)
        clipped = engine.encode(client, rng, "quantize")  # on the clients' workers
        outcome, out, cfg = self._round(ids, drop, length, None, engine, rng)
        return self._finish(outcome, out, cfg, length, _mean_clipped(clipped, ids), t0)


class _Observe(Listener):
    """The driver's frames, as the aggregators' ``observer(direction, id, bytes)``."""

    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
        self._observer(direction, client, bytes(data))


class HEAggregator(Aggregator):
    """Homomorphic summation (TenSEAL CKKS or BFV) with the HE halves of
    :mod:`secagg.runtime.schemes`, run in process by :func:`secagg.runtime.he_sum`.

    Every client encrypts its update under one public key; the server adds
    ciphertexts and a separate decryptor (``KeyCustody.SEPARATE_DECRYPTOR``) decrypts
    only the aggregate.  CKKS: updates are clipped to ``[-clip, clip]`` and summed
    approximately (error within the parameter set's stated bound).  BFV: updates are
    clipped and stochastically quantized to ``value_bits`` bits and summed exactly.
    The key pair is generated once (SEAL's own CSPRNG) and reused across rounds; the
    ``round`` number goes into every session.

    Parameters
    ----------
    kind:
        ``AggregatorKind.HE_CKKS`` or ``HE_BFV``.
    max_clients:
        Most clients summed in one round (sets the overflow bound).
    clip, value_bits:
        Clip range; bits per quantized value (BFV).
    rng:
        Session ids, identity keys and BFV rounding (default :class:`SystemRandom`).
    observer:
        Sees every HE protocol message.

    Raises
    ------
    ParameterError
        Bad parameters, or parameters the HE presets cannot hold.
    """

    def __init__(
        self,
        *,
        kind: AggregatorKind,
        max_clients: int,
        clip: float,
        value_bits: int = 16,
        rng: RandomSource | None = None,
        observer: Observer | None = None,
    ) -> None:
        if kind not in (AggregatorKind.HE_CKKS, AggregatorKind.HE_BFV):
            raise ParameterError(f"{kind.value} is not a homomorphic protocol")
        scheme = Scheme.CKKS if kind is AggregatorKind.HE_CKKS else Scheme.BFV
        preset = Preset.CKKS_4096 if kind is AggregatorKind.HE_CKKS else Preset.BFV_4096
        extra: dict[str, Any] = {"value_bits": value_bits} if kind is AggregatorKind.HE_BFV else {}
        self.params = dataclasses.replace(
            preset.params, max_clients=max_clients, clip=float(clip), **extra
        )
        self.kind = kind
        self.clip = float(clip)
        self._scheme = scheme
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self._observer = observer
        self._keys: HEKeys | None = None
        self._round = 0

    @property
    def spec(self) -> QuantizationSpec | None:
        """BFV's quantization (``None`` for CKKS, which only clips)."""
        if self.kind is AggregatorKind.HE_BFV:
            return QuantizationSpec(
                clip=self.clip, value_bits=self.params.value_bits,
                max_clients=self.params.max_clients,
            )
        return None

    @property
    def description(self) -> str:
        p = self.params
        core = f"{self.kind.value} (TenSEAL N={p.poly_modulus_degree}, separate decryptor; "
        if self.kind is AggregatorKind.HE_CKKS:
            return core + f"clip ±{self.clip:g}, scale 2^{p.scale_bits}, approximate sum)"
        return core + f"clip ±{self.clip:g}, {p.value_bits} value bits, exact integer sum)"

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        ups, drop = _check_updates(updates, dropped)
        if len(ups) > self.params.max_clients:
            raise ParameterError(
                f"{len(ups)} clients exceed max_clients={self.params.max_clients}"
            )
        t0 = time.perf_counter()
        if self._keys is None:
            self._keys = generate_keys(self.params)
        self._round += 1
        rng = _round_rng(self._rng, self._round)
        length = next(iter(ups.values())).size
        client = HEClientHalf(kind=self.kind, params=self.params, length=length)
        server = HEServerHalf(kind=self.kind, params=self.params, length=length)
        encoded, clipped = _encode_all(client, ups, rng, "quantize")
        # The protocol between the halves, in process: HEClient encrypts and signs,
        # HEServer adds ciphertexts, the separate decryptor opens only the aggregate
        # (he_sum's default minimum of 2 contributors: never one client's update).
        res = he_sum(
            encoded,
            scheme=self._scheme,
            preset=self.params,
            dropouts=sorted(drop),
            observer=self._observer,
            rng=rng.child("he-sum"),
            keys=self._keys,
            round=self._round,
        )
        return _result(
            server,
            server.outcome_of_he_sum(res),
            bytes_per_client_upload=res.bytes_per_client_upload,
            clipped_fraction=clipped,
            phase_seconds={"aggregate": time.perf_counter() - t0, **_numeric_stats(res.timings)},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DPSettings:
    """User-level distributed DP for the masked aggregators (see :mod:`secagg.dp`).

    Parameters
    ----------
    mechanism:
        ``"ddgauss"`` (distributed discrete Gaussian) or ``"skellam"``.
    epsilon, delta:
        Target (ε, δ) for the whole run (all ``rounds``), per client (user level).
    l2_clip:
        Each client's update is clipped to this L2 norm (after a random rotation).
    rounds:
        Rounds the budget is spread over.
    bits:
        Modulus exponent of the secure sum.

    Notes
    -----
    Accounting uses sampling rate 1 (no amplification by subsampling is claimed) and
    calibrates the noise to ``min_survivors``; a round with fewer survivors aborts
    and releases nothing.
    """

    mechanism: str
    epsilon: float
    delta: float = 1e-5
    l2_clip: float = 1.0
    rounds: int = 1
    bits: int = 20

    def __post_init__(self) -> None:
        if self.mechanism not in ("ddgauss", "skellam"):
            raise ParameterError("mechanism must be 'ddgauss' or 'skellam'")
        for name in ("epsilon", "delta", "l2_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ParameterError(f"{name} must be a positive finite number")
        if self.delta >= 0.5:
            raise ParameterError("delta must be < 0.5")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ParameterError("rounds must be a positive integer")


class DPMaskedAggregator(Aggregator):
    """SecAgg / SecAgg+ with user-level distributed DP, with the DP halves of
    :mod:`secagg.runtime.schemes` (:class:`~secagg.dp.DDPRound` inside).

    Each client rotates, L2-clips, scales, rounds and adds discrete noise before the
    secure sum; the server decodes a noisy mean.  The parameters are planned on the
    first call (they depend on the update length).

    Parameters
    ----------
    kind:
        ``SECAGG`` or ``SECAGG_PLUS``.
    dp:
        :class:`DPSettings`.
    max_clients, min_survivors:
        Clients per round, and the fewest survivors the noise is calibrated for.
    rng:
        Secrets and noise (default :class:`SystemRandom`).
    observer:
        The ``observer`` hook of ``secure_sum``.

    Security notes
    --------------
    The noise must come from a secret CSPRNG: a seeded ``InsecureDeterministicRandom``
    voids the DP guarantee for whoever knows the seed.
    """

    def __init__(
        self,
        *,
        kind: AggregatorKind,
        dp: DPSettings,
        max_clients: int,
        min_survivors: int,
        rng: RandomSource | None = None,
        observer: Observer | None = None,
        drop_timing: DropTiming = DropTiming.BEFORE_MASKED_INPUT,
    ) -> None:
        if kind not in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
            raise ParameterError("distributed DP runs over secagg or secagg+")
        if not isinstance(dp, DPSettings):
            raise ParameterError("dp must be DPSettings")
        if not 1 <= min_survivors <= max_clients:
            raise ParameterError("need 1 <= min_survivors <= max_clients")
        self.kind = kind
        self.dp = dp
        self.max_clients = max_clients
        self.min_survivors = min_survivors
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self._observer = observer
        self._drop_timing = drop_timing
        self.params: DDPParams | None = None
        self._round = 0

    @property
    def description(self) -> str:
        d = self.dp
        core = (
            f"{self.kind.value} + distributed DP ({d.mechanism}, ε={d.epsilon:g}, δ={d.delta:g} "
            f"over {d.rounds} rounds, L2 clip {d.l2_clip:g}, noise calibrated to "
            f"{self.min_survivors} survivors, no subsampling amplification claimed"
        )
        if self.params is not None:
            core += (
                f"; scale {self.params.scale:.3g}, local σ {self.params.local_stddev:.3g}, "
                f"mod 2^{self.params.bits}"
            )
        return core + ")"

    def _plan(self, dim: int) -> DDPParams:
        return plan(
            mechanism=Mechanism(self.dp.mechanism), epsilon=self.dp.epsilon,
            delta=self.dp.delta, dim=dim,
            l2_clip=self.dp.l2_clip, bits=self.dp.bits, min_survivors=self.min_survivors,
            max_clients=self.max_clients, rounds=self.dp.rounds, sampling_rate=1.0,
        )

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        ups, drop = _check_updates(updates, dropped)
        if len(ups) > self.max_clients:
            raise ParameterError(f"{len(ups)} clients exceed max_clients={self.max_clients}")
        dim = next(iter(ups.values())).size
        t0 = time.perf_counter()
        if self.params is None:
            self.params = self._plan(dim)
        elif self.params.dim != dim:
            raise ParameterError("update length changed between rounds")
        self._round += 1
        if self._round > self.dp.rounds:
            raise ParameterError(
                f"the privacy budget covers {self.dp.rounds} rounds; round {self._round} "
                "would exceed it"
            )
        rng = _round_rng(self._rng, self._round)
        ddp_round = DDPRound(  # the round's public rotation, fixed before clients train
            params=self.params, rotation_seed=rng.child("rotation").random_bytes(32)
        )
        client = DPMaskedClientHalf(kind=self.kind, ddp_round=ddp_round)
        server = DPMaskedServerHalf(kind=self.kind, ddp_round=ddp_round)
        t_plan = time.perf_counter() - t0
        encoded, clipped = _encode_all(client, ups, rng, "dp-client")
        outcome, res = _masked_round(
            self.kind, encoded, bits=client.bits, rng=rng.child("secure-sum"),
            drop_timing=self._drop_timing, drop=drop, observer=self._observer,
        )
        return _result(
            server,
            outcome,
            bytes_per_client_upload=res.bytes_per_client_upload,
            clipped_fraction=clipped,
            phase_seconds={
                "aggregate": time.perf_counter() - t0,
                "dp_plan": t_plan,
                **_numeric_stats(res.stats),
            },
        )


def make_aggregator(
    kind: AggregatorKind,
    *,
    max_clients: int,
    clip: float = 0.05,
    value_bits: int = 16,
    rng: RandomSource | None = None,
    observer: Observer | None = None,
    drop_timing: DropTiming = DropTiming.BEFORE_MASKED_INPUT,
    dp: DPSettings | None = None,
    min_survivors: int | None = None,
    privacy: int | None = None,
    target: int | None = None,
) -> Aggregator:
    """The aggregator for ``kind`` with the quantization the loop uses.

    Parameters
    ----------
    kind:
        Which protocol (``PLAIN`` is the insecure baseline).
    max_clients:
        Most clients aggregated in one call (the clients sampled per round).
    clip, value_bits:
        Coordinate clip range and quantization width (secagg, secagg+, he-bfv; CKKS
        uses ``clip`` only).
    rng:
        Source of every secret; default :class:`SystemRandom`.
    observer:
        Sees every wire message to and from the (simulated) server.
    drop_timing:
        When dropped clients stop replying in the masking protocols.
    dp, min_survivors:
        Distributed DP over secagg/secagg+ (noise calibrated to ``min_survivors``,
        default ``max_clients``); ``None`` = no DP.  For lightsecagg,
        ``min_survivors`` bounds the default target ``U``.
    privacy, target:
        lightsecagg only: ``T`` and ``U`` (:func:`lightsecagg_parameters`; ``None``
        derives them from the cohort).

    Raises
    ------
    ParameterError
        Bad parameters, DP with a non-masking protocol, or ``kind`` whose backend is
        not installed.
    """
    if not isinstance(kind, AggregatorKind):
        raise ParameterError("kind must be an AggregatorKind")
    if kind is AggregatorKind.PLAIN:
        return InsecurePlainAggregator(observer=observer)
    if (privacy is not None or target is not None) and kind is not AggregatorKind.LIGHTSECAGG:
        raise ParameterError("privacy (T) and target (U) are LightSecAgg's parameters")
    if not _backend_ok(kind):
        raise ParameterError(
            f"aggregator {kind.value!r} is not available: install the extra: "
            "pip install 'secagg[he]'"
        )
    if dp is not None:
        if kind not in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
            raise ParameterError("distributed DP is wired for secagg and secagg+ only")
        return DPMaskedAggregator(
            kind=kind, dp=dp, max_clients=max_clients,
            min_survivors=max_clients if min_survivors is None else min_survivors,
            rng=rng, observer=observer, drop_timing=drop_timing,
        )
    if kind is AggregatorKind.LIGHTSECAGG:
        spec = QuantizationSpec(clip=clip, value_bits=value_bits, max_clients=max_clients)
        return LightSecAggAggregator(
            spec=spec, privacy=privacy, target=target, min_survivors=min_survivors, rng=rng,
            observer=observer, drop_timing=drop_timing,
        )
    if kind in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
        spec = QuantizationSpec(clip=clip, value_bits=value_bits, max_clients=max_clients)
        return MaskedAggregator(
            kind=kind, spec=spec, rng=rng, observer=observer, drop_timing=drop_timing
        )
    return HEAggregator(
        kind=kind, max_clients=max_clients, clip=clip, value_bits=value_bits, rng=rng,
        observer=observer,
    )
