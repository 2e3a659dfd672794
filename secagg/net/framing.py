"""Frames of the network transport and the size limits derived from a RoundConfig.

Byte layout: ``protocols/wire/transport.md`` §2.  A frame is
``u32 length || u8 kind || payload`` (``length`` counts kind + payload).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import struct
from dataclasses import dataclass
from typing import Any

from secagg.encoding import bitpack
from secagg.errors import DecodeError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, RoundConfig

__all__ = [
    "CLIENT_TYPES",
    "HEADER_BYTES",
    "HELLO_LIMIT",
    "MAX_REASON_BYTES",
    "SERVER_TYPES",
    "TRANSPORT_VERSION",
    "ConnectionLostError",
    "Done",
    "DoneStatus",
    "ErrorCode",
    "FrameKind",
    "TransportError",
    "client_frame_limit",
    "decode_done",
    "decode_error",
    "decode_hello",
    "drain",
    "encode_done",
    "encode_error",
    "encode_frame",
    "encode_hello",
    "frame_header",
    "max_message_bytes",
    "read_body",
    "read_frame",
    "read_header",
    "reply_type",
    "server_frame_limit",
]

TRANSPORT_VERSION = 1
#: Largest HELLO a client accepts (before it knows the config): 8 MiB.
HELLO_LIMIT = 1 << 23
MAX_REASON_BYTES = 1024
_ERROR_LIMIT = 1 + 2 + MAX_REASON_BYTES
_DONE_LIMIT = 1 + 1 + 2 + MAX_REASON_BYTES
_LEN = struct.Struct(">I")
#: ``asyncio.timeout`` (Python 3.11+; ``None`` before: read_body falls back to wait_for)
_timeout: Any = getattr(asyncio, "timeout", None)


class TransportError(RemoteProtocolError):
    """The peer broke the transport rules, or the connection is unusable.

    ``code`` is the ``ERROR`` frame code that tells the peer why (if any).
    """

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectionLostError(TransportError):
    """The connection closed, reset or timed out before the round ended."""


class FrameKind(enum.IntEnum):
    HELLO = 1
    MESSAGE = 2
    DONE = 3
    ERROR = 4


class ErrorCode(enum.IntEnum):
    """``ERROR`` frame codes (``protocols/wire/transport.md`` §2)."""

    IDENTITY = 1
    DUPLICATE = 2
    NOT_OPEN = 3
    TOO_LARGE = 4
    MALFORMED = 5
    POLICY = 6
    REJECTED = 7
    DEADLINE = 8
    UNSOLICITED = 9
    SHUTDOWN = 10


class DoneStatus(enum.IntEnum):
    COMPLETED = 1
    ABORTED = 2


@dataclass(frozen=True, slots=True)
class Done:
    status: DoneStatus
    reason: str


_T = m.MessageType

#: What the server accepts after each request it sent (None = after HELLO).
_REPLY = {
    None: _T.ADVERTISE_KEYS,
    _T.SEED_REQUEST: _T.SEED_REVEAL,
    _T.KEYS_BROADCAST: _T.SHARE_KEYS,
    _T.MASKED_INPUT_REQUEST: _T.MASKED_INPUT,
    _T.CONSISTENCY_REQUEST: _T.CONSISTENCY_SIGNATURE,
    _T.UNMASKING_REQUEST: _T.UNMASKING_RESPONSE,
}

#: Messages a server sends / a client sends (every type is in exactly one).
SERVER_TYPES = (
    _T.SEED_REQUEST,
    _T.KEYS_BROADCAST,
    _T.MASKED_INPUT_REQUEST,
    _T.CONSISTENCY_REQUEST,
    _T.UNMASKING_REQUEST,
    _T.ABORT,
)
CLIENT_TYPES = tuple(t for t in _T if t not in SERVER_TYPES)


def reply_type(request: m.MessageType | None) -> m.MessageType | None:
    """The client message that answers ``request`` (``None``: no answer, e.g. Abort)."""
    return _REPLY.get(request)


@dataclass(frozen=True, slots=True)
class _Sizes:
    """Encoded sizes measured with :func:`secagg.masking.messages.encode` itself.

    ``*_base`` is a message with empty lists, ``*_item`` what one more list item
    adds; a signature is counted wherever the wire allows one (malicious mode), so
    the limits hold in every security mode.
    """

    header: int
    advertise: int
    seed_reveal: int
    seed_request_base: int
    seed_request_item: int
    broadcast_base: int
    broadcast_reveal: int
    broadcast_entry: int
    boxes_base: int
    box: int
    masked_prefix: int
    consistency_signature: int
    ids_base: int
    id_item: int
    unmasking_request_base: int
    signer: int
    response_base: int
    share: int
    abort: int


def _measure() -> _Sizes:
    sid, key, sig = bytes(m.SESSION_BYTES), b"\x01" * m.KEY_BYTES, b"\x02" * m.SIGNATURE_BYTES
    up: dict[str, Any] = {"session_id": sid, "sender": 1, "recipient": m.SERVER_ID}
    down: dict[str, Any] = {"session_id": sid, "sender": m.SERVER_ID, "recipient": 1}

    def size(msg: m.Message) -> int:
        return len(m.encode(msg))

    entry = m.KeyEntry(
        owner=1, c_pk=key, s_pk=key, commitment=key, seed_commitment=key, signature=sig
    )
    reveal = m.Reveal(owner=1, reveal=key, signature=sig)
    box = (1, b"\x03" * m.BOX_BYTES)
    broadcast_base = size(m.KeysBroadcast(entries=(), reveals=(), **down))
    boxes_base = size(m.ShareKeys(boxes=(), **up))
    ids_base = size(m.ConsistencyRequest(survivors=(), **down))
    unmasking_base = size(m.UnmaskingRequest(survivors=(), dropped=(), signatures=(), **down))
    response_base = size(m.UnmaskingResponse(shares=(), **up))
    seed_request_base = size(m.SeedRequest(commitments=(), **down))
    prefix = m.masked_input_prefix(
        session_id=sid, sender=1, bits=8, length=1, view=bytes(m.VIEW_BYTES)
    )
    return _Sizes(
        header=size(m.ConsistencySignature(signature=sig, **up)) - m.SIGNATURE_BYTES,
        advertise=size(
            m.AdvertiseKeys(
                c_pk=key, s_pk=key, commitment=key, seed_commitment=key, signature=sig, **up
            )
        ),
        seed_reveal=size(m.SeedReveal(reveal=key, signature=sig, **up)),
        seed_request_base=seed_request_base,
        seed_request_item=size(m.SeedRequest(commitments=((1, key),), **down)) - seed_request_base,
        broadcast_base=broadcast_base,
        broadcast_reveal=size(m.KeysBroadcast(entries=(), reveals=(reveal,), **down))
        - broadcast_base,
        broadcast_entry=size(m.KeysBroadcast(entries=(entry,), reveals=(), **down))
        - broadcast_base,
        boxes_base=boxes_base,
        box=size(m.ShareKeys(boxes=(box,), **up)) - boxes_base,
        masked_prefix=len(prefix),
        consistency_signature=size(m.ConsistencySignature(signature=sig, **up)),
        ids_base=ids_base,
        id_item=size(m.ConsistencyRequest(survivors=(1,), **down)) - ids_base,
        unmasking_request_base=unmasking_base,
        signer=size(m.UnmaskingRequest(survivors=(), dropped=(), signatures=((1, sig),), **down))
        - unmasking_base,
        response_base=response_base,
        share=size(m.UnmaskingResponse(shares=((1, m.ShareKind.SELF_MASK, 0),), **up))
        - response_base,
        abort=size(m.Abort(code=next(iter(AbortReason)), reason="x" * m.MAX_REASON_BYTES, **down)),
    )


_SIZES = _measure()
#: Bytes of the SecAgg message header (the same for every type).
HEADER_BYTES = _SIZES.header


def max_message_bytes(config: RoundConfig, kind: m.MessageType) -> int:
    """The largest encoded message of type ``kind`` in a round of ``config``.

    ``n`` clients, at most ``k = config.degree`` neighbors, vectors of
    ``config.length`` elements packed at ``config.bits`` bits (wire version 2).
    """
    z, n, k = _SIZES, config.n, config.degree
    plus = config.protocol is ProtocolKind.SECAGG_PLUS
    sizes = {
        _T.ADVERTISE_KEYS: z.advertise,
        _T.SEED_REQUEST: z.seed_request_base + n * z.seed_request_item,
        _T.SEED_REVEAL: z.seed_reveal,
        _T.KEYS_BROADCAST: z.broadcast_base
        + (n * z.broadcast_reveal if plus else 0)
        + k * z.broadcast_entry,
        _T.SHARE_KEYS: z.boxes_base + k * z.box,
        _T.MASKED_INPUT_REQUEST: z.boxes_base + k * z.box,
        _T.MASKED_INPUT: z.masked_prefix + bitpack.packed_size(config.length, config.bits),
        _T.CONSISTENCY_REQUEST: z.ids_base + n * z.id_item,
        _T.CONSISTENCY_SIGNATURE: z.consistency_signature,
        # survivors and dropped are disjoint subsets of U2: n ids between them
        _T.UNMASKING_REQUEST: z.unmasking_request_base + n * (z.id_item + z.signer),
        _T.UNMASKING_RESPONSE: z.response_base + k * z.share,
        _T.ABORT: z.abort,
    }
    return sizes[kind]


def client_frame_limit(config: RoundConfig) -> int:
    """Largest frame (kind + payload) a client accepts after HELLO."""
    return max(_DONE_LIMIT, _ERROR_LIMIT, *(1 + max_message_bytes(config, t) for t in SERVER_TYPES))


def server_frame_limit(config: RoundConfig, expected: m.MessageType | None) -> int:
    """Largest frame the server reads from a client that owes ``expected`` (or ERROR)."""
    if expected is None:
        return _ERROR_LIMIT
    return max(_ERROR_LIMIT, 1 + max_message_bytes(config, expected))


def frame_header(kind: FrameKind, payload_len: int) -> bytes:
    return _LEN.pack(1 + payload_len) + bytes((int(kind),))


def encode_frame(kind: FrameKind, payload: bytes) -> bytes:
    return frame_header(kind, len(payload)) + payload


def _reason(text: str) -> bytes:
    raw = text.encode("utf-8")[:MAX_REASON_BYTES]
    return raw.decode("utf-8", "ignore").encode("utf-8")


def _ms(seconds: float) -> int:
    return min(max(int(seconds * 1000), 1), 2**32 - 1)


def encode_hello(config_bytes: bytes, phase_timeout: float, join_timeout: float) -> bytes:
    """HELLO: transport version, the phase and join timeouts (ms), the encoded config."""
    head = struct.pack(">HII", TRANSPORT_VERSION, _ms(phase_timeout), _ms(join_timeout))
    return encode_frame(FrameKind.HELLO, head + config_bytes)


def decode_hello(payload: bytes) -> tuple[float, float, bytes]:
    """``(phase_timeout s, join_timeout s, config bytes)`` from a HELLO payload.

    Raises
    ------
    DecodeError
        Too short, another transport version or a zero timeout.
    """
    if len(payload) < 10:
        raise DecodeError("HELLO too short")
    version, phase_ms, join_ms = struct.unpack(">HII", payload[:10])
    if version != TRANSPORT_VERSION:
        raise DecodeError(f"unsupported transport version {version}")
    if phase_ms == 0 or join_ms == 0:
        raise DecodeError("HELLO timeout is zero")
    return phase_ms / 1000.0, join_ms / 1000.0, payload[10:]


def encode_error(code: ErrorCode, reason: str) -> bytes:
    return encode_frame(FrameKind.ERROR, struct.pack(">H", int(code)) + _reason(reason))


def decode_error(payload: bytes) -> tuple[int, str]:
    if len(payload) < 2 or len(payload) > 2 + MAX_REASON_BYTES:
        raise DecodeError("malformed ERROR frame")
    try:
        return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("ERROR reason is not UTF-8") from None


def encode_done(status: DoneStatus, reason: str = "") -> bytes:
    raw = _reason(reason)
    return encode_frame(FrameKind.DONE, struct.pack(">BH", int(status), len(raw)) + raw)


def decode_done(payload: bytes) -> Done:
    if len(payload) < 3:
        raise DecodeError("DONE too short")
    status, n = struct.unpack(">BH", payload[:3])
    if n > MAX_REASON_BYTES or len(payload) != 3 + n:
        raise DecodeError("malformed DONE frame")
    try:
        return Done(DoneStatus(status), payload[3:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise DecodeError("malformed DONE frame") from None


async def drain(writer: asyncio.StreamWriter, timeout: float) -> None:
    """``writer.drain()`` bounded by ``timeout`` s (raises ``TimeoutError``).

    Usually nothing waits (the transport's buffer is under its high-water mark):
    then this costs no task and no timer beyond ``asyncio.timeout``'s one handle,
    where ``asyncio.wait_for`` would make a task per call.
    """
    if _timeout is None:  # Python 3.10
        await asyncio.wait_for(writer.drain(), timeout)
        return
    async with _timeout(timeout):
        await writer.drain()


async def read_header(
    reader: asyncio.StreamReader, limit: int, *, timeout: float | None
) -> tuple[FrameKind, int]:
    """Read a frame header; return ``(kind, payload length)``.

    ``timeout`` bounds the wait for the first byte (``None``: wait forever).

    Raises
    ------
    TransportError
        Frame over ``limit`` (kind + payload; code TOO_LARGE), zero length or an
        unknown kind (code MALFORMED).
    ConnectionLostError
        EOF, reset or timeout.
    """
    try:
        if timeout is None:
            head = await reader.readexactly(5)
        elif _timeout is None:  # Python 3.10
            head = await asyncio.wait_for(reader.readexactly(5), timeout)
        else:
            async with _timeout(timeout):
                head = await reader.readexactly(5)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ConnectionLostError("connection closed by the peer") from None
        raise ConnectionLostError("connection closed in the middle of a frame") from None
    except (TimeoutError, asyncio.TimeoutError):
        raise ConnectionLostError(f"no frame within {timeout:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise ConnectionLostError(f"connection broken: {exc}") from None
    (length,) = _LEN.unpack(head[:4])
    if length < 1:
        raise TransportError("zero-length frame", ErrorCode.MALFORMED)
    if length > limit:
        raise TransportError(
            f"frame of {length} bytes over the limit of {limit}", ErrorCode.TOO_LARGE
        )
    try:
        kind = FrameKind(head[4])
    except ValueError:
        raise TransportError(f"unknown frame kind {head[4]}", ErrorCode.MALFORMED) from None
    return kind, length - 1


async def read_body(
    reader: asyncio.StreamReader, size: int, *, idle_timeout: float, piece: int = 1 << 16
) -> bytearray:
    """Read ``size`` payload bytes; no byte for ``idle_timeout`` s is a cut.

    Takes whatever the stream has buffered (at most ``piece`` bytes at a time)
    instead of waiting for whole pieces, so the stream's buffer never has to grow
    past its own limit and each byte is copied once out of it.  The idle timer is
    one timer moved forward after each piece (``asyncio.timeout``, Python 3.11+),
    not a task per piece (``asyncio.wait_for``: a large frame arrives in tens of
    pieces).

    Raises
    ------
    ConnectionLostError
        EOF, reset or idle timeout.
    """
    body = bytearray(size)
    view = memoryview(body)
    got = 0
    try:
        loop = asyncio.get_running_loop()
        # Python 3.10 has no asyncio.timeout: a wait_for per piece there instead
        async with (_timeout(idle_timeout) if _timeout else contextlib.nullcontext()) as idle:
            while got < size:
                read = reader.read(min(piece, size - got))
                chunk = await (read if idle is not None else asyncio.wait_for(read, idle_timeout))
                if not chunk:
                    raise ConnectionLostError("connection closed in the middle of a frame")
                view[got : got + len(chunk)] = chunk
                got += len(chunk)
                if idle is not None:
                    idle.reschedule(loop.time() + idle_timeout)
    except (TimeoutError, asyncio.TimeoutError):
        raise ConnectionLostError(
            f"stalled for {idle_timeout:g} s in the middle of a frame", ErrorCode.DEADLINE
        ) from None
    except (ConnectionError, OSError) as exc:
        raise ConnectionLostError(f"connection broken: {exc}") from None
    finally:
        view.release()
    return body


async def read_frame(
    reader: asyncio.StreamReader,
    limit: int,
    *,
    timeout: float | None,
    idle_timeout: float,
) -> tuple[FrameKind, bytearray]:
    """:func:`read_header` then :func:`read_body`."""
    kind, size = await read_header(reader, limit, timeout=timeout)
    return kind, await read_body(reader, size, idle_timeout=idle_timeout)
