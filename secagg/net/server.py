"""The server side of the network runtime: a TLS listener and a ClientPool over sockets.

:class:`NetServer` owns the listening socket, a *control* event loop in a
background thread (accepting TCP connections; the round's state and deadlines)
and ``io_threads`` *I/O* event loops, each in its own thread, that take the
accepted sockets in turn: TLS handshake, frames in and out, TLS records
encrypted and decrypted — work OpenSSL does without the GIL, so it spreads over
cores.  A complete frame goes to the control loop, which alone changes the
round's state.  :meth:`NetServer.open_round` returns a :class:`NetClientPool`
for one round: the pool the runtime's ``RoundDriver`` uses exactly like
the in-process or process pools — ``start`` / ``exchange`` yield ``(client,
[wire bytes])`` as replies arrive, and clients that do not answer by the deadline
are not yielded (dropouts).  The pool never parses a message body; it reads only
the type byte of the messages the server sends, to know which reply (and which
frame-size limit) to accept next.

Rules (``protocols/wire/transport.md``):

* the client id comes from the verified certificate, never from the client;
* one connection per id per round; a second is refused and the first is untouched;
* a frame over its limit, an unknown kind, garbage, an unsolicited message or a
  stall longer than the idle timeout cuts that connection and nothing else;
* at most ``upload_slots`` large frames are buffered at a time (the others wait
  in their TCP windows), so the server holds O(m) bytes, not O(n·m);
* every deadline runs on the control loop's monotonic clock (``loop.time()`` is
  ``time.monotonic()``, the clock of the driver's deadlines).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import queue
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from secagg.errors import DecodeError, LocalProtocolError, ParameterError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.config import RoundConfig
from secagg.net.certs import client_id_from_certificate
from secagg.net.framing import (
    CLIENT_TYPES,
    ConnectionLostError,
    DoneStatus,
    ErrorCode,
    FrameKind,
    TransportError,
    decode_error,
    drain,
    encode_done,
    encode_error,
    encode_hello,
    frame_header,
    read_body,
    read_header,
    reply_type,
    server_frame_limit,
)
from secagg.net.handshake import encode_config
from secagg.runtime.pool import Reply

__all__ = ["ConnectionStats", "NetClientPool", "NetServer", "default_io_threads"]

#: Frames above this many bytes need an upload slot before their body is read.
LARGE_FRAME = 1 << 16
#: Per-connection read buffer: asyncio pauses reading a socket whose buffer holds more
#: than twice this, so a client waiting for an upload slot is held back by TCP.
READ_BUFFER = 1 << 14
#: Bytes the TLS layer takes from a socket at a time.  asyncio's own default (256 KiB)
#: is a zero-filled buffer per connection, most of a connection's memory at n = 10^3.
TLS_READ_CHUNK = 1 << 15
_TCP_INFO = 11  # socket.TCP_INFO on Linux
_TCPI_BYTES_ACKED = 120  # offsets in struct tcp_info (linux/tcp.h)
_TCPI_BYTES_RECEIVED = 128


def default_io_threads() -> int:
    """The server's I/O event loops when not given: one per CPU, at most 4."""
    return min(4, os.cpu_count() or 1)


@dataclass(slots=True)
class ConnectionStats:
    """Bytes of one client connection, as the server saw them."""

    message_bytes_in: int = 0  #: SecAgg message bytes received (MESSAGE payloads)
    message_bytes_out: int = 0
    frame_bytes_in: int = 0  #: every frame byte, headers included
    frame_bytes_out: int = 0
    tcp_bytes_in: int | None = None  #: TCP payload bytes (TLS records, handshake included)
    tcp_bytes_out: int | None = None


def _update_tcp(conn: _Conn) -> None:
    got_in, got_out = _tcp_counts(conn.writer)
    if got_in is not None:
        conn.stats.tcp_bytes_in = got_in
    if got_out is not None:
        conn.stats.tcp_bytes_out = got_out


