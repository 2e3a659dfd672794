"""LightSecAgg wire messages (``protocols/lightsecagg.md`` §6), version 1.

Every message is ``u8 version || u8 type || session_id (32) || u32 sender ||
u32 recipient || body`` (big-endian integers; the server is party ``0``).  Vectors of
field elements are ``u32 count || count x u32_le`` with every element ``< p``.
:func:`decode` checks everything a message can check on its own (version, type,
lengths, sorted unique ids, element range, no trailing bytes) and raises
:class:`~secagg.errors.DecodeError`; what needs the round's state is checked by
the parties.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, ParameterError
from secagg.lightsecagg.field import Elements, P

__all__ = [
    "SERVER",
    "WIRE_VERSION",
    "Abort",
    "AdvertiseKey",
    "CodedShares",
    "KeysBroadcast",
    "MaskedInput",
    "Message",
    "MessageType",
    "SharesForward",
    "UnmaskRequest",
    "UnmaskResponse",
    "decode",
    "encode",
]

#: Wire version of LightSecAgg messages (bump on any change to a message or a derivation).
WIRE_VERSION = 1
SERVER = 0
_PUBLIC_KEY_BYTES = 32
_MAX_IDS = 2**32 - 1
_MAX_BOX = 1 << 30
_MAX_REASON = 4096


class MessageType(enum.IntEnum):
    ADVERTISE_KEY = 1  #: client -> server
    KEYS_BROADCAST = 2  #: server -> client
    CODED_SHARES = 3  #: client -> server
    SHARES_FORWARD = 4  #: server -> client
    MASKED_INPUT = 5  #: client -> server
    UNMASK_REQUEST = 6  #: server -> client
    UNMASK_RESPONSE = 7  #: client -> server
    ABORT = 8  #: server -> client


@dataclass(frozen=True, slots=True, kw_only=True)
class _Header:
    """Routing fields every message carries: the round, who sends, who receives."""

    session_id: bytes
    sender: int
    recipient: int

    def to_bytes(self) -> bytes:
        """The wire bytes of this message (:func:`encode`)."""
        return encode(self)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertiseKey(_Header):
    public_key: bytes  #: X25519 public key for the coded-share boxes
    TYPE = MessageType.ADVERTISE_KEY


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysBroadcast(_Header):
    keys: tuple[tuple[int, bytes], ...]  #: ``U1``: (id, public key), ascending ids
    TYPE = MessageType.KEYS_BROADCAST


@dataclass(frozen=True, slots=True, kw_only=True)
class CodedShares(_Header):
    boxes: tuple[tuple[int, bytes], ...]  #: (receiver, AEAD box), ascending receivers
    TYPE = MessageType.CODED_SHARES


@dataclass(frozen=True, slots=True, kw_only=True)
class SharesForward(_Header):
    boxes: tuple[tuple[int, bytes], ...]  #: (sender, AEAD box), ascending senders (``U2``)
    TYPE = MessageType.SHARES_FORWARD


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskedInput(_Header):
    vector: Elements  #: ``x_u + z_u mod p``, m elements
    TYPE = MessageType.MASKED_INPUT


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskRequest(_Header):
    survivors: tuple[int, ...]  #: ``U3``, ascending
    TYPE = MessageType.UNMASK_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class UnmaskResponse(_Header):
    vector: Elements  #: ``sum_{v in U3} [z~_v]_u``, L elements
    TYPE = MessageType.UNMASK_RESPONSE


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(_Header):
    reason: str
    TYPE = MessageType.ABORT


Message = (AdvertiseKey | KeysBroadcast | CodedShares | SharesForward | MaskedInput
           | UnmaskRequest | UnmaskResponse | Abort)


def _vector_bytes(v: Elements) -> bytes:
    return np.ascontiguousarray(v, dtype="<u4").tobytes()


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg``.

    Raises
    ------
    ParameterError
        If a field cannot be encoded (wrong length, id out of range).
    """
    w = Writer()
    if len(msg.session_id) != 32:
        raise ParameterError("session_id must be 32 bytes")
    w.u8(WIRE_VERSION).u8(int(msg.TYPE)).raw(msg.session_id).u32(msg.sender).u32(msg.recipient)
    if isinstance(msg, AdvertiseKey):
        if len(msg.public_key) != _PUBLIC_KEY_BYTES:
            raise ParameterError("public key must be 32 bytes")
        w.raw(msg.public_key)
    elif isinstance(msg, KeysBroadcast):
        w.u32(len(msg.keys))
        for u, pk in msg.keys:
            if len(pk) != _PUBLIC_KEY_BYTES:
                raise ParameterError("public key must be 32 bytes")
            w.u32(u).raw(pk)
    elif isinstance(msg, (CodedShares, SharesForward)):
        w.u32(len(msg.boxes))
        for u, box in msg.boxes:
            w.u32(u).blob(box)
    elif isinstance(msg, (MaskedInput, UnmaskResponse)):
        if msg.vector.ndim != 1:
            raise ParameterError("vector must be 1-D")
        w.u32(len(msg.vector)).raw(_vector_bytes(msg.vector))
    elif isinstance(msg, UnmaskRequest):
        w.u32(len(msg.survivors))
        for u in msg.survivors:
            w.u32(u)
    elif isinstance(msg, Abort):
        w.blob(msg.reason.encode("utf-8")[:_MAX_REASON])
    else:  # pragma: no cover - the union is closed
        raise ParameterError(f"not a LightSecAgg message: {type(msg).__name__}")
    return w.getvalue()


