"""What secagg puts into Flower's records, and how a round's setup travels.

Pure Python (no ``flwr`` import), so it is testable without the extra.

Record layout (normative: ``protocols/wire/flower.md``; the masking messages of
``protocols/wire/secagg.md`` are unchanged and
travel as their own wire bytes, one per record):

* every server message carries ``content.config_records[RECORD]`` holding
  ``protocol`` (:data:`PROTOCOL`, the version string both sides must agree on),
  ``stage`` (a :class:`Stage` value) and ``payload`` (bytes): the encoded round
  setup for ``setup``, otherwise one encoded :mod:`secagg.masking.messages` frame;
* every reply carries the same record with the client's frame as ``payload``;
* the client keeps its protocol state in ``context.state.config_records[STATE_RECORD]``
  as bytes and ints only (see :mod:`secagg.integrations.flower.mod`).

Flower's own SecAgg+ uses the record ``secaggplus_configs``; seeing it where ours is
expected means the two sides run different implementations, and both sides raise
:class:`ProtocolMismatchError` naming both at the first message.

The round setup (:func:`encode_setup`) is a canonical JSON document: the
:class:`~secagg.masking.RoundConfig` in its canonical wire form
(``RoundConfig.to_bytes``, hex), the Flower node ids in client-id order, the update
encoding and, with distributed DP, the DP parameters and rotation seed.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass
from typing import Any

from secagg.dp import DDPParams, DDPRound, Mechanism
from secagg.errors import DecodeError, ParameterError, RemoteProtocolError
from secagg.masking import RoundConfig
from secagg.masking import messages as _m

__all__ = [
    "FLOWER_RECORD",
    "MISMATCH_MARKER",
    "PROTOCOL",
    "RECORD",
    "STATE_RECORD",
    "ProtocolMismatchError",
    "RoundSetup",
    "Stage",
    "UpdateEncoding",
    "decode_setup",
    "encode_setup",
]

#: Version string both sides must carry; bumps with the masking wire version.
PROTOCOL = f"secagg-secaggplus/wire-v{_m.WIRE_VERSION}/flower-v1"
#: Our record key in a message's ``config_records``.
RECORD = "secagg.secaggplus"
#: Our record key in the client's ``context.state.config_records``.
STATE_RECORD = "secagg.secaggplus.state"
#: The record Flower's own SecAgg+ (``flwr`` 1.42) uses.
FLOWER_RECORD = "secaggplus_configs"
#: Text every mismatch error contains (a server finds it in an error reply).
MISMATCH_MARKER = "secagg/flower SecAgg+ mismatch"

_SETUP_VERSION = 1
_MAX_SETUP_BYTES = 1 << 24


class Stage(enum.Enum):
    """What a server message asks for (the value travels as ``stage``)."""

    SETUP = "setup"  #: round setup -> AdvertiseKeys
    SEED = "seed"  #: SeedRequest -> SeedReveal (SecAgg+: the jointly drawn graph seed)
    SHARE_KEYS = "share-keys"  #: KeysBroadcast -> ShareKeys
    MASKED_INPUT = "masked-input"  #: MaskedInputRequest (+ FitIns) -> MaskedInput (+ FitRes)
    CONSISTENCY = "consistency"  #: ConsistencyRequest -> ConsistencySignature (malicious)
    UNMASK = "unmask"  #: UnmaskingRequest -> UnmaskingResponse


#: The stage that carries each server message type.
STAGE_OF: dict[_m.MessageType, Stage] = {
    _m.MessageType.SEED_REQUEST: Stage.SEED,
    _m.MessageType.KEYS_BROADCAST: Stage.SHARE_KEYS,
    _m.MessageType.MASKED_INPUT_REQUEST: Stage.MASKED_INPUT,
    _m.MessageType.CONSISTENCY_REQUEST: Stage.CONSISTENCY,
    _m.MessageType.UNMASKING_REQUEST: Stage.UNMASK,
}
#: The client message type each stage's reply must carry.
REPLY_OF: dict[Stage, _m.MessageType] = {
    Stage.SETUP: _m.MessageType.ADVERTISE_KEYS,
    Stage.SEED: _m.MessageType.SEED_REVEAL,
    Stage.SHARE_KEYS: _m.MessageType.SHARE_KEYS,
    Stage.MASKED_INPUT: _m.MessageType.MASKED_INPUT,
    Stage.CONSISTENCY: _m.MessageType.CONSISTENCY_SIGNATURE,
    Stage.UNMASK: _m.MessageType.UNMASKING_RESPONSE,
}


class ProtocolMismatchError(RemoteProtocolError):
    """The peer runs another SecAgg+ implementation or another protocol version."""


def mismatch(local: str, remote: str) -> ProtocolMismatchError:
    """The error both sides raise; its text names both implementations."""
    return ProtocolMismatchError(
        f"{MISMATCH_MARKER}: this side runs {local}, the other side runs {remote}. "
        "Use secagg.integrations.flower.secaggplus_mod on the ClientApp together with "
        "secagg.integrations.flower.SecAggPlusWorkflow on the ServerApp, or Flower's "
        "pair (flwr.client.mod.secaggplus_mod with flwr.server.workflow.SecAggPlusWorkflow)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateEncoding:
    """How a client's float update and its FedAvg weight become one vector in Z_{2^bits}.

    The vector is ``quantize(w * params) || quantize(w)`` with ``w =
    num_examples / max_weight`` in ``[0, 1]``: ``value_bits`` levels over
    ``[-clip, clip]`` for the parameters and over ``[-1, 1]`` for the weight, and a
    modulus ``2^bits`` that holds the sum of ``max_clients`` such vectors without
    wrapping.

    Raises
    ------
    ParameterError
        On a non-finite or non-positive range, or a modulus too small for the sum.
    """

    clip: float
    value_bits: int
    max_weight: float
    max_clients: int
    bits: int
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        from secagg.encoding.modular import bits_for_sum

        for name in ("clip", "max_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ParameterError(f"{name} must be a positive finite number")
        if isinstance(self.value_bits, bool) or not isinstance(self.value_bits, int) or not (
            1 <= self.value_bits <= 52
        ):
            raise ParameterError("value_bits must be an integer in [1, 52]")
        if isinstance(self.max_clients, bool) or not isinstance(self.max_clients, int) or (
            self.max_clients < 1
        ):
            raise ParameterError("max_clients must be a positive integer")
        need = bits_for_sum(self.value_bits, self.max_clients)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not (
            need <= self.bits <= 64
        ):
            raise ParameterError(
                f"a modulus of 2^{self.bits} cannot hold the sum of {self.max_clients} values "
                f"of {self.value_bits} bits (need 2^{need} .. 2^64)"
            )
        shapes = tuple(tuple(int(d) for d in s) for s in self.shapes)
        if not shapes or any(d < 0 for s in shapes for d in s):
            raise ParameterError("shapes must be a non-empty list of array shapes")
        object.__setattr__(self, "shapes", shapes)
        if self.length < 2:
            raise ParameterError("the model has no parameters")

    @property
    def length(self) -> int:
        """Vector length: every parameter plus one weight coordinate."""
        return sum(math.prod(s) for s in self.shapes) + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundSetup:
    """What the server sends in the ``setup`` stage."""

    config: RoundConfig
    nodes: tuple[int, ...]  #: Flower node ids; ``nodes[i]`` is client id ``i + 1``
    encoding: UpdateEncoding
    dp: DDPRound | None = None  #: distributed DP: clients send noisy model deltas

    def __post_init__(self) -> None:
        nodes = tuple(self.nodes)
        if len(set(nodes)) != len(nodes):
            raise ParameterError("duplicate node ids")
        for v in nodes:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64:
                raise ParameterError("node ids are unsigned 64-bit integers")
        if self.config.clients != tuple(range(1, len(nodes) + 1)):
            raise ParameterError("client ids must be 1..n in node order")
        if self.dp is not None:
            if not isinstance(self.dp, DDPRound):
                raise ParameterError("dp must be a DDPRound")
            p = self.dp.params
            if p.dim != self.encoding.length - 1:
                raise ParameterError("DP dimension differs from the model size")
            if (p.padded_dim, p.bits) != (self.config.length, self.config.bits):
                raise ParameterError("DP encoding differs from the config length or modulus")
            if p.max_clients < len(nodes):
                raise ParameterError("DP max_clients is below the number of nodes")
        elif self.encoding.length != self.config.length:
            raise ParameterError("encoding length differs from the config length")
        elif self.encoding.bits != self.config.bits:
            raise ParameterError("encoding modulus differs from the config modulus")
        object.__setattr__(self, "nodes", nodes)

    def client_id(self, node_id: int) -> int:
        """This round's client id of a Flower node.

        Raises
        ------
        RemoteProtocolError
            If the node is not part of the round.
        """
        try:
            return self.nodes.index(node_id) + 1
        except ValueError:
            raise RemoteProtocolError(f"node {node_id} is not part of this round") from None


def encode_setup(setup: RoundSetup) -> bytes:
    """Canonical bytes of a :class:`RoundSetup`."""
    c = setup.config
    e = setup.encoding
    doc = {
        "v": _SETUP_VERSION,
        "protocol": PROTOCOL,
        "config": c.to_bytes().hex(),
        "nodes": list(setup.nodes),
        "encoding": {
            "clip": float(e.clip),
            "value_bits": e.value_bits,
            "max_weight": float(e.max_weight),
            "max_clients": e.max_clients,
            "bits": e.bits,
            "shapes": [list(s) for s in e.shapes],
        },
    }
    if setup.dp is not None:
        p = setup.dp.params
        doc["dp"] = {
            "mechanism": p.mechanism.value,
            "dim": p.dim,
            "l2_clip": p.l2_clip,
            "bits": p.bits,
            "scale": p.scale,
            "local_stddev": p.local_stddev,
            "min_survivors": p.min_survivors,
            "max_clients": p.max_clients,
            "beta": p.beta,
            "modclip_prob": p.modclip_prob,
            "rotation_seed": setup.dp.rotation_seed.hex(),
        }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _field(d: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise DecodeError(f"round setup lacks {key!r}")
    v = d[key]
    if (isinstance(v, bool) and kind is not bool) or not isinstance(v, kind):
        raise DecodeError(f"round setup field {key!r} has the wrong type")
    return v


def _hex(d: Any, key: str) -> bytes:
    try:
        return bytes.fromhex(_field(d, key, str))
    except ValueError:
        raise DecodeError(f"round setup field {key!r} is not hex") from None


def _ints(v: Any, what: str) -> list[int]:
    if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in v):
        raise DecodeError(f"round setup field {what!r} must be a list of integers")
    return v


def decode_setup(data: bytes) -> RoundSetup:
    """Parse and fully validate the ``setup`` payload.

    Raises
    ------
    DecodeError
        Malformed bytes, a missing or mistyped field, or values a
        :class:`RoundConfig` / :class:`UpdateEncoding` refuses.
    ProtocolMismatchError
        The setup names another protocol version.
    """
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) > _MAX_SETUP_BYTES:
        raise DecodeError("round setup must be bytes of bounded size")
    try:
        doc = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DecodeError("round setup is not UTF-8 JSON") from None
    if _field(doc, "v", int) != _SETUP_VERSION or _field(doc, "protocol", str) != PROTOCOL:
        raise mismatch(f"secagg {PROTOCOL}", f"secagg {doc.get('protocol')!r}")
    c = _field(doc, "config", str)
    e = _field(doc, "encoding", dict)
    try:
        try:
            config = RoundConfig.from_bytes(bytes.fromhex(c))
        except ValueError as exc:  # DecodeError is a ValueError too
            if isinstance(exc, DecodeError):
                raise
            raise DecodeError("round setup field 'config' is not hex") from None
        shapes = _field(e, "shapes", list)
        encoding = UpdateEncoding(
            clip=_field(e, "clip", (int, float)),
            value_bits=_field(e, "value_bits", int),
            max_weight=_field(e, "max_weight", (int, float)),
            max_clients=_field(e, "max_clients", int),
            bits=_field(e, "bits", int),
            shapes=tuple(tuple(_ints(s, "shapes")) for s in shapes),
        )
        dp = None
        if "dp" in doc:
            d = _field(doc, "dp", dict)
            num = (int, float)
            params = DDPParams(
                mechanism=Mechanism(_field(d, "mechanism", str)),
                dim=_field(d, "dim", int),
                l2_clip=float(_field(d, "l2_clip", num)),
                bits=_field(d, "bits", int),
                scale=float(_field(d, "scale", num)),
                local_stddev=float(_field(d, "local_stddev", num)),
                min_survivors=_field(d, "min_survivors", int),
                max_clients=_field(d, "max_clients", int),
                beta=float(_field(d, "beta", num)),
                modclip_prob=float(_field(d, "modclip_prob", num)),
            )
            dp = DDPRound(params=params, rotation_seed=_hex(d, "rotation_seed"))
        return RoundSetup(
            config=config,
            nodes=tuple(_ints(_field(doc, "nodes", list), "nodes")),
            encoding=encoding,
            dp=dp,
        )
    except (ParameterError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"round setup refused: {exc}") from None