def _tcp_counts(writer: asyncio.StreamWriter) -> tuple[int | None, int | None]:
    if not sys.platform.startswith("linux"):  # struct tcp_info offsets are Linux's
        return None, None
    try:
        sock = writer.get_extra_info("socket")
        if sock is None:
            return None, None
        raw = sock.getsockopt(6, _TCP_INFO, 256)
    except (OSError, AttributeError):  # closed transport
        return None, None
    if len(raw) < _TCPI_BYTES_RECEIVED + 8:
        return None, None
    (acked,) = struct.unpack_from("=Q", raw, _TCPI_BYTES_ACKED)
    (received,) = struct.unpack_from("=Q", raw, _TCPI_BYTES_RECEIVED)
    return int(received), int(acked)


@dataclass(eq=False)
class _Conn:
    """One admitted connection.

    ``loop`` is the I/O loop that owns ``reader``/``writer`` (only code running on it
    touches them); ``closed`` and the pool's round state change on the control loop
    only; ``holds_slot`` changes under the :class:`_Slots` lock.
    """

    cid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop
    expected: m.MessageType | None = None
    closed: bool = False
    task: asyncio.Task[Any] | None = None
    holds_slot: bool = False
    stats: ConnectionStats = field(default_factory=ConnectionStats)


_END = object()


class _Slots:
    """Upload slots shared by the I/O loops: a counting semaphore whose waiters are
    coroutines on several event loops.

    :meth:`acquire` is awaited on a connection's I/O loop; :meth:`release` may be
    called from any thread (the driver releases a slot once it has added the
    upload into the running sum).  A freed slot passes directly to the oldest
    waiter (``holds_slot`` is set under the lock, before the waiter wakes), so at
    most ``n`` connections hold one at any time.
    """

    def __init__(self, n: int) -> None:
        self._lock = threading.Lock()
        self._free = n
        self._waiters: collections.deque[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[None], _Conn]
        ] = collections.deque()

    async def acquire(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                conn.holds_slot = True
                return
            fut: asyncio.Future[None] = loop.create_future()
            entry = (loop, fut, conn)
            self._waiters.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)  # still waiting: nothing to give back
            # otherwise the slot was handed over: _wake passes it on (the future is
            # cancelled) or the connection's clean-up releases it
            raise

    def release(self, conn: _Conn) -> None:
        with self._lock:
            if not conn.holds_slot:
                return
            conn.holds_slot = False
            if not self._waiters:
                self._free += 1
                return
            loop, fut, nxt = self._waiters.popleft()
            nxt.holds_slot = True
        try:
            loop.call_soon_threadsafe(self._wake, fut, nxt)
        except RuntimeError:  # that loop is closed (shutdown): pass the slot on
            self.release(nxt)

    def _wake(self, fut: asyncio.Future[None], conn: _Conn) -> None:
        if fut.done():  # the waiter was cancelled after the hand-over
            self.release(conn)
        else:
            fut.set_result(None)


class _ServerLoop(asyncio.SelectorEventLoop):
    """The server's event loops: asyncio's TLS layer with a receive buffer of
    :data:`TLS_READ_CHUNK` bytes per connection instead of 256 KiB.

    ``_make_ssl_transport`` is where asyncio builds the TLS protocol of every
    accepted connection (Python 3.11+ ``sslproto``); on an asyncio without that
    buffer the connection keeps the defaults.
    """

    def _make_ssl_transport(self, *args: Any, **kwargs: Any) -> Any:
        transport = super()._make_ssl_transport(*args, **kwargs)  # type: ignore[misc]
        proto = getattr(transport, "_ssl_protocol", None)
        if proto is not None and isinstance(getattr(proto, "_ssl_buffer", None), bytearray):
            proto.max_size = TLS_READ_CHUNK  # what one SSL read or socket read takes
            proto._ssl_buffer = bytearray(TLS_READ_CHUNK)
            proto._ssl_buffer_view = memoryview(proto._ssl_buffer)
        return transport


