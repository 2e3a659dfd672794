"""The client and server halves of every aggregation scheme, for deployments.

A federated round with secure aggregation has three parts, and they run in
different places:

1. **client half** (on each device): float update → the scheme's encoded input
   (:meth:`ClientHalf.encode`) → the protocol party that sends it
   (``party(...)``: a :class:`secagg.masking.Client`, a
   :class:`secagg.he.HEClient`, or plain bytes for the insecure baseline);
2. **the protocol** (driver + transport: :mod:`secagg.sim`, the runtime's
   ``RoundDriver``, a network host, Flower …), which yields a :class:`SumOutcome`:
   the sum of the *encoded* inputs over the survivors, or an abort;
3. **server half** (on the server): :meth:`ServerHalf.decode` turns that outcome
   into a :class:`FloatAggregate` (float sum, survivors, mean).

Schemes (:class:`SchemeKind`):

============  =====================================  ======================================
scheme        client half                            server half
============  =====================================  ======================================
plain         :class:`PlainClientHalf` (INSECURE)    :class:`PlainServerHalf`
secagg(+)     :class:`MaskedClientHalf`              :class:`MaskedServerHalf`
lightsecagg   :class:`LightSecAggClientHalf`         :class:`LightSecAggServerHalf`
secagg(+)+DP  :class:`DPMaskedClientHalf`            :class:`DPMaskedServerHalf`
he-ckks/bfv   :class:`HEClientHalf`                  :class:`HEServerHalf`
============  =====================================  ======================================

Abort signalling is the same for every backend: :meth:`ServerHalf.decode` raises
:class:`~secagg.errors.AbortedError` when the protocol aborted, when fewer
survivors than the half's minimum remain, or when the total lies outside what
``count`` valid encodings can add up to (a client bypassed its client half) — it
never returns a value it can tell is wrong.  A dishonest client whose
contribution stays within that range (for example one that wraps modulo ``2^b``)
is not detectable this way: validating masked inputs needs proofs this library
does not implement.  Malformed input
on either side raises :class:`~secagg.errors.ParameterError` (local misuse) or
:class:`~secagg.errors.DecodeError` (bytes from a peer) and changes nothing.

Security notes
--------------
The randomness passed to ``encode`` (stochastic rounding, DP noise) must be a
secret CSPRNG in production (:class:`~secagg.primitives.rand.SystemRandom`, the
default); a seeded ``InsecureDeterministicRandom`` makes it known to whoever
knows the seed.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.dp.distributed import DDPRound
from secagg.encoding.modular import check_in_range
from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, DecodeError, ParameterError
from secagg.he.api import HESumResult
from secagg.he.client import HEClient, quantization_spec
from secagg.he.decryptor import HEAggregate
from secagg.he.keys import HEContext
from secagg.he.params import HEParams, Scheme
from secagg.he.server import HEServer
from secagg.he.session import HESession
from secagg.lightsecagg.client import Client as LightClient
from secagg.lightsecagg.config import LightSecAggConfig, max_bits
from secagg.lightsecagg.server import Server as LightServer
from secagg.masking.client import Client
from secagg.masking.config import MAX_CLIENT_ID, ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.prg import UIntArray
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.primitives.sign import SigningKey

__all__ = [
    "ClientHalf",
    "DPMaskedClientHalf",
    "DPMaskedServerHalf",
    "FloatAggregate",
    "HEClientHalf",
    "HEServerHalf",
    "LightSecAggClientHalf",
    "LightSecAggServerHalf",
    "MaskedClientHalf",
    "MaskedServerHalf",
    "PlainClientHalf",
    "PlainServerHalf",
    "SchemeKind",
    "ServerHalf",
    "SumOutcome",
]

FloatArray = npt.NDArray[np.float64]


class SchemeKind(enum.Enum):
    """Which aggregation scheme a round uses (distributed DP is a layer over the
    masked kinds, not a kind of its own)."""

    PLAIN = "plain"
    SECAGG = "secagg"
    SECAGG_PLUS = "secagg+"
    HE_CKKS = "he-ckks"
    HE_BFV = "he-bfv"
    LIGHTSECAGG = "lightsecagg"

    @property
    def secure(self) -> bool:
        """``False`` only for the insecure plain baseline."""
        return self is not SchemeKind.PLAIN

    @property
    def masked(self) -> bool:
        return self in (SchemeKind.SECAGG, SchemeKind.SECAGG_PLUS)

    @property
    def protocol(self) -> ProtocolKind:
        """The masking protocol of a masked kind.

        Raises
        ------
        ParameterError
            For a kind that is not masked.
        """
        if self is SchemeKind.SECAGG:
            return ProtocolKind.SECAGG
        if self is SchemeKind.SECAGG_PLUS:
            return ProtocolKind.SECAGG_PLUS
        raise ParameterError(f"{self.value} is not a masking protocol")


# ---------------------------------------------------------------------------
# what the protocol yields, and what the server half makes of it


def _check_survivors(survivors: Sequence[int]) -> tuple[int, ...]:
    out = tuple(survivors)
    for c in out:
        ok = isinstance(c, int | np.integer) and not isinstance(c, bool)
        if not ok or not 1 <= c <= MAX_CLIENT_ID:
            raise ParameterError("survivor ids are integers in [1, 2^32)")
    if list(out) != sorted(set(out)):
        raise ParameterError("survivors must be sorted and distinct")
    return tuple(int(c) for c in out)


@dataclass(frozen=True, slots=True, kw_only=True)
class SumOutcome:
    """What a protocol run gives the server: the sum of the *encoded* inputs of
    ``survivors``, or an abort.

    Parameters
    ----------
    total:
        The sum (Z_{2^b} words for masking, BFV levels, CKKS or plain floats);
        ``None`` exactly when the round aborted.
    survivors:
        Sorted ids whose inputs are in ``total``.
    abort_reason:
        Why the round aborted (``None`` when it completed).

    Raises
    ------
    ParameterError
        If ``total`` and ``abort_reason`` disagree or the survivors are malformed.
    """

    total: npt.NDArray[Any] | None
    survivors: tuple[int, ...]
    abort_reason: str | None = None

    def __post_init__(self) -> None:
        if (self.total is None) != (self.abort_reason is not None):
            raise ParameterError("an outcome has a total exactly when it did not abort")
        if self.total is not None and (
            not isinstance(self.total, np.ndarray) or self.total.ndim != 1
        ):
            raise ParameterError("total must be a 1-D numpy array")
        object.__setattr__(self, "survivors", _check_survivors(self.survivors))

    @property
    def aborted(self) -> bool:
        return self.total is None

    @classmethod
    def abort(cls, reason: str) -> SumOutcome:
        """An aborted round (nothing revealed)."""
        return cls(total=None, survivors=(), abort_reason=str(reason) or "aborted")

    @classmethod
    def of_masking_server(cls, server: Server) -> SumOutcome:
        """The outcome of a finished :class:`secagg.masking.Server` (after
        ``finalize()``, or aborted).

        Raises
        ------
        ParameterError
            If the server has not finished (it is still collecting or finalizing).
        """
        if server.aborted:
            return cls.abort(server.abort_reason or "aborted")
        total = server.result
        if server.phase is not Phase.COMPLETED or total is None:
            raise ParameterError("the masking server has not finished the round")
        return cls(total=total, survivors=server.survivors)

    @classmethod
    def of_lightsecagg_server(cls, server: LightServer) -> SumOutcome:
        """The outcome of a finished :class:`secagg.lightsecagg.Server` (after
        ``finalize()``, or aborted).

        Raises
        ------
        ParameterError
            If the server has not finished the round.
        """
        if not isinstance(server, LightServer):
            raise ParameterError("server must be a secagg.lightsecagg.Server")
        if server.aborted:
            return cls.abort(server.abort_reason or "aborted")
        total = server.result
        if server.phase is not Phase.COMPLETED or total is None:
            raise ParameterError("the LightSecAgg server has not finished the round")
        return cls(total=total, survivors=server.survivors)


@dataclass(frozen=True, slots=True, kw_only=True)
class FloatAggregate:
    """The float aggregate the server half releases.

    Attributes
    ----------
    sum:
        Sum of the survivors' (clipped, quantized or noised — see the scheme) updates.
    count:
        Number of survivors (``>= 1``).
    survivors:
        Their ids, sorted.
    """

    sum: FloatArray
    count: int
    survivors: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.count != len(self.survivors) or self.count < 1:
            raise ParameterError("count must equal the (non-zero) number of survivors")

    @property
    def mean(self) -> FloatArray:
        return self.sum / self.count


def _check_update(update: npt.ArrayLike, length: int, *, copy: bool = True) -> FloatArray:
    """A finite 1-D float vector of ``length`` (as float64: a copy unless ``copy=False``
    and it already is one)."""
    arr = np.asarray(update)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ParameterError(f"the update must be a 1-D vector of length {length}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ParameterError("the update must hold real numbers")
    out = arr.astype(np.float64, copy=copy)
    # NaN propagates through min and max, ±inf shows in them: no temporary mask
    if out.size and not (np.isfinite(np.min(out)) and np.isfinite(np.max(out))):
        raise ParameterError("the update holds NaN or infinity")
    return out


def _check_length(length: int) -> int:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ParameterError("length must be a positive integer")
    return length


def _check_min(min_survivors: int) -> int:
    if isinstance(min_survivors, bool) or not isinstance(min_survivors, int) or min_survivors < 1:
        raise ParameterError("min_survivors must be a positive integer")
    return min_survivors


class ClientHalf(abc.ABC):
    """What runs on a device: float update → encoded protocol input."""

    kind: SchemeKind
    #: Length of the float update.
    length: int

    @abc.abstractmethod
    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> npt.NDArray[Any]:
        """The protocol input for ``update``.

        Raises
        ------
        ParameterError
            Wrong length, not real, NaN or infinity (nothing is produced).
        """

    def clipped_fraction(self, update: npt.ArrayLike) -> float:
        """Fraction of ``update``'s coordinates the encoding clips (0 when the scheme
        clips no coordinate; DP's L2 clip is not a coordinate clip)."""
        return 0.0


