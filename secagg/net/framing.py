"""Frames of the network transport and the size limits derived from a RoundConfig.

Byte layout: ``protocols/wire/transport.md`` §2.  A frame is
``u32 length || u8 kind || payload`` (``length`` counts kind + payload).
"""

from __future__ import annotations

import asyncio
import enum
import struct
from dataclasses import dataclass

from secagg.errors import DecodeError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.config import RoundConfig
from secagg.primitives.field import ELEMENT_BYTES

__all__ = [
    "HELLO_LIMIT",
    "MAX_REASON_BYTES",
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
    "encode_done",
    "encode_error",
    "encode_frame",
    "encode_hello",
    "frame_header",
    "max_message_bytes",
    "peek_type",
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
HEADER_BYTES = 2 + 1 + 1 + 32 + 4 + 4
_LEN = struct.Struct(">I")


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
    _T.KEYS_BROADCAST: _T.SHARE_KEYS,
    _T.MASKED_INPUT_REQUEST: _T.MASKED_INPUT,
    _T.CONSISTENCY_REQUEST: _T.CONSISTENCY_SIGNATURE,
    _T.UNMASKING_REQUEST: _T.UNMASKING_RESPONSE,
}


def reply_type(request: m.MessageType | None) -> m.MessageType | None:
    """The client message that answers ``request`` (``None``: no answer, e.g. Abort)."""
    return _REPLY.get(request)


def max_message_bytes(config: RoundConfig, kind: m.MessageType) -> int:
    """The largest encoded message of type ``kind`` in a round of ``config``."""
    h, n, k = HEADER_BYTES, config.n, config.degree
    width = 4 if config.bits <= 32 else 8
    sizes = {
        _T.ADVERTISE_KEYS: h + 96 + 1 + 64,
        _T.SHARE_KEYS: h + 4 + k * (4 + m.BOX_BYTES),
        _T.MASKED_INPUT: h + 1 + 8 + config.length * width,
        _T.CONSISTENCY_SIGNATURE: h + 64,
        _T.UNMASKING_RESPONSE: h + 4 + k * (4 + 1 + ELEMENT_BYTES),
        _T.KEYS_BROADCAST: h + 4 + k * (4 + 96 + 1 + 64),
        _T.MASKED_INPUT_REQUEST: h + 4 + k * (4 + m.BOX_BYTES),
        _T.CONSISTENCY_REQUEST: h + 4 + 4 * n,
        _T.UNMASKING_REQUEST: h + 4 + 4 * n + 4 + 4 * n + 4 + n * (4 + 64),
        _T.ABORT: h + 4 + m.MAX_REASON_BYTES,
    }
    return sizes[kind]


def client_frame_limit(config: RoundConfig) -> int:
    """Largest frame (kind + payload) a client accepts after HELLO."""
    server_types = (
        _T.KEYS_BROADCAST,
        _T.MASKED_INPUT_REQUEST,
        _T.CONSISTENCY_REQUEST,
        _T.UNMASKING_REQUEST,
        _T.ABORT,
    )
    return max(_DONE_LIMIT, _ERROR_LIMIT, *(1 + max_message_bytes(config, t) for t in server_types))


def server_frame_limit(config: RoundConfig, expected: m.MessageType | None) -> int:
    """Largest frame the server reads from a client that owes ``expected`` (or ERROR)."""
    if expected is None:
        return _ERROR_LIMIT
    return max(_ERROR_LIMIT, 1 + max_message_bytes(config, expected))


def peek_type(data: bytes | bytearray | memoryview) -> m.MessageType:
    """The type code of an encoded SecAgg message (header only; the body is not parsed).

    Raises
    ------
    DecodeError
        Shorter than a header, another wire version or an unknown type.
    """
    if len(data) < HEADER_BYTES:
        raise DecodeError("message shorter than its header")
    if int.from_bytes(bytes(data[:2]), "big") != m.WIRE_VERSION:
        raise DecodeError("unsupported wire version")
    try:
        return m.MessageType(data[2])
    except ValueError:
        raise DecodeError(f"unknown message type {data[2]}") from None


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
        head = await asyncio.wait_for(reader.readexactly(5), timeout)
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
    """Read ``size`` payload bytes in pieces; no byte for ``idle_timeout`` s is a cut.

    Raises
    ------
    ConnectionLostError
        EOF, reset or idle timeout.
    """
    body = bytearray(size)
    view = memoryview(body)
    got = 0
    try:
        while got < size:
            chunk = await asyncio.wait_for(reader.readexactly(min(piece, size - got)), idle_timeout)
            view[got : got + len(chunk)] = chunk
            got += len(chunk)
    except asyncio.IncompleteReadError:
        raise ConnectionLostError("connection closed in the middle of a frame") from None
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