@dataclass(eq=False)
class _IOLoop:
    """One I/O event loop in its own thread: TLS handshakes and frames of its connections."""

    index: int
    loop: _ServerLoop = field(default_factory=_ServerLoop)
    thread: threading.Thread | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class NetServer:
    """A mutual-TLS listener that hosts one round at a time.

    Threads: a *control* event loop accepts TCP connections and owns every round's
    state (who is connected, who owes what, deadlines); ``io_threads`` *I/O*
    event loops, each in its own thread, take the accepted sockets in turn and do
    everything that touches a connection — the TLS handshake, reading and
    writing frames, TLS record encryption and decryption.  OpenSSL runs those
    without the GIL, so handshakes and large uploads proceed on several cores at
    once; an I/O loop hands each complete frame to the control loop
    (``call_soon_threadsafe``), which alone decides what it means for the round.
    :meth:`close` stops and joins every thread.

    Parameters
    ----------
    ssl_context:
        From :func:`secagg.net.tls.server_context` (TLS 1.3, client certificates required).
    host, port:
        Where to listen: the first address ``host`` resolves to (``port=0``: any
        free port; see :attr:`address`).
    handshake_timeout:
        Seconds a TLS handshake may take.
    idle_timeout:
        Seconds without a byte in the middle of a frame (or a blocked send)
        before the connection is cut.
    upload_slots:
        Large frames (masked inputs) read at the same time, over all I/O loops.
    io_threads:
        I/O event loops (threads); default ``min(4, os.cpu_count())``.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 0,
        handshake_timeout: float = 10.0,
        idle_timeout: float = 10.0,
        upload_slots: int = 2,
        io_threads: int | None = None,
    ) -> None:
        if ssl_context.verify_mode != ssl.CERT_REQUIRED:
            raise ParameterError("the server context must require client certificates")
        if ssl_context.minimum_version != ssl.TLSVersion.TLSv1_3:
            raise ParameterError("the server context must require TLS 1.3")
        if upload_slots < 1 or idle_timeout <= 0 or handshake_timeout <= 0:
            raise ParameterError("upload_slots >= 1 and positive timeouts required")
        if io_threads is None:
            io_threads = default_io_threads()
        if isinstance(io_threads, bool) or not isinstance(io_threads, int) or io_threads < 1:
            raise ParameterError("io_threads must be a positive integer")
        self._ctx = ssl_context
        self._host, self._port = host, port
        self._hs_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.upload_slots = upload_slots
        self.io_threads = io_threads
        self._loop: asyncio.AbstractEventLoop = _ServerLoop()
        self._io = [_IOLoop(i) for i in range(io_threads)]
        self._next_io = itertools.cycle(range(io_threads))
        self._thread: threading.Thread | None = None
        self._lsock: socket.socket | None = None
        self._round: NetClientPool | None = None
        self._refused: list[tuple[str, str]] = []
        self._address: tuple[str, int] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Start the control and I/O threads and listen; returns ``(host, port)``."""
        if self._thread is not None:
            raise LocalProtocolError("server already started")
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="secagg-net-server", daemon=True
        )
        self._thread.start()
        for io in self._io:
            io.thread = threading.Thread(
                target=io.loop.run_forever, name=f"secagg-net-io-{io.index}", daemon=True
            )
            io.thread.start()
        try:
            self._address = self.call(self._listen(self._bind()))
        except BaseException:
            self.close()
            raise
        return self._address

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise LocalProtocolError("server not started")
        return self._address

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The control loop (round state, deadlines)."""
        return self._loop

    @property
    def refused(self) -> list[tuple[str, str]]:
        """``(peer, reason)`` of every connection refused after its TLS handshake."""
        return list(self._refused)

    def call(self, coro: Any, timeout: float | None = None) -> Any:
        """Run ``coro`` on the control loop and wait for its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _bind(self) -> socket.socket:
        """The listening socket, on the first address ``host`` resolves to (resolved
        here, in the caller's thread: no executor thread to outlive :meth:`close`)."""
        infos = socket.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        if not infos:
            raise OSError(f"cannot resolve {self._host!r}")
        family, _, _, _, addr = infos[0]
        sock = socket.create_server(addr[:2], family=family, backlog=1024)
        sock.setblocking(False)
        return sock

    async def _listen(self, sock: socket.socket) -> tuple[str, int]:
        self._lsock = sock
        self._loop.add_reader(sock.fileno(), self._accept_ready)
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    def _accept_ready(self) -> None:
        """Control loop: accept what is pending and deal the sockets to the I/O loops."""
        sock = self._lsock
        if sock is None:
            return
        batches: dict[int, list[socket.socket]] = {}
        for _ in range(256):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                break
            except OSError:
                # out of file descriptors or buffers: stop accepting for a while
                # (asyncio's own servers do the same); the backlog holds the others
                self._loop.remove_reader(sock.fileno())
                self._loop.call_later(1.0, self._resume_accept)
                break
            conn.setblocking(False)
            batches.setdefault(next(self._next_io), []).append(conn)
        for i, socks in batches.items():
            io = self._io[i]
            try:
                io.loop.call_soon_threadsafe(self._spawn, io, socks)
            except RuntimeError:  # that loop is closed: shutting down
                for s in socks:
                    s.close()

    def _resume_accept(self) -> None:
        if self._lsock is not None:
            self._loop.add_reader(self._lsock.fileno(), self._accept_ready)

    def _spawn(self, io: _IOLoop, socks: list[socket.socket]) -> None:
        """I/O loop: a task per accepted socket (TLS handshake, then the connection)."""
        for s in socks:
            task = io.loop.create_task(self._on_accept(io, s))
            io.tasks.add(task)
            task.add_done_callback(io.tasks.discard)

    def close(self) -> None:
        """Close every connection and the listener; stop and join every thread."""
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self.call(self._shutdown(), timeout=30)
        for io in self._io:
            if io.thread is None:
                continue
            with contextlib.suppress(RuntimeError):
                io.loop.call_soon_threadsafe(io.loop.stop)
            io.thread.join(timeout=30)
            io.thread = None
            io.loop.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._round is not None:
            await self._round._finish(DoneStatus.ABORTED, "server shutting down")
        if self._lsock is not None:
            self._loop.remove_reader(self._lsock.fileno())
            self._lsock.close()
            self._lsock = None
        # every socket dealt before this point has its task by now (each I/O loop runs
        # its callbacks in order): cancel them all
        for io in self._io:
            if io.thread is not None:
                await asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(_cancel_all(io.tasks), io.loop)
                )

    def __enter__(self) -> NetServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rounds -----------------------------------------------------------------------

    def open_round(
        self, config: RoundConfig, *, phase_timeout: float, join_timeout: float | None = None
    ) -> NetClientPool:
        """Accept the clients of ``config`` (one round at a time).

        Raises
        ------
        LocalProtocolError
            If another round is still open.
        """
        if self._round is not None and not self._round.closed:
            raise LocalProtocolError("a round is already open on this server")
        pool = NetClientPool(
            self, config, phase_timeout=phase_timeout, join_timeout=join_timeout or phase_timeout
        )
        self.call(pool._open())
        self._round = pool
        return pool

    def run_round(
        self,
        config: RoundConfig,
        *,
        phase_timeout: float,
        join_timeout: float | None = None,
        listener: Any = None,
        measure_memory: bool = False,
        unmask_threads: int = 1,
        on_open: Callable[[], None] | None = None,
        digest: bool = True,
    ) -> tuple[Any, NetClientPool]:
        """Open a round, run it with the runtime's :class:`RoundDriver`, send DONE.

        Returns ``(RoundOutcome, pool)``.  ``join_timeout`` bounds the first phase
        (clients connecting and advertising keys; the pool extends the driver's
        first deadline to it), ``phase_timeout`` every later one.  ``listener`` is
        a :class:`secagg.runtime.driver.Listener`; ``on_open`` is called once the
        round accepts connections (e.g. to start clients); ``digest`` as the
        driver's (the transcript digest: SHA-256 of every frame).
        """
        from secagg.runtime.driver import MaskingServerParty, RoundDriver

        pool = self.open_round(config, phase_timeout=phase_timeout, join_timeout=join_timeout)
        try:
            if on_open is not None:
                on_open()
            outcome = RoundDriver(
                MaskingServerParty(config),
                pool,
                clients=config.clients,
                phase_timeout=phase_timeout,
                listener=listener,
                measure_memory=measure_memory,
                unmask_threads=unmask_threads,
                digest=digest,
            ).run()
            if outcome.aborted:
                pool.finish(DoneStatus.ABORTED, outcome.abort_reason or "aborted")
            else:
                pool.finish(DoneStatus.COMPLETED, "sum computed")
        finally:
            pool.close()
        return outcome, pool

    # -- connections (I/O loops) ----------------------------------------------------------

    async def _on_accept(self, io: _IOLoop, sock: socket.socket) -> None:
        """I/O loop: the TLS handshake of an accepted socket, then the connection."""
        loop = io.loop
        reader = asyncio.StreamReader(limit=READ_BUFFER, loop=loop)  # paused above 2 x this
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=self._ctx,
                ssl_handshake_timeout=self._hs_timeout,
            )
        except (OSError, EOFError, ValueError):  # refused by TLS itself, reset, timed out
            sock.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        await self._on_connect(io, reader, writer)

    async def _refuse(self, writer: asyncio.StreamWriter, code: ErrorCode, reason: str) -> None:
        peer = str(writer.get_extra_info("peername"))
        self._refused.append((peer, reason))  # list.append: atomic across threads
        with contextlib.suppress(Exception):
            writer.write(encode_error(code, reason))
            await drain(writer, self.idle_timeout)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def _on_connect(
        self, io: _IOLoop, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(AttributeError, NotImplementedError):
            # bound what the TLS layer buffers per connection (asyncio's default is
            # 256 KiB of ciphertext); a client waiting for an upload slot is held back
            # by TCP, not by server memory
            writer.transport.set_read_buffer_limits(high=READ_BUFFER)  # type: ignore[attr-defined]
        obj = writer.get_extra_info("ssl_object")
        try:
            cid = client_id_from_certificate(
                obj.getpeercert(binary_form=True) if obj is not None else None
            )
        except RemoteProtocolError as exc:
            await self._refuse(writer, ErrorCode.IDENTITY, str(exc))
            return
        # the control loop decides (one connection per id, only while the round accepts)
        admitted = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(
                self._admit(cid, reader, writer, io.loop, asyncio.current_task()), self._loop
            )
        )
        if admitted.pool is None or admitted.conn is None:
            await self._refuse(writer, admitted.code, admitted.reason)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await admitted.pool._serve(admitted.conn)

    async def _admit(
        self,
        cid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        loop: asyncio.AbstractEventLoop,
        task: asyncio.Task[Any] | None,
    ) -> _Admission:
        """Control loop: admit ``cid`` into the open round, or say why not."""
        pool = self._round
        if pool is None or pool.closed:
            return _Admission(code=ErrorCode.NOT_OPEN, reason="no round is open")
        if cid not in pool.config_clients:
            return _Admission(
                code=ErrorCode.IDENTITY, reason=f"client {cid} is not registered in this round"
            )
        if cid in pool.conns:
            return _Admission(
                code=ErrorCode.DUPLICATE,
                reason=f"client {cid} already has a connection in this round",
            )
        if not pool.accepting:
            return _Admission(code=ErrorCode.NOT_OPEN, reason="the round is past its first phase")
        conn = _Conn(cid, reader, writer, loop, expected=m.MessageType.ADVERTISE_KEYS, task=task)
        pool.conns[cid] = conn
        pool.stats[cid] = conn.stats
        return _Admission(pool=pool, conn=conn)


