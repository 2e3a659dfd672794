"""The client side of the network runtime: one masking client over one TLS connection.

:func:`run_client` (async) / :func:`run_client_sync` connect, read HELLO, check
the config against the client's policy *before anything else*, then answer the
server's requests with the sans-IO :class:`~secagg.masking.client.Client`.  The
masked input is streamed in chunks with back-pressure.  Every way the round can
end without the client's part being done raises a typed error; a broken
connection raises :class:`~secagg.net.framing.ConnectionLostError`.

Security notes
--------------
The only bytes derived from the input that ever leave the client are the
MaskedInput the state machine returns once it holds every mask; nothing is sent
before the config passed the policy check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg.encoding import bitpack
from secagg.errors import (
    AbortedError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    PolicyError,
    RemoteProtocolError,
    SecAggError,
)
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import RoundConfig
from secagg.net.framing import (
    HELLO_LIMIT,
    ConnectionLostError,
    DoneStatus,
    ErrorCode,
    FrameKind,
    TransportError,
    client_frame_limit,
    decode_done,
    decode_error,
    decode_hello,
    drain,
    encode_error,
    frame_header,
    read_frame,
)
from secagg.net.handshake import ConfigPolicy, decode_config
from secagg.phase import Phase
from secagg.primitives.prg import UIntArray
from secagg.primitives.rand import RandomSource
from secagg.primitives.sign import SigningKey

__all__ = ["ClientOutcome", "run_client", "run_client_sync"]

#: Elements per streamed chunk of the masked input (a multiple of 8, so every chunk
#: but the last packs into whole bytes at any bit width; 1 MiB at 32 bits).
STREAM_CHUNK = 1 << 18

#: ``(point)`` called at named points of the round (fault injection in simulations):
#: "connected", "hello", "advertised", "seed" (SecAgg+: the SeedRequest arrived),
#: "keys", "boxes", "upload:<i>", "uploaded", "consistency", "unmasking", "answered".
Checkpoint = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ClientOutcome:
    client_id: int
    session_id: bytes
    message_bytes_sent: int
    message_bytes_received: int
    frames_bytes_sent: int


async def _send(writer: asyncio.StreamWriter, data: bytes, idle: float) -> None:
    writer.write(data)
    await drain(writer, idle)


async def _stream_masked(
    writer: asyncio.StreamWriter,
    msg: m.MaskedInput,
    idle: float,
    checkpoint: Checkpoint | None,
    chunk: int,
) -> int:
    """Write one MESSAGE frame holding ``msg``: header and prefix, then the packed vector
    ``chunk`` elements at a time (wire version 2: ``bits`` bits per element).

    The bytes equal ``m.encode(msg)`` (and :meth:`Client.masked_input_stream`), but
    only one packed chunk exists at a time next to the masked vector the client
    already holds; the masks are not computed a second time.
    """
    vec, bits = msg.vector, msg.bits
    prefix = m.masked_input_prefix(
        session_id=msg.session_id, sender=msg.sender, bits=bits, length=len(vec), view=msg.view
    )
    size = len(prefix) + bitpack.packed_size(len(vec), bits)
    await _send(writer, frame_header(FrameKind.MESSAGE, size) + prefix, idle)
    for i, start in enumerate(range(0, len(vec), chunk)):
        writer.write(bitpack.pack(vec[start : start + chunk], bits))
        await drain(writer, idle)
        if checkpoint is not None:
            checkpoint(f"upload:{i}")
    return size


async def run_client(
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    client_id: int,
    input_vector: UIntArray,
    policy: ConfigPolicy | None = None,
    server_hostname: str | None = None,
    rng: RandomSource | None = None,
    identity_key: SigningKey | None = None,
    connect_timeout: float = 30.0,
    idle_timeout: float = 30.0,
    checkpoint: Checkpoint | None = None,
    stream_chunk: int = STREAM_CHUNK,
    observer: Callable[[bytes], None] | None = None,
) -> ClientOutcome:
    """Take part in one round; return once the server confirmed the sum was computed.

    Parameters
    ----------
    ssl_context:
        From :func:`secagg.net.tls.client_context` (this client's certificate).
    client_id:
        Must be the id in this client's certificate (the server reads it from there).
    input_vector:
        ``x_u`` in Z_{2^bits} (uint32 / uint64).
    policy:
        What config to accept; by default the input's length and the bit width
        32 (uint32) or 64 (uint64).
    server_hostname:
        Name checked against the server certificate (default ``host``).
    idle_timeout:
        Seconds of no progress while sending; the wait for the server's next
        frame is ``3 × phase_timeout + 30`` s, plus the join timeout for the
        first one (both from HELLO).
    checkpoint:
        Called at named points of the round (fault injection).
    stream_chunk:
        Elements per piece of the streamed masked input; a positive multiple of 8.
    observer:
        Sees every byte string this client writes to the TLS stream (tests).

    A failure before HELLO (server not up, TLS refused, no round open yet) sends
    nothing and is retried with a growing pause until ``connect_timeout`` has passed.

    Raises
    ------
    ConnectionLostError
        The connection broke, closed or timed out (e.g. the server was killed).
    TransportError
        The server sent ERROR (cut this client) or a malformed frame.
    AbortedError
        The server aborted the round (nothing was revealed).
    PolicyError
        The config failed the policy (the client sent ERROR 6 and nothing else).
    RemoteProtocolError
        The server violated the protocol (the client aborted).
    ParameterError
        A bad input vector or ``stream_chunk`` (raised before connecting).
    """
    if not isinstance(input_vector, np.ndarray) or input_vector.ndim != 1:
        raise ParameterError("input_vector must be a 1-D numpy array")
    if (
        isinstance(stream_chunk, bool)
        or not isinstance(stream_chunk, int)
        or stream_chunk < 8
        or stream_chunk % 8
    ):
        raise ParameterError("stream_chunk must be a positive multiple of 8")
    if policy is None:
        bits = {np.dtype(np.uint32): 32, np.dtype(np.uint64): 64}.get(input_vector.dtype)
        if bits is None:
            raise ParameterError("input must be uint32 or uint64 (or give a policy)")
        policy = ConfigPolicy(length=len(input_vector), bits=bits)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + connect_timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _attempt(
                host=host,
                port=port,
                ssl_context=ssl_context,
                server_hostname=server_hostname or host,
                connect_timeout=connect_timeout,
                observer=observer,
                client_id=client_id,
                input_vector=input_vector,
                policy=policy,
                rng=rng,
                identity_key=identity_key,
                idle=idle_timeout,
                checkpoint=checkpoint,
                stream_chunk=stream_chunk,
            )
        except _NotJoined as exc:
            # nothing was sent: the server is not up, busy, or has no round open yet
            pause = min(2.0, 0.2 * attempt) * (0.5 + os.urandom(1)[0] / 255)
            if loop.time() + pause > give_up:
                raise exc.error from None
            await asyncio.sleep(pause)


class _NotJoined(Exception):
    """The connection failed before HELLO; nothing was sent, so it may be retried."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


async def _attempt(
    *,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    server_hostname: str,
    connect_timeout: float,
    observer: Callable[[bytes], None] | None,
    **kwargs: Any,
) -> ClientOutcome:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                ssl=ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=connect_timeout,
                limit=1 << 20,
            ),
            connect_timeout,
        )
    except (TimeoutError, asyncio.TimeoutError):
        raise _NotJoined(
            ConnectionLostError(f"could not connect to {host}:{port} in time")
        ) from None
    except ssl.SSLError as exc:
        raise _NotJoined(
            TransportError(f"TLS handshake with {host}:{port} failed: {exc.reason}")
        ) from None
    except OSError as exc:
        raise _NotJoined(
            ConnectionLostError(f"could not connect to {host}:{port}: {exc}")
        ) from None
    if observer is not None:
        _write = writer.write

        def write(data: bytes | bytearray | memoryview) -> None:
            observer(bytes(data))
            _write(data)

        writer.write = write  # type: ignore[method-assign]
    try:
        return await _round(reader, writer, connect_timeout=connect_timeout, **kwargs)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)