class ServerHalf(abc.ABC):
    """What runs on the server: protocol outcome → float aggregate."""

    kind: SchemeKind
    length: int
    #: Fewest survivors whose sum the half releases.
    min_survivors: int

    @abc.abstractmethod
    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        """The float aggregate of ``outcome``.

        Raises
        ------
        AbortedError
            The round aborted, fewer than :attr:`min_survivors` survived, or the
            total cannot be a sum of valid encodings; nothing is released.
        ParameterError
            ``outcome`` is not a :class:`SumOutcome` or its total has the wrong shape.
        """

    def _usable(self, outcome: SumOutcome, encoded_length: int) -> npt.NDArray[Any]:
        if not isinstance(outcome, SumOutcome):
            raise ParameterError("outcome must be a SumOutcome")
        if outcome.total is None:
            raise AbortedError(f"the round aborted: {outcome.abort_reason}")
        if len(outcome.survivors) < self.min_survivors:
            raise AbortedError(
                f"{len(outcome.survivors)} survivors < the minimum {self.min_survivors}: "
                "nothing is released"
            )
        if outcome.total.shape != (encoded_length,):
            raise ParameterError(f"the total must have length {encoded_length}")
        return outcome.total


# ---------------------------------------------------------------------------
# plain (INSECURE baseline)