def _ascending(ids: list[int], what: str) -> tuple[int, ...]:
    if any(not u >= 1 for u in ids) or any(a >= b for a, b in itertools.pairwise(ids)):
        raise DecodeError(f"{what} must be ascending, unique ids >= 1")
    return tuple(ids)


def _vector(r: Reader) -> Elements:
    n = r.u32()
    if 4 * n > r.remaining:
        raise DecodeError("vector is truncated")
    v = np.frombuffer(r.raw_view(4 * n), dtype="<u4")
    if n and int(v.max()) >= P:
        raise DecodeError("vector element is not in [0, p)")
    out: Elements = v.astype(np.uint64)
    return out


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse and validate one message.

    Raises
    ------
    DecodeError
        On a wrong version or type, truncation, trailing bytes, unsorted or
        repeated ids, or an element ``>= p``.
    """
    r = Reader(data)
    version = r.u8()
    if version != WIRE_VERSION:
        raise DecodeError(f"unsupported LightSecAgg wire version {version}")
    try:
        t = MessageType(r.u8())
    except ValueError:
        raise DecodeError("unknown message type") from None
    head: dict[str, Any] = {"session_id": r.raw(32), "sender": r.u32(), "recipient": r.u32()}
    msg: Message
    if t is MessageType.ADVERTISE_KEY:
        msg = AdvertiseKey(public_key=r.raw(_PUBLIC_KEY_BYTES), **head)
    elif t is MessageType.KEYS_BROADCAST:
        n = r.count(_MAX_IDS)
        pairs = [(r.u32(), r.raw(_PUBLIC_KEY_BYTES)) for _ in range(n)]
        _ascending([u for u, _ in pairs], "key list")
        msg = KeysBroadcast(keys=tuple(pairs), **head)
    elif t in (MessageType.CODED_SHARES, MessageType.SHARES_FORWARD):
        n = r.count(_MAX_IDS)
        boxes = [(r.u32(), r.blob(_MAX_BOX)) for _ in range(n)]
        _ascending([u for u, _ in boxes], "box list")
        cls = CodedShares if t is MessageType.CODED_SHARES else SharesForward
        msg = cls(boxes=tuple(boxes), **head)
    elif t in (MessageType.MASKED_INPUT, MessageType.UNMASK_RESPONSE):
        vec = _vector(r)
        msg = (MaskedInput(vector=vec, **head) if t is MessageType.MASKED_INPUT
               else UnmaskResponse(vector=vec, **head))
    elif t is MessageType.UNMASK_REQUEST:
        n = r.count(_MAX_IDS)
        msg = UnmaskRequest(survivors=_ascending([r.u32() for _ in range(n)], "survivors"),
                            **head)
    else:
        raw = r.blob(_MAX_REASON)
        try:
            reason = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("abort reason is not UTF-8") from None
        msg = Abort(reason=reason, **head)
    r.finish()
    return msg