def _phase_name(client: Client | None) -> str:
    return "handshake" if client is None else client.phase.value


async def _round(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    client_id: int,
    input_vector: UIntArray,
    policy: ConfigPolicy,
    rng: RandomSource | None,
    identity_key: SigningKey | None,
    connect_timeout: float,
    idle: float,
    checkpoint: Checkpoint | None,
    stream_chunk: int,
) -> ClientOutcome:
    sent = received = frames_sent = 0
    client: Client | None = None
    if checkpoint is not None:
        checkpoint("connected")

    async def refuse(code: ErrorCode, reason: str) -> None:
        with contextlib.suppress(Exception):
            await _send(writer, encode_error(code, reason), 2.0)

    async def next_frame(limit: int, timeout: float) -> tuple[FrameKind, bytes]:
        try:
            kind, body = await read_frame(reader, limit, timeout=timeout, idle_timeout=idle)
        except ConnectionLostError as exc:
            raise ConnectionLostError(
                f"connection to the server lost in phase {_phase_name(client)}: {exc}"
            ) from None
        except TransportError as exc:
            await refuse(exc.code or ErrorCode.MALFORMED, str(exc))
            raise
        if kind is FrameKind.ERROR:
            try:
                code, reason = decode_error(bytes(body))
            except DecodeError:
                code, reason = 0, "malformed ERROR frame"
            try:
                ecode: ErrorCode | None = ErrorCode(code)
            except ValueError:
                ecode = None
            raise TransportError(f"the server refused this client (ERROR {code}): {reason}", ecode)
        return kind, bytes(body)

    try:
        try:
            kind, body = await next_frame(HELLO_LIMIT, connect_timeout)
        except ConnectionLostError as exc:
            raise _NotJoined(exc) from None
        except TransportError as exc:
            if exc.code in (ErrorCode.NOT_OPEN, ErrorCode.SHUTDOWN):
                raise _NotJoined(exc) from None
            raise
        if kind is not FrameKind.HELLO:
            raise TransportError(f"expected HELLO, got {kind.name}")
        try:
            phase_timeout, join_timeout, cfg_bytes = decode_hello(body)
            config: RoundConfig = decode_config(cfg_bytes)
        except DecodeError as exc:
            await refuse(ErrorCode.MALFORMED, str(exc))
            raise
        try:
            policy.check(config, client_id)
        except PolicyError as exc:
            await refuse(ErrorCode.POLICY, str(exc))
            raise PolicyError(f"config refused by this client's policy: {exc}") from None
        if checkpoint is not None:
            checkpoint("hello")
        wait = 3 * phase_timeout + 30.0
        limit = client_frame_limit(config)
        client = Client(
            config=config,
            client_id=client_id,
            input_vector=input_vector,
            rng=rng,
            identity_key=identity_key,
        )
        adv = m.encode(client.start())
        await _send(writer, frame_header(FrameKind.MESSAGE, len(adv)) + adv, idle)
        sent += len(adv)
        frames_sent += 5 + len(adv)
        if checkpoint is not None:
            checkpoint("advertised")
        # the first phase may last the join timeout; every later one the phase timeout
        first = True
        while True:
            kind, body = await next_frame(limit, wait + (join_timeout if first else 0.0))
            first = False
            if kind is FrameKind.DONE:
                done = decode_done(body)
                if done.status is DoneStatus.ABORTED:
                    raise AbortedError(f"the server aborted the round: {done.reason}")
                if client.phase is not Phase.COMPLETED:
                    raise RemoteProtocolError(
                        f"DONE before this client finished (phase {client.phase.value})"
                    )
                return ClientOutcome(client_id, config.session_id, sent, received, frames_sent)
            if kind is not FrameKind.MESSAGE:
                await refuse(ErrorCode.MALFORMED, f"unexpected {kind.name} frame")
                raise TransportError(f"unexpected {kind.name} frame from the server")
            received += len(body)
            if checkpoint is not None:
                checkpoint(_POINT.get(body[2] if len(body) > 2 else 0, "message"))
            try:
                # off the event loop: masking is CPU work (AES releases the GIL), and a
                # process hosting many clients keeps their uploads moving meanwhile
                replies = await asyncio.to_thread(client.receive, body)
            except SecAggError as exc:
                await refuse(ErrorCode.REJECTED, str(exc))
                raise
            if client.phase is Phase.ABORTED:
                raise AbortedError(client.abort_reason or "the server aborted the round")
            for reply in replies:
                if isinstance(reply, m.MaskedInput):
                    size = await _stream_masked(writer, reply, idle, checkpoint, stream_chunk)
                    if checkpoint is not None:
                        checkpoint("uploaded")
                else:
                    data = m.encode(reply)
                    size = len(data)
                    await _send(writer, frame_header(FrameKind.MESSAGE, size) + data, idle)
                sent += size
                frames_sent += 5 + size
            if client.phase is Phase.COMPLETED and checkpoint is not None:
                checkpoint("answered")
    except (TimeoutError, asyncio.TimeoutError):
        raise ConnectionLostError(
            f"the server stopped reading in phase {_phase_name(client)}"
        ) from None
    except (ConnectionError, OSError) as exc:
        raise ConnectionLostError(
            f"connection to the server lost in phase {_phase_name(client)}: {exc}"
        ) from None


_POINT = {
    int(m.MessageType.SEED_REQUEST): "seed",
    int(m.MessageType.KEYS_BROADCAST): "keys",
    int(m.MessageType.MASKED_INPUT_REQUEST): "boxes",
    int(m.MessageType.CONSISTENCY_REQUEST): "consistency",
    int(m.MessageType.UNMASKING_REQUEST): "unmasking",
    int(m.MessageType.ABORT): "abort",
}


def run_client_sync(**kwargs: object) -> ClientOutcome:
    """:func:`run_client` in a fresh event loop (for scripts and the CLI)."""
    if kwargs.get("ssl_context") is None:
        raise LocalProtocolError("ssl_context is required")
    return asyncio.run(run_client(**kwargs))  # type: ignore[arg-type]