class PlainClientHalf(ClientHalf):
    """**Insecure baseline**: the update travels in the clear as float32.

    Parameters
    ----------
    length:
        Update length.
    """

    kind = SchemeKind.PLAIN

    def __init__(self, *, length: int) -> None:
        self.length = _check_length(length)

    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> npt.NDArray[Any]:
        return _check_update(update, self.length).astype("<f4")

    def payload(self, encoded: npt.NDArray[Any]) -> bytes:
        """What the client sends: the encoded update's little-endian float32 bytes."""
        arr = np.asarray(encoded)
        if arr.shape != (self.length,) or arr.dtype != np.dtype("<f4"):
            raise ParameterError("payload takes the output of encode")
        return arr.tobytes()


class PlainServerHalf(ServerHalf):
    """**Insecure baseline**: the server reads every update.

    Parameters
    ----------
    length:
        Update length.
    min_survivors:
        Fewest updates it averages (default 1).
    """

    kind = SchemeKind.PLAIN

    def __init__(self, *, length: int, min_survivors: int = 1) -> None:
        self.length = _check_length(length)
        self.min_survivors = _check_min(min_survivors)

    def sum_payloads(self, payloads: Mapping[int, bytes]) -> SumOutcome:
        """The protocol of the baseline: add the received float32 vectors.

        Raises
        ------
        DecodeError
            A payload of the wrong size or holding NaN/infinity (nothing is summed).
        """
        total = np.zeros(self.length, dtype=np.float64)
        ids = sorted(payloads)
        vectors = []
        for cid in ids:
            data = payloads[cid]
            if not isinstance(data, bytes | bytearray | memoryview) or len(data) != 4 * self.length:
                raise DecodeError(f"payload of client {cid} is not {self.length} float32 values")
            vec = np.frombuffer(bytes(data), dtype="<f4")
            if not np.all(np.isfinite(vec)):
                raise DecodeError(f"payload of client {cid} holds NaN or infinity")
            vectors.append(vec)
        if not ids:
            return SumOutcome.abort("no client sent an update")
        for vec in vectors:
            total += vec
        return SumOutcome(total=total, survivors=tuple(ids))

    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        total = self._usable(outcome, self.length)
        return FloatAggregate(
            sum=np.asarray(total, dtype=np.float64), count=len(outcome.survivors),
            survivors=outcome.survivors,
        )