@dataclass(frozen=True, slots=True)
class _Admission:
    """The control loop's answer to a new connection: admitted, or refused and why."""

    pool: NetClientPool | None = None
    conn: _Conn | None = None
    code: ErrorCode = ErrorCode.NOT_OPEN
    reason: str = ""


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    pending = list(tasks)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5.0)


class NetClientPool:
    """A :class:`ClientPool` whose clients are remote TLS connections (``engine = "net"``).

    Created by :meth:`NetServer.open_round`.  ``start``/``exchange`` are called
    from the driver's thread.  The round's state (``conns``, who owes which
    reply, the phase deadline, ``cut``) lives on the server's control loop and
    changes only there; each connection's reading and writing runs on its I/O
    loop, which hands complete frames to the control loop and is told from there
    to send or to cut.
    """

    engine = "net"

    def __init__(
        self,
        server: NetServer,
        config: RoundConfig,
        *,
        phase_timeout: float,
        join_timeout: float | None = None,
    ) -> None:
        if phase_timeout <= 0 or (join_timeout is not None and join_timeout <= 0):
            raise ParameterError("phase_timeout must be positive")
        self._srv = server
        self._loop = server.loop
        self.config = config
        self.config_clients = frozenset(config.clients)
        self.workers = 0
        self.phase_timeout = phase_timeout
        self.join_timeout = join_timeout or phase_timeout
        self._hello = encode_hello(
            encode_config(config), phase_timeout, join_timeout or phase_timeout
        )
        self.conns: dict[int, _Conn] = {}
        self.accepting = False
        self.closed = False
        self._waiting: dict[int, m.MessageType] = {}
        self._gen = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = _Slots(server.upload_slots)
        #: client -> why it was cut (deadline, bad frame, rejected message, lost connection)
        self.cut: dict[int, str] = {}
        #: client -> reason it gave in an ERROR frame (e.g. its policy refused the config)
        self.client_errors: dict[int, str] = {}
        self.stats: dict[int, ConnectionStats] = {}
        self.hello_bytes = len(self._hello)
        self._max_frame = max(server_frame_limit(config, t) for t in CLIENT_TYPES)

    async def _open(self) -> None:
        self._waiting = dict.fromkeys(self.config.clients, m.MessageType.ADVERTISE_KEYS)
        self.accepting = True

    # -- the ClientPool interface (driver thread) ------------------------------------------

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        """Phase 0: yield ``(client, [AdvertiseKeys bytes])`` as clients connect and speak.

        Connections are accepted until every client in ``clients`` has spoken or
        ``deadline`` (``time.monotonic()``) passes; later connections are refused.
        """
        want = set(clients)
        if not want <= self.config_clients:
            raise ParameterError("start() with clients outside the round")
        # remote clients connect over the network: the first phase lasts at least
        # the join timeout, whatever the driver's per-phase deadline
        join = time.monotonic() + self.join_timeout
        gen = self._srv.call(self._arm(0, want, None if deadline is None else max(deadline, join)))
        return self._drain(gen)

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None) -> Iterator[Reply]:
        """Send each client its message; yield ``(client, [reply])`` as replies arrive.

        Clients that do not answer before ``deadline`` or whose connection broke
        are cut and not yielded.
        """
        gen = self._srv.call(self._send_batch(dict(batch), deadline))
        return self._drain(gen)

    def reject(self, client: int, reason: str) -> None:
        """The server refused ``client``'s message: cut that client (ERROR 7)."""
        self._srv.call(self._cut(client, ErrorCode.REJECTED, f"message rejected: {reason}"))

    def finish(self, status: DoneStatus, reason: str = "") -> None:
        """Send DONE to every client still connected and close the round."""
        self._srv.call(self._finish(status, reason))

    def close(self) -> None:
        if not self.closed:
            self.finish(DoneStatus.ABORTED, "round closed")

    def _drain(self, gen: int) -> Iterator[Reply]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, tuple) and item[0] == "end":
                if item[1] == gen:
                    return
                continue
            _, conn, data, release = item
            del item
            try:
                yield Reply(conn.cid, [data])
            finally:
                del data  # the driver is done with it: keep only the running sum
                if release:
                    self._slots.release(conn)  # the next upload may be read

    # -- control loop ------------------------------------------------------------------------

    def _ctl(self, fn: Callable[..., Any], *args: Any) -> None:
        """From an I/O loop: run ``fn(*args)`` on the control loop (in call order)."""
        with contextlib.suppress(RuntimeError):  # the control loop is closed: shutdown
            self._loop.call_soon_threadsafe(fn, *args)

    async def _arm(self, phase: int, want: set[int], deadline: float | None) -> int:
        self._gen += 1
        gen = self._gen
        # phase 0: clients not in `want` are not waited for
        for cid in list(self._waiting):
            if cid not in want:
                del self._waiting[cid]
        self._set_deadline(gen, deadline)
        if not self._waiting:
            self._end(gen)
        return gen

    def _set_deadline(self, gen: int, deadline: float | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if deadline is not None:
            self._deadline = self._loop.call_at(deadline, self._on_deadline, gen)

    def _end(self, gen: int) -> None:
        if gen != self._gen:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.accepting = False  # only phase 0 accepts connections
        self._queue.put(("end", gen))

    def _on_deadline(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._deadline = None
        for cid in list(self._waiting):
            del self._waiting[cid]
            if cid in self.conns:
                self._drop(cid, ErrorCode.DEADLINE, "phase deadline passed")
            else:
                self.cut.setdefault(cid, "never connected")
        self._end(gen)

    async def _send_batch(self, batch: dict[int, bytes], deadline: float | None) -> int:
        self._gen += 1
        gen = self._gen
        self._waiting = {}
        types = {m.peek_type(d) for d in batch.values()}
        if batch and m.MessageType.ABORT not in types:
            # a connected client the server does not continue with had its message
            # rejected: cut it (ERROR 7) rather than leave it waiting
            for cid, other in list(self.conns.items()):
                if not other.closed and cid not in batch:
                    self._drop(cid, ErrorCode.REJECTED, "the server refused this client's message")
        sends: dict[asyncio.AbstractEventLoop, list[tuple[_Conn, bytes, bytes]]] = {}
        for cid, data in sorted(batch.items()):
            conn = self.conns.get(cid)
            if conn is None or conn.closed:
                continue
            rep = reply_type(m.peek_type(data))
            conn.expected = rep
            if rep is not None:
                self._waiting[cid] = rep
            conn.stats.message_bytes_out += len(data)
            sends.setdefault(conn.loop, []).append(
                (conn, frame_header(FrameKind.MESSAGE, len(data)), data)
            )
        self._set_deadline(gen, deadline)
        for loop, items in sends.items():  # one hand-over per I/O loop
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._start_writes, items)
        if not self._waiting:
            self._end(gen)
        return gen

    async def _cut(self, cid: int, code: ErrorCode | None, reason: str) -> None:
        self._drop(cid, code, reason)

    def _drop(self, cid: int, code: ErrorCode | None, reason: str) -> None:
        """Cut ``cid``: no longer waited for; its I/O loop sends ERROR ``code`` and closes."""
        conn = self.conns.get(cid)
        if cid in self._waiting:
            del self._waiting[cid]
            if not self._waiting:
                self._end(self._gen)
        if conn is None or conn.closed:
            return
        conn.closed = True
        self.cut.setdefault(cid, reason)
        self._slots.release(conn)
        with contextlib.suppress(RuntimeError):  # the I/O loop is closed: shutdown
            conn.loop.call_soon_threadsafe(self._close_conn, conn, code, reason)

    def _client_error(self, cid: int, code: int, reason: str) -> None:
        self.client_errors[cid] = f"ERROR {code}: {reason}"
        self._drop(cid, None, f"client sent ERROR {code}: {reason}")

    def _deliver(self, conn: _Conn, body: bytearray, expected: m.MessageType, large: bool) -> None:
        """A complete reply read on ``conn``'s I/O loop: hand it to the driver, unless the
        client was cut (deadline, shutdown) while it was being read."""
        if conn.closed or self._waiting.get(conn.cid) is not expected:
            if large:
                self._slots.release(conn)
            return
        conn.stats.message_bytes_in += len(body)
        del self._waiting[conn.cid]
        self._queue.put(("msg", conn, body, large))
        if not self._waiting:
            self._end(self._gen)

    async def _finish(self, status: DoneStatus, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.accepting = False
        if self._deadline is not None:
            self._deadline.cancel()
        frame = encode_done(status, reason)
        live = [c for c in self.conns.values() if not c.closed]
        done = []
        for c in live:
            with contextlib.suppress(RuntimeError):  # that I/O loop is closed
                done.append(
                    asyncio.wrap_future(
                        asyncio.run_coroutine_threadsafe(self._send_done(c, frame), c.loop)
                    )
                )
        if done:
            # each I/O loop writes DONE after what it was already given to send
            await asyncio.gather(*done, return_exceptions=True)
        for c in live:
            c.closed = True
        self._queue.put(_END)

    # -- I/O loops -------------------------------------------------------------------------

    def _start_writes(self, items: list[tuple[_Conn, bytes, bytes]]) -> None:
        for conn, head, data in items:
            conn.loop.create_task(self._write(conn, head, data))

    async def _write(self, conn: _Conn, head: bytes, data: bytes) -> None:
        if conn.closed:
            return
        try:
            conn.writer.write(head)
            conn.writer.write(data)
            conn.stats.frame_bytes_out += len(head) + len(data)
            await drain(conn.writer, self._srv.idle_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            self._ctl(self._drop, conn.cid, None, "the client does not read (send stalled)")
        except (ConnectionError, OSError) as exc:
            self._ctl(self._drop, conn.cid, None, f"connection lost: {exc}")

    def _close_conn(self, conn: _Conn, code: ErrorCode | None, reason: str) -> None:
        _update_tcp(conn)
        if code is not None:
            with contextlib.suppress(Exception):
                conn.writer.write(encode_error(code, reason))
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()
        conn.writer.close()

    async def _send_done(self, c: _Conn, frame: bytes) -> None:
        with contextlib.suppress(Exception):
            c.writer.write(frame)
            c.stats.frame_bytes_out += len(frame)
            await drain(c.writer, self._srv.idle_timeout)
        _update_tcp(c)
        if c.task is not None:
            c.task.cancel()
        c.writer.close()

    async def _serve(self, conn: _Conn) -> None:
        cid, writer = conn.cid, conn.writer
        writer.write(self._hello)
        conn.stats.frame_bytes_out += len(self._hello)
        try:
            await self._read_loop(conn)
        except asyncio.CancelledError:
            pass
        except TransportError as exc:
            if isinstance(exc, ConnectionLostError):
                self._ctl(self._drop, cid, exc.code, str(exc))  # ERROR 8 after a stall
            else:
                self._ctl(self._drop, cid, exc.code or ErrorCode.MALFORMED, str(exc))
        except (ConnectionError, OSError) as exc:
            self._ctl(self._drop, cid, None, f"connection lost: {exc}")
        finally:
            self._slots.release(conn)
            if not conn.closed:  # idempotent on the control loop
                self._ctl(self._drop, cid, None, "connection ended")
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def _read_loop(self, conn: _Conn) -> None:
        cfg = self.config
        idle = self._srv.idle_timeout
        while not conn.closed:
            kind, size = await read_header(conn.reader, self._max_frame, timeout=None)
            # the limit of what this client owes *now* (a request may have been sent
            # while the header was awaited)
            limit = server_frame_limit(cfg, conn.expected)
            if 1 + size > limit:
                raise TransportError(
                    f"frame of {1 + size} bytes over the limit of {limit}", ErrorCode.TOO_LARGE
                )
            conn.stats.frame_bytes_in += 5 + size
            if kind is FrameKind.ERROR:
                body = await read_body(conn.reader, size, idle_timeout=idle)
                try:
                    code, reason = decode_error(bytes(body))
                except DecodeError:
                    code, reason = 0, "malformed ERROR frame"
                self._ctl(self._client_error, conn.cid, code, reason)
                return
            if kind is not FrameKind.MESSAGE:
                raise TransportError(f"a client may not send {kind.name}", ErrorCode.MALFORMED)
            # conn.expected is set on the control loop before the request is written,
            # so a reply to that request always finds it here
            expected = conn.expected
            if expected is None or self._waiting.get(conn.cid) is not expected:
                raise TransportError("message the server did not ask for", ErrorCode.UNSOLICITED)
            large = size > LARGE_FRAME
            if large:
                await self._slots.acquire(conn)
            body = await read_body(conn.reader, size, idle_timeout=idle)
            try:
                got = m.peek_type(body)
            except DecodeError as exc:
                raise TransportError(str(exc), ErrorCode.MALFORMED) from None
            if got is not expected:
                raise TransportError(
                    f"expected {expected.name}, got {got.name}", ErrorCode.REJECTED
                )
            if self._waiting.get(conn.cid) is not expected:  # cut while reading
                return
            _update_tcp(conn)
            conn.expected = None
            self._ctl(self._deliver, conn, body, expected, large)
            del body  # this coroutine waits for the next frame: hold no reference


def monotonic_deadline(seconds: float | None) -> float | None:
    """``time.monotonic() + seconds`` (the clock of the server's event loop), or None."""
    return None if seconds is None else time.monotonic() + seconds