# ---------------------------------------------------------------------------
# pairwise masking (SecAgg / SecAgg+)


def _check_spec(spec: QuantizationSpec) -> QuantizationSpec:
    if not isinstance(spec, QuantizationSpec):
        raise ParameterError("spec must be a QuantizationSpec")
    return spec


def _check_masked_config(config: RoundConfig, bits: int, length: int) -> None:
    if not isinstance(config, RoundConfig):
        raise ParameterError("config must be a RoundConfig")
    if config.bits != bits or config.length != length:
        raise ParameterError(
            f"the round is for {config.length} values mod 2^{config.bits}; this scheme "
            f"sends {length} values mod 2^{bits}"
        )


class _MaskedParty:
    """The masking party shared by the masked client halves (plain and DP)."""

    kind: SchemeKind
    bits: int
    encoded_length: int

    def party(
        self,
        config: RoundConfig,
        *,
        client_id: int,
        encoded: UIntArray,
        rng: RandomSource | None = None,
        identity_key: SigningKey | None = None,
        policy: ClientPolicy | None = None,
    ) -> Client:
        """The :class:`secagg.masking.Client` that sends ``encoded`` in the round
        ``config`` (e.g. ``RoundConfig.from_bytes(what the server sent)``).

        Raises
        ------
        PolicyError
            ``config`` is below ``policy`` (checked first; nothing is built).
        ParameterError
            ``config`` is for another protocol, bit width or length, or the
            client id, input or identity key does not fit it.
        """
        if policy is not None:
            if not isinstance(policy, ClientPolicy):
                raise ParameterError("policy must be a ClientPolicy")
            policy.check(config)  # first: a refused round builds nothing
        _check_masked_config(config, self.bits, self.encoded_length)
        if config.protocol is not self.kind.protocol:
            raise ParameterError(f"the round runs {config.protocol.value}, not {self.kind.value}")
        return Client(
            config=config, client_id=client_id, input_vector=encoded, rng=rng,
            identity_key=identity_key,
        )


class _MaskedServer:
    kind: SchemeKind
    bits: int
    encoded_length: int

    def round_config(
        self,
        *,
        clients: Sequence[int],
        rng: RandomSource | None = None,
        security: SecurityMode = SecurityMode.SEMI_HONEST,
        neighbors: int | None = None,
        threshold: int | None = None,
        identity_keys: Mapping[int, bytes] | None = None,
    ) -> RoundConfig:
        """A fresh :class:`RoundConfig` for this scheme: session id (and SecAgg+ graph
        seed) drawn from ``rng``; ship it with ``config.to_bytes()``.

        Raises
        ------
        ParameterError
            Infeasible or insecure parameters (see :meth:`RoundConfig.create`).
        """
        src = rng if rng is not None else SystemRandom()
        protocol = self.kind.protocol
        return RoundConfig.create(
            session_id=src.random_bytes(32),
            clients=list(clients),
            bits=self.bits,
            length=self.encoded_length,
            protocol=protocol,
            security=security,
            neighbors=neighbors,
            threshold=threshold,
            graph_seed=src.random_bytes(32) if protocol is ProtocolKind.SECAGG_PLUS else b"",
            identity_keys=identity_keys,
        )

    def party(self, config: RoundConfig) -> Server:
        """The :class:`secagg.masking.Server` of the round ``config``.

        Raises
        ------
        ParameterError
            ``config`` is for another protocol, bit width or length.
        """
        _check_masked_config(config, self.bits, self.encoded_length)
        if config.protocol is not self.kind.protocol:
            raise ParameterError(f"the round runs {config.protocol.value}, not {self.kind.value}")
        return Server(config=config)


def _check_masked_kind(kind: SchemeKind) -> SchemeKind:
    if not isinstance(kind, SchemeKind) or not kind.masked:
        raise ParameterError("kind must be SchemeKind.SECAGG or SchemeKind.SECAGG_PLUS")
    return kind


class MaskedClientHalf(_MaskedParty, ClientHalf):
    """SecAgg / SecAgg+ client: clip to ``[-clip, clip]``, stochastically round to
    ``value_bits`` (unbiased), as words of Z_{2^bits} (``spec.bits``).

    Parameters
    ----------
    kind:
        ``SchemeKind.SECAGG`` or ``SECAGG_PLUS``.
    spec:
        The :class:`QuantizationSpec` every party of the deployment uses.
    length:
        Update length.
    """

    def __init__(self, *, kind: SchemeKind, spec: QuantizationSpec, length: int) -> None:
        self.kind = _check_masked_kind(kind)
        self.spec = _check_spec(spec)
        self.length = _check_length(length)
        self.bits = spec.bits
        self.encoded_length = self.length

    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> UIntArray:
        # quantize reads the update without changing it: no defensive copy
        return self.spec.quantize(_check_update(update, self.length, copy=False), rng)

    def clipped_fraction(self, update: npt.ArrayLike) -> float:
        arr = _check_update(update, self.length)
        return float(np.mean(np.abs(arr) > self.spec.clip))


def _quantized_sum(
    total: npt.NDArray[Any], count: int, spec: QuantizationSpec, bits: int
) -> FloatArray:
    """Dequantize a sum of ``count`` quantized inputs, refusing impossible totals."""
    vec = check_in_range(total, bits) if np.issubdtype(total.dtype, np.unsignedinteger) else total
    if count > spec.max_clients:
        raise AbortedError(f"{count} survivors exceed the quantization's max_clients")
    top = count * ((1 << spec.value_bits) - 1)
    if vec.size and (int(np.min(vec)) < 0 or int(np.max(vec)) > top):
        raise AbortedError(
            "the sum is not a sum of valid encodings (a value outside the quantization "
            "range was added): nothing is released"
        )
    return spec.dequantize_sum(np.asarray(vec).astype(np.uint64), count)


class MaskedServerHalf(_MaskedServer, ServerHalf):
    """SecAgg / SecAgg+ server: the exact modular sum of the quantized updates →
    their float sum (error at most one quantization step per client and coordinate).

    Parameters
    ----------
    kind, spec, length:
        As for :class:`MaskedClientHalf`.
    min_survivors:
        Fewest survivors released (default 1; the protocol's threshold already
        bounds it from below).
    """

    def __init__(
        self, *, kind: SchemeKind, spec: QuantizationSpec, length: int, min_survivors: int = 1
    ) -> None:
        self.kind = _check_masked_kind(kind)
        self.spec = _check_spec(spec)
        self.length = _check_length(length)
        self.min_survivors = _check_min(min_survivors)
        self.bits = spec.bits
        self.encoded_length = self.length

    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        total = self._usable(outcome, self.length)
        count = len(outcome.survivors)
        fsum = _quantized_sum(total, count, self.spec, self.bits)
        return FloatAggregate(sum=fsum, count=count, survivors=outcome.survivors)


# ---------------------------------------------------------------------------
# LightSecAgg (one-shot recovery of the survivors' aggregate mask)


def _check_light_spec(spec: QuantizationSpec) -> QuantizationSpec:
    spec = _check_spec(spec)
    if spec.bits > 30:
        raise ParameterError(
            f"LightSecAgg sums inputs of at most 30 bits in GF(2^31 - 1); this quantization "
            f"needs {spec.bits} (value_bits {spec.value_bits} for {spec.max_clients} clients)"
        )
    return spec


def _check_light_config(config: LightSecAggConfig, bits: int, length: int) -> None:
    if not isinstance(config, LightSecAggConfig):
        raise ParameterError("config must be a LightSecAggConfig")
    if config.bits != bits or config.length != length:
        raise ParameterError(
            f"the round is for {config.length} values of {config.bits} bits; this scheme "
            f"sends {length} values of {bits} bits"
        )


class LightSecAggClientHalf(ClientHalf):
    """LightSecAgg client: the masked halves' quantization (clip to ``[-clip, clip]``,
    stochastic rounding to ``value_bits``, words in ``[0, 2^bits)`` with
    ``bits = spec.bits``); ``party(...)`` builds the
    :class:`secagg.lightsecagg.Client` that masks them in GF(2^31 - 1).

    The round's overflow rule ``N (2^bits - 1) < 2^31 - 1`` bounds the cohort:
    :meth:`LightSecAggServerHalf.round_config` refuses a larger one.

    Parameters
    ----------
    spec:
        The :class:`QuantizationSpec` every party uses (``spec.bits <= 30``).
    length:
        Update length.
    """

    kind = SchemeKind.LIGHTSECAGG

    def __init__(self, *, spec: QuantizationSpec, length: int) -> None:
        self.spec = _check_light_spec(spec)
        self.length = _check_length(length)
        self.bits = spec.bits
        self.encoded_length = self.length

    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> UIntArray:
        return self.spec.quantize(_check_update(update, self.length), rng)

    def clipped_fraction(self, update: npt.ArrayLike) -> float:
        arr = _check_update(update, self.length)
        return float(np.mean(np.abs(arr) > self.spec.clip))

    def party(
        self,
        config: LightSecAggConfig,
        *,
        client_id: int,
        encoded: UIntArray,
        rng: RandomSource | None = None,
    ) -> LightClient:
        """The :class:`secagg.lightsecagg.Client` that sends ``encoded`` in the round
        ``config``.

        Raises
        ------
        ParameterError
            ``config`` is for another bit width or length, or the client id or input
            does not fit it.
        """
        _check_light_config(config, self.bits, self.encoded_length)
        return LightClient(config=config, client_id=client_id, input_vector=encoded, rng=rng)


class LightSecAggServerHalf(ServerHalf):
    """LightSecAgg server side: the exact sum of the quantized updates (the round's
    result, ``Σ x_u mod 2^bits``) → their float sum, with the masked halves'
    range check (a total no ``count`` valid encodings can reach aborts).

    Parameters
    ----------
    spec, length:
        As for :class:`LightSecAggClientHalf`.
    min_survivors:
        Fewest survivors released (default 1; the round's target ``U`` already
        bounds it from below).
    """

    kind = SchemeKind.LIGHTSECAGG

    def __init__(self, *, spec: QuantizationSpec, length: int, min_survivors: int = 1) -> None:
        self.spec = _check_light_spec(spec)
        self.length = _check_length(length)
        self.min_survivors = _check_min(min_survivors)
        self.bits = spec.bits
        self.encoded_length = self.length

    def round_config(
        self,
        *,
        clients: Sequence[int],
        rng: RandomSource | None = None,
        privacy: int | None = None,
        target: int | None = None,
        dropout: int | None = None,
    ) -> LightSecAggConfig:
        """A fresh :class:`LightSecAggConfig` for this scheme (session id drawn from
        ``rng``); ``None`` picks :func:`secagg.lightsecagg.default_lightsecagg_parameters`
        (``T = max(1, N // 4)``, ``U = max(T + 1, ceil(N / 2))``, ``D = N - U``).

        Raises
        ------
        ParameterError
            ``T < U <= N - D`` violated, or the cohort breaks the overflow rule
            ``N (2^bits - 1) < 2^31 - 1`` for this spec's ``bits``.
        """
        ids = list(clients)
        self.check_cohort(len(ids))
        src = rng if rng is not None else SystemRandom()
        return LightSecAggConfig.create(
            session_id=src.random_bytes(32), clients=ids, bits=self.bits,
            length=self.encoded_length, privacy=privacy, target=target, dropout=dropout,
        )

    def check_cohort(self, n: int) -> None:
        """Refuse a cohort of ``n`` clients that breaks the overflow rule
        ``N (2^bits - 1) < 2^31 - 1`` at this spec's ``bits``.

        Raises
        ------
        ParameterError
            If it does (the message names the widest ``bits`` that ``n`` allows).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParameterError("the cohort must be a positive number of clients")
        if n * ((1 << self.bits) - 1) >= (1 << 31) - 1:
            raise ParameterError(
                f"LightSecAgg's overflow rule N (2^bits - 1) < 2^31 - 1 fails for N = {n} "
                f"clients at {self.bits} bits (at most {max_bits(n)} bits for N = {n}; "
                f"bits = value_bits + ceil(log2 N)): lower the value bits or the cohort"
            )

    def party(self, config: LightSecAggConfig) -> LightServer:
        """The :class:`secagg.lightsecagg.Server` of the round ``config``.

        Raises
        ------
        ParameterError
            ``config`` is for another bit width or length.
        """
        _check_light_config(config, self.bits, self.encoded_length)
        return LightServer(config=config)

    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        total = self._usable(outcome, self.length)
        count = len(outcome.survivors)
        fsum = _quantized_sum(total, count, self.spec, self.bits)
        return FloatAggregate(sum=fsum, count=count, survivors=outcome.survivors)


# ---------------------------------------------------------------------------
# masking + user-level distributed DP


def _check_ddp(ddp_round: DDPRound) -> DDPRound:
    if not isinstance(ddp_round, DDPRound):
        raise ParameterError("ddp_round must be a DDPRound")
    return ddp_round


class DPMaskedClientHalf(_MaskedParty, ClientHalf):
    """SecAgg(+) with distributed DP, client side: rotate, L2-clip, scale, round,
    add local discrete noise, wrap into Z_{2^b} (:meth:`secagg.dp.DDPRound.encode`).

    Parameters
    ----------
    kind:
        ``SECAGG`` or ``SECAGG_PLUS``.
    ddp_round:
        The round's DP parameters and public rotation seed.

    Security notes
    --------------
    ``encode``'s ``rng`` draws the DP noise: it must be secret.
    """

    def __init__(self, *, kind: SchemeKind, ddp_round: DDPRound) -> None:
        self.kind = _check_masked_kind(kind)
        self.ddp_round = _check_ddp(ddp_round)
        self.length = ddp_round.params.dim
        self.bits = ddp_round.params.bits
        self.encoded_length = ddp_round.params.padded_dim

    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> UIntArray:
        return self.ddp_round.encode(_check_update(update, self.length), rng)


class DPMaskedServerHalf(_MaskedServer, ServerHalf):
    """SecAgg(+) with distributed DP, server side: unwrap, unscale, inverse rotation
    (:meth:`secagg.dp.DDPRound.decode_sum`); aborts below ``n_min`` survivors, where
    the noise would be under its calibrated level.

    Parameters
    ----------
    kind, ddp_round:
        As for :class:`DPMaskedClientHalf`.
    """

    def __init__(self, *, kind: SchemeKind, ddp_round: DDPRound) -> None:
        self.kind = _check_masked_kind(kind)
        self.ddp_round = _check_ddp(ddp_round)
        self.length = ddp_round.params.dim
        self.min_survivors = ddp_round.params.min_survivors
        self.bits = ddp_round.params.bits
        self.encoded_length = ddp_round.params.padded_dim

    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        total = self._usable(outcome, self.encoded_length)
        count = len(outcome.survivors)
        fsum = self.ddp_round.decode_sum(check_in_range(total, self.bits), count)
        return FloatAggregate(sum=fsum, count=count, survivors=outcome.survivors)


# ---------------------------------------------------------------------------
# homomorphic summation (TenSEAL CKKS / BFV)


def _check_he(kind: SchemeKind, params: HEParams) -> Scheme:
    if not isinstance(params, HEParams):
        raise ParameterError("params must be HEParams")
    want = {SchemeKind.HE_CKKS: Scheme.CKKS, SchemeKind.HE_BFV: Scheme.BFV}.get(kind)
    if want is None or params.scheme is not want:
        raise ParameterError(f"{getattr(kind, 'value', kind)} does not match {params.scheme.name}")
    return want


class HEClientHalf(ClientHalf):
    """HE client: CKKS clips to ``[-clip, clip]``; BFV clips and stochastically
    quantizes to ``value_bits`` levels (:func:`secagg.he.quantization_spec`).
    ``party(...)`` builds the :class:`secagg.he.HEClient` that encrypts and signs
    the encoded update (``party.encrypt(encoded)`` → the envelopes it sends).

    Parameters
    ----------
    kind:
        ``SchemeKind.HE_CKKS`` or ``HE_BFV``.
    params:
        The deployment's :class:`secagg.he.HEParams` (scheme must match ``kind``).
    length:
        Update length.
    """

    def __init__(self, *, kind: SchemeKind, params: HEParams, length: int) -> None:
        self.scheme = _check_he(kind, params)
        self.kind = kind
        self.params = params
        self.length = _check_length(length)
        self.spec = quantization_spec(params) if self.scheme is Scheme.BFV else None

    def encode(self, update: npt.ArrayLike, rng: RandomSource | None = None) -> npt.NDArray[Any]:
        arr = _check_update(update, self.length)
        if self.spec is None:
            return np.clip(arr, -self.params.clip, self.params.clip)
        return self.spec.quantize(arr, rng).astype(np.int64)

    def clipped_fraction(self, update: npt.ArrayLike) -> float:
        arr = _check_update(update, self.length)
        return float(np.mean(np.abs(arr) > self.params.clip))

    def party(
        self,
        session: HESession,
        *,
        client_id: int,
        context: HEContext,
        signing_key: SigningKey,
    ) -> HEClient:
        """The :class:`secagg.he.HEClient` of ``session``.

        Raises
        ------
        ParameterError
            The session is for other parameters or another length, or the client,
            context or key does not fit it.
        """
        if not isinstance(session, HESession):
            raise ParameterError("session must be an HESession")
        if session.params.param_set_id != self.params.param_set_id or (
            session.vector_length != self.length
        ):
            raise ParameterError("the session is for other HE parameters or another length")
        return HEClient(
            client_id=client_id, session=session, context=context, signing_key=signing_key
        )


class HEServerHalf(ServerHalf):
    """HE server side: the decrypted aggregate (CKKS: float sum within the stated
    error bound; BFV: exact sum of levels, dequantized) → float aggregate.
    ``party(...)`` builds the :class:`secagg.he.HEServer` (public context only);
    the decrypted :class:`secagg.he.HEAggregate` becomes an outcome with
    :meth:`outcome_of`.

    Parameters
    ----------
    kind, params, length:
        As for :class:`HEClientHalf`.
    min_survivors:
        Fewest contributors released (default 2: the key holder never decrypts
        one client's update).
    """

    def __init__(
        self, *, kind: SchemeKind, params: HEParams, length: int, min_survivors: int = 2
    ) -> None:
        self.scheme = _check_he(kind, params)
        self.kind = kind
        self.params = params
        self.length = _check_length(length)
        self.min_survivors = _check_min(min_survivors)
        self.spec = quantization_spec(params) if self.scheme is Scheme.BFV else None

    def party(
        self, session: HESession, *, public_context: bytes, signing_key: SigningKey
    ) -> HEServer:
        """The :class:`secagg.he.HEServer` of ``session``.

        Raises
        ------
        ParameterError
            The session is for other parameters or another length.
        """
        if not isinstance(session, HESession):
            raise ParameterError("session must be an HESession")
        if session.params.param_set_id != self.params.param_set_id or (
            session.vector_length != self.length
        ):
            raise ParameterError("the session is for other HE parameters or another length")
        return HEServer(session=session, public_context=public_context, signing_key=signing_key)

    @staticmethod
    def outcome_of(aggregate: HEAggregate) -> SumOutcome:
        """The decryptor's :class:`secagg.he.HEAggregate` as an outcome."""
        if not isinstance(aggregate, HEAggregate):
            raise ParameterError("aggregate must be an HEAggregate")
        return SumOutcome(
            total=np.asarray(aggregate.values), survivors=tuple(sorted(aggregate.contributors))
        )

    def outcome_of_he_sum(self, result: HESumResult) -> SumOutcome:
        """The outcome of an in-process :func:`secagg.runtime.he_sum` round run on this
        half's encoded inputs (BFV: the exact sum of levels; CKKS: the float sum)."""
        if not isinstance(result, HESumResult) or result.scheme is not self.scheme:
            raise ParameterError(f"result must be an HESumResult of {self.scheme.name}")
        if result.aborted:
            return SumOutcome.abort(result.abort_reason or "aborted")
        total = result.total if self.scheme is Scheme.BFV else result.sum
        return SumOutcome(total=total, survivors=result.contributors)

    def decode(self, outcome: SumOutcome) -> FloatAggregate:
        total = self._usable(outcome, self.length)
        count = len(outcome.survivors)
        if self.spec is None:
            fsum = np.asarray(total, dtype=np.float64)
            if not np.all(np.isfinite(fsum)):
                raise AbortedError("the decrypted CKKS sum is not finite: nothing is released")
            bound = self.params.ckks_error_bound(count) + count * self.params.clip
            if fsum.size and float(np.max(np.abs(fsum))) > bound:
                raise AbortedError(
                    "the decrypted CKKS sum exceeds what the survivors' clipped updates "
                    "can add up to: nothing is released"
                )
        else:
            if not np.issubdtype(total.dtype, np.integer):
                raise ParameterError("a BFV total holds integers")
            fsum = _quantized_sum(total, count, self.spec, 64)
        return FloatAggregate(sum=fsum, count=count, survivors=outcome.survivors)
