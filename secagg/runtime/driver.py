"""The ONE server loop of every engine: :class:`RoundDriver`.

The driver owns the server party and moves bytes between it and a
:class:`~secagg.runtime.pool.ClientPool`:

* it starts the clients, delivers each batch of server messages, and feeds every
  reply to the server **as it arrives** (the server keeps a running sum: O(m));
* it gives each phase a deadline (``phase_timeout``); a phase whose clients have
  not all answered by then is closed with ``deadline_passed()`` — missing replies
  are dropouts, data, never exceptions;
* fault injection: :class:`Hooks` make scheduled clients stop replying before a
  phase and may rewrite or drop any frame in flight (attacks are built on them in
  :mod:`secagg.sim`); a :class:`Listener` sees every phase and reply (metrics, or a
  test that kills a worker mid-round);
* the transcript digest: SHA-256 over every wire frame in a canonical order (each
  frame hashed with its direction and client id, the hashes sorted), so the same
  seed gives the same digest on every engine whatever the arrival order.

The driver never parses a message body: it sees bytes, client ids and the phase
the server says it is collecting (``server.collecting``, a :class:`~secagg.phase.Phase`).
Server parties are adapted to one small interface, :class:`ServerParty`
(:class:`MaskingServerParty` for SecAgg / SecAgg+, :class:`LightSecAggServerParty`
for LightSecAgg, :class:`HEServerParty` for HE).

Memory: a server party returns its outgoing messages *unencoded* (a broadcast
shares one key entry object among all the messages that list it; a forwarded box
is the bytes the server already holds).  The driver encodes them lazily, one
chunk of about :data:`CHUNK_PER_WORKER` messages per pool worker at a time, and
hands each chunk to the pool as it goes — so it holds O(workers) encoded
messages, never one phase's encoded messages for every client.  The frames, and
so the transcript digest, are the same bytes whatever the chunking.  Only pools
that say ``exchange_in_chunks = True`` (in-process, processes, Ray) get several
:meth:`~secagg.runtime.pool.ClientPool.exchange` calls per phase; any other pool
(the network pool, which treats a batch as the phase's whole set of continuing
clients) gets one call per phase, still encoded lazily up to that call.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from secagg.errors import (
    AbortedError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RejectedUploadError,
    RemoteProtocolError,
    SecAggError,
)
from secagg.lightsecagg import messages as lm
from secagg.lightsecagg.config import LightSecAggConfig
from secagg.lightsecagg.server import Server as LightServer
from secagg.masking import messages as m
from secagg.masking.config import RoundConfig
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.runtime.pool import ClientPool, Reply

__all__ = [
    "CHUNK_PER_WORKER",
    "HEServerParty",
    "Hooks",
    "LightSecAggServerParty",
    "Listener",
    "MaskingServerParty",
    "PhaseStats",
    "RoundDriver",
    "RoundOutcome",
    "ServerParty",
]

Outgoing = list[tuple[int, Any]]  #: (client, message the party's :meth:`encode` turns into bytes)
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]

#: Encoded server messages handed to the pool per worker at a time (the driver
#: holds at most ``CHUNK_PER_WORKER * pool.workers`` of them, plus what the pool
#: still has in flight).
CHUNK_PER_WORKER = 64


class ServerParty(Protocol):
    """What the driver needs from a server state machine."""

    @property
    def collecting(self) -> Phase | None:
        """The phase whose client messages it waits for (``None``: none)."""
        ...

    @property
    def finalizing(self) -> bool:
        """All client input is in; :meth:`finalize` computes the result."""
        ...

    @property
    def aborted(self) -> bool: ...

    @property
    def abort_reason(self) -> str | None: ...

    @property
    def survivors(self) -> tuple[int, ...]:
        """The clients whose input is in the result (sorted)."""
        ...

    @property
    def result(self) -> Any: ...

    def receive(self, sender: int, data: bytes | memoryview) -> Outgoing:
        """Handle one frame from ``sender``; raise a SecAggError (and change
        nothing) to reject it.  Returns ``(client, message)`` pairs, unencoded."""
        ...

    def deadline_passed(self) -> Outgoing: ...

    def encode(self, message: Any) -> bytes:
        """The wire frame of one outgoing message (called lazily by the driver)."""
        ...

    def finalize(self, map_fn: MapFn) -> list[tuple[str, int, bytes]]:
        """Compute the result; return frames it sent to other parties (digest)."""
        ...

    def sets(self) -> Mapping[str, tuple[int, ...]]: ...


class _DelegatingParty:
    """What the masking and LightSecAgg servers share behind :class:`ServerParty`:
    a sans-IO server with ``phase``, ``aborted``, ``survivors``, ``result``,
    ``running_sum_bytes``, ``receive``, ``deadline_passed`` and ``finalize``.
    Subclasses name the server's codec and its sets."""

    server: Any

    @property
    def collecting(self) -> Phase | None:
        collecting: Phase | None = self.server.collecting
        return collecting

    @property
    def finalizing(self) -> bool:
        return bool(self.server.phase is Phase.FINALIZING)

    @property
    def aborted(self) -> bool:
        return bool(self.server.aborted)

    @property
    def abort_reason(self) -> str | None:
        reason: str | None = self.server.abort_reason
        return reason

    @property
    def survivors(self) -> tuple[int, ...]:
        return tuple(self.server.survivors)

    @property
    def result(self) -> Any:
        return self.server.result

    @property
    def running_sum_bytes(self) -> int:
        return int(self.server.running_sum_bytes)

    def receive(self, sender: int, data: bytes | memoryview) -> Outgoing:
        return list(self.server.receive(sender, data))

    def deadline_passed(self) -> Outgoing:
        return list(self.server.deadline_passed())

    def finalize(self, map_fn: MapFn) -> list[tuple[str, int, bytes]]:
        self.server.finalize(map_fn)
        return []


class MaskingServerParty(_DelegatingParty):
    """:class:`~secagg.masking.server.Server` behind :class:`ServerParty`."""

    def __init__(self, config: RoundConfig) -> None:
        self.server = Server(config=config)

    def encode(self, message: Any) -> bytes:
        return m.encode(message)

    def sets(self) -> Mapping[str, tuple[int, ...]]:
        sets: Mapping[str, tuple[int, ...]] = self.server.sets
        return sets


class LightSecAggServerParty(_DelegatingParty):
    """:class:`~secagg.lightsecagg.server.Server` behind :class:`ServerParty`
    (phases: keys, coded shares, masked inputs, aggregate-mask responses)."""

    def __init__(self, config: LightSecAggConfig) -> None:
        self.server = LightServer(config=config)

    def encode(self, message: Any) -> bytes:
        return lm.encode(message)

    def sets(self) -> Mapping[str, tuple[int, ...]]:
        sets: Mapping[str, tuple[int, ...]] = self.server.sets()
        return sets


class HEServerParty:
    """The HE aggregation server and the key holder (who decrypts only the
    aggregate) behind :class:`ServerParty`.  The upload is the one client phase
    (:attr:`Phase.MASKED_INPUT`).

    Parameters
    ----------
    server:
        An :class:`~secagg.he.server.HEServer` (public context only).
    decryptor:
        The key holder's :class:`~secagg.he.decryptor.HEDecryptor`.
    to:
        Direction label of the aggregate frames in the transcript
        (``"to_decryptor"`` or ``"to_client"`` under shared-client-key custody).
    """

    def __init__(self, server: Any, decryptor: Any, *, to: str = "to_decryptor") -> None:
        self.server = server
        self.decryptor = decryptor
        self._to = to
        self._closed = False
        self._aggregate: Any = None
        self._abort: str | None = None
        self._rejected: dict[int, str] = {}

    @property
    def collecting(self) -> Phase | None:
        collecting: Phase | None = self.server.collecting
        return None if self._closed else collecting

    @property
    def rejected(self) -> Mapping[int, str]:
        """Clients whose authenticated upload the server rejected
        (:class:`~secagg.errors.RejectedUploadError`), with why: each is a dropout of
        this round, blamed on it alone."""
        return dict(self._rejected)

    @property
    def finalizing(self) -> bool:
        return self._closed and self._aggregate is None and self._abort is None

    @property
    def aborted(self) -> bool:
        return self._abort is not None

    @property
    def abort_reason(self) -> str | None:
        return self._abort

    @property
    def survivors(self) -> tuple[int, ...]:
        if self._aggregate is not None:
            return tuple(self._aggregate.contributors)
        return tuple(self.server.contributors)

    @property
    def result(self) -> Any:
        return self._aggregate

    @property
    def running_sum_bytes(self) -> int:
        return 0

    def receive(self, sender: int, data: bytes | memoryview) -> Outgoing:
        from secagg.he.envelope import decode_envelope

        raw = bytes(data)
        if decode_envelope(raw).sender != sender:
            raise DecodeError("envelope sender does not match the transport sender")
        if sender in self._rejected:
            # a dropout since its rejected upload: none of its later chunks is taken
            raise RemoteProtocolError(f"client {sender} dropped: an upload was rejected")
        try:
            self.server.receive(raw)
        except RejectedUploadError as exc:
            # signed by ``sender`` (checked above and by the server): blame it alone,
            # treat it as a dropout; the server's state is unchanged and the round goes on
            self._rejected[exc.sender] = str(exc)
            raise
        return []

    def deadline_passed(self) -> Outgoing:
        if self._closed:
            raise LocalProtocolError("the upload phase is already closed")
        self._closed = True
        return []

    def encode(self, message: Any) -> bytes:  # pragma: no cover - it sends nothing
        raise LocalProtocolError("the HE server sends no client messages")

    def finalize(self, map_fn: MapFn) -> list[tuple[str, int, bytes]]:
        try:
            aggregate = self.server.finalize()
        except AbortedError as exc:
            self._abort = str(exc)
            return []
        frames = []
        for envelope in aggregate:
            a = envelope.to_bytes()
            frames.append((self._to, 0, a))
            self.decryptor.receive(a)
        self._aggregate = self.decryptor.result()
        return frames

    def sets(self) -> Mapping[str, tuple[int, ...]]:
        return {"contributors": tuple(self.server.contributors)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """Fault injection.

    Attributes
    ----------
    drop_before:
        Client -> the phase before which it stops replying (it never receives a
        message of that phase or a later one; a client dropped before the first
        phase is never started).
    to_client:
        ``(client, phase, frame) -> frame | None``: rewrite or drop (``None``)
        what the server sends (``phase`` is ``None`` for abort notices).
    to_server:
        ``(client, phase, frame) -> frame | None``: rewrite or drop a client's frame.
    """

    drop_before: Mapping[int, Phase] = field(default_factory=dict)
    to_client: Callable[[int, Phase | None, bytes], bytes | None] | None = None
    to_server: Callable[[int, Phase, bytes], bytes | None] | None = None


class Listener:
    """Metrics / fault-injection callbacks (override what you need)."""

    def on_phase_start(self, phase: Phase | None, clients: int) -> None:
        """Before a phase's messages go out (``phase`` None: abort notices)."""

    def on_reply(self, phase: Phase | None, reply: Reply) -> None:
        """After a client's reply of ``phase`` was handled."""

    def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
        """Every wire frame (``"to_server"`` / ``"to_client"`` / ``"to_decryptor"``)."""

    def on_phase_end(self, stats: PhaseStats) -> None:
        """After a phase was closed."""


@dataclass(slots=True)
class PhaseStats:
    """What one phase cost."""

    phase: Phase
    asked: int = 0  #: clients the phase's messages were delivered to
    answered: int = 0  #: clients that replied (with frames or an error)
    errors: int = 0
    closed_by_deadline: bool = False
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0  #: summed over the clients that answered
    client_steps: int = 0
    bytes_to_server: int = 0
    bytes_to_clients: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "asked": self.asked, "answered": self.answered, "errors": self.errors,
            "closed_by_deadline": self.closed_by_deadline, "wall_s": self.wall_s,
            "server_cpu_s": self.server_cpu_s, "client_cpu_s": self.client_cpu_s,
            "client_steps": self.client_steps, "bytes_to_server": self.bytes_to_server,
            "bytes_to_clients": self.bytes_to_clients,
        }


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class RoundOutcome:
    """What :meth:`RoundDriver.run` returns."""

    engine: str
    workers: int
    result: Any  #: masking: the uint array ``Σ_{u∈U3} x_u mod 2^b``; HE: the aggregate
    survivors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    sets: Mapping[str, tuple[int, ...]]
    transcript_digest: str
    phases: Mapping[Phase, PhaseStats]
    client_errors: Mapping[int, str]
    server_rejections: Mapping[int, str]
    bytes_to_server: int
    bytes_to_clients: int
    bytes_up_by_client: Mapping[int, int]
    server_peak_mb: float | None  #: tracemalloc peak of the O(m) steps (``measure_memory``)
    finalize_cpu_s: float
    finalize_wall_s: float
    wall_s: float


class RoundDriver:
    """Runs one round of ``server`` with the clients of ``pool``.

    Parameters
    ----------
    server:
        A :class:`ServerParty` (:class:`MaskingServerParty`, :class:`HEServerParty`).
    pool:
        Where the clients live.
    clients:
        The registered clients (ids), in the order they are started.
    phase_timeout:
        Seconds each phase waits for replies (``None``: until every delivered
        client answered or its worker died).
    hooks, listener:
        Fault injection and metrics.
    unmask_threads:
        Threads for the server's final unmasking (the injected ``map``).
    digest:
        Compute the transcript digest (SHA-256 of every frame: about 1 s per
        2 GB of traffic; off for benchmarks that do not need it).
    measure_memory:
        Trace the server's allocations (:mod:`tracemalloc`) while it collects
        masked inputs and while it finalizes — where its O(m) arrays live; the
        key/share steps hold O(n k) small objects and are not traced (tracing
        triples their CPU time).

    Raises
    ------
    ParameterError
        On bad arguments.
    """

    def __init__(
        self,
        server: ServerParty,
        pool: ClientPool,
        *,
        clients: Sequence[int],
        phase_timeout: float | None = None,
        hooks: Hooks | None = None,
        listener: Listener | None = None,
        unmask_threads: int = 1,
        measure_memory: bool = False,
        digest: bool = True,
    ) -> None:
        if phase_timeout is not None and not phase_timeout > 0:
            raise ParameterError("phase_timeout must be > 0 seconds (or None)")
        if unmask_threads < 1:
            raise ParameterError("unmask_threads must be >= 1")
        self.server = server
        self.pool = pool
        self.clients = tuple(clients)
        self.phase_timeout = phase_timeout
        self.hooks = hooks or Hooks()
        self.listener = listener or Listener()
        self.unmask_threads = unmask_threads
        self.measure_memory = measure_memory
        self.digest = digest
        unknown = set(self.hooks.drop_before) - set(self.clients)
        if unknown:
            raise ParameterError(f"dropout of unknown clients {sorted(unknown)[:5]}")
        self._hashes: list[bytes] = []
        self._stats: dict[Phase, PhaseStats] = {}
        self._errors: dict[int, str] = {}
        self._rejections: dict[int, str] = {}
        self._gone: set[int] = set()
        self._up_by_client: dict[int, int] = {}
        self._peak = 0
        self._ran = False

    # -- helpers -----------------------------------------------------------------------

    def _note(self, direction: str, client: int, data: bytes | memoryview) -> None:
        if self.digest:
            h = hashlib.sha256(direction.encode("ascii"))
            h.update(client.to_bytes(8, "big"))
            h.update(data)
            self._hashes.append(h.digest())
        self.listener.on_frame(direction, client, data)

    def _drops(self, client: int, phase: Phase) -> bool:
        p = self.hooks.drop_before.get(client)
        return p is not None and p.order <= phase.order

    def _server_call(self, stats: PhaseStats | None, fn: Callable[[], Outgoing],
                     *, traced: bool = False, extra: int = 0) -> Outgoing:
        traced = traced and self.measure_memory
        base = getattr(self.server, "running_sum_bytes", 0) + extra
        if traced:
            tracemalloc.start()
        t0 = time.thread_time()
        try:
            return fn()
        finally:
            if stats is not None:
                stats.server_cpu_s += time.thread_time() - t0
            if traced:
                self._peak = max(self._peak, tracemalloc.get_traced_memory()[1] + base)
                tracemalloc.stop()

    def _deadline(self) -> float | None:
        return None if self.phase_timeout is None else time.monotonic() + self.phase_timeout

    def _phase(self, phase: Phase | None, asked: int,
               call: Callable[[float | None, PhaseStats], Iterator[Reply]]) -> Outgoing:
        stats = PhaseStats(phase=phase or Phase.UNMASKING)
        if phase is not None:
            old = self._stats.get(phase)
            if old is not None:  # pragma: no cover - a server never repeats a phase
                raise LocalProtocolError(f"phase {phase.value} ran twice")
            self._stats[phase] = stats
        self.listener.on_phase_start(phase, asked)
        wall0 = time.perf_counter()
        out: Outgoing = []
        traced = phase is Phase.MASKED_INPUT
        for reply in call(self._deadline(), stats):
            u = reply.client
            stats.answered += 1
            stats.client_cpu_s += reply.cpu_s
            stats.client_steps += 1
            if reply.error is not None:
                stats.errors += 1
                self._errors[u] = reply.error
            frames = reply.frames
            while frames:  # pop: no reference to a received vector outlives its step
                data: bytes | memoryview | None = frames.pop(0)
                if phase is None:
                    continue  # nothing is expected after an abort notice
                if self.hooks.to_server is not None:
                    data = self.hooks.to_server(u, phase, bytes(data))  # type: ignore[arg-type]
                    if data is None:
                        continue
                assert data is not None
                stats.bytes_to_server += len(data)
                self._up_by_client[u] = self._up_by_client.get(u, 0) + len(data)
                self._note("to_server", u, data)
                try:
                    out += self._server_call(stats, partial(self.server.receive, u, data),
                                             traced=traced, extra=len(data))
                except SecAggError as exc:
                    self._rejections[u] = f"{type(exc).__name__}: {exc}"
                del data
            self.listener.on_reply(phase, reply)
        if phase is not None and self.server.collecting is phase:
            stats.closed_by_deadline = True
            out += self._server_call(stats, self.server.deadline_passed)
        stats.wall_s = time.perf_counter() - wall0
        self.listener.on_phase_end(stats)
        return out

    def _start(self, starters: Sequence[int], deadline: float | None,
               stats: PhaseStats) -> Iterator[Reply]:
        stats.asked = len(starters)
        return self.pool.start(starters, deadline=deadline)

    def _live(self, phase: Phase | None, out: Outgoing) -> int:
        """Clients of ``out`` that are still there (before any ``to_client`` hook);
        a server that sends one client two messages in one step is a local bug."""
        seen: set[int] = set()
        for u, _ in out:
            if u in self._gone or (phase is not None and self._drops(u, phase)):
                continue
            if u in seen:
                raise LocalProtocolError(f"two messages to client {u} in one step")
            seen.add(u)
        return len(seen)

    def _deliver(self, phase: Phase | None, out: Outgoing, deadline: float | None,
                 stats: PhaseStats) -> Iterator[Reply]:
        """Encode ``out`` lazily, a chunk at a time, and exchange each chunk with the
        pool; every frame is noted (digest, listener), also those to gone clients.
        Each message is released from ``out`` once encoded."""
        hook = self.hooks.to_client
        chunked = getattr(self.pool, "exchange_in_chunks", False) is True
        size = CHUNK_PER_WORKER * max(1, self.pool.workers) if chunked else len(out)
        i = 0
        while i < len(out):
            batch: dict[int, bytes] = {}
            while i < len(out) and len(batch) < size:
                u, msg = out[i]
                out[i] = (u, None)
                i += 1
                t0 = time.thread_time()
                data0 = self.server.encode(msg)
                stats.server_cpu_s += time.thread_time() - t0
                del msg
                data = data0 if hook is None else hook(u, phase, data0)
                del data0
                if data is None:
                    continue
                stats.bytes_to_clients += len(data)
                self._note("to_client", u, data)
                if u in self._gone or (phase is not None and self._drops(u, phase)):
                    self._gone.add(u)  # sent, but the client is gone: it never sees it
                    continue
                batch[u] = data
            stats.asked += len(batch)
            if batch and (deadline is None or time.monotonic() < deadline):
                yield from self.pool.exchange(batch, deadline=deadline)
            del batch

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> RoundOutcome:
        """Run the round to completion or abort.

        Raises
        ------
        LocalProtocolError
            If called twice, or the server misbehaves locally.
        """
        if self._ran:
            raise LocalProtocolError("a RoundDriver runs one round")
        self._ran = True
        wall0 = time.perf_counter()
        first = self.server.collecting
        if first is None:
            raise LocalProtocolError("the server is not collecting anything")
        starters = [u for u in self.clients if not self._drops(u, first)]
        self._gone.update(u for u in self.clients if self._drops(u, first))
        out = self._phase(first, len(starters), partial(self._start, starters))
        for _ in range(16):
            phase = self.server.collecting
            if not out:
                if phase is None:
                    break
                # nobody to ask: the phase closes empty (the server decides what that means)
                out = self._server_call(None, self.server.deadline_passed)
                continue
            pending, out = out, []
            out = self._phase(phase, self._live(phase, pending),
                              partial(self._deliver, phase, pending))
            del pending
            if phase is None:
                break
        else:  # pragma: no cover - defensive
            raise LocalProtocolError("the round did not terminate")
        fin_cpu = 0.0
        fin_wall = 0.0
        if self.server.finalizing:
            fin_wall0 = time.perf_counter()
            frames, fin_cpu = self._finalize()
            fin_wall = time.perf_counter() - fin_wall0
            for direction, u, data in frames:
                self._note(direction, u, data)
        digest = (hashlib.sha256(b"".join(sorted(self._hashes))).hexdigest() if self.digest
                  else "")
        return RoundOutcome(
            engine=self.pool.engine,
            workers=self.pool.workers,
            result=self.server.result,
            survivors=self.server.survivors if not self.server.aborted else (),
            aborted=self.server.aborted,
            abort_reason=self.server.abort_reason,
            sets=self.server.sets(),
            transcript_digest=digest,
            phases=dict(self._stats),
            client_errors=dict(self._errors),
            server_rejections=dict(self._rejections),
            bytes_to_server=sum(s.bytes_to_server for s in self._stats.values()),
            bytes_to_clients=sum(s.bytes_to_clients for s in self._stats.values()),
            bytes_up_by_client=dict(self._up_by_client),
            server_peak_mb=self._peak / 2**20 if self.measure_memory else None,
            finalize_cpu_s=fin_cpu,
            finalize_wall_s=fin_wall,
            wall_s=time.perf_counter() - wall0,
        )

    def _finalize(self) -> tuple[list[tuple[str, int, bytes]], float]:
        cpu: list[float] = []

        def timed(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def run(r: Any) -> Any:
                t0 = time.thread_time()
                try:
                    return fn(r)
                finally:
                    cpu.append(time.thread_time() - t0)
            return run

        t0 = time.thread_time()
        if self.unmask_threads > 1:
            with ThreadPoolExecutor(max_workers=self.unmask_threads) as ex:
                def map_fn(fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterable[Any]:
                    return ex.map(timed(fn), items)

                frames = self._finalize_traced(map_fn)
            own = time.thread_time() - t0
        else:
            frames = self._finalize_traced(map)
            own = time.thread_time() - t0
            cpu = []
        return frames, own + sum(cpu)

    def _finalize_traced(self, map_fn: MapFn) -> list[tuple[str, int, bytes]]:
        box: list[list[tuple[str, int, bytes]]] = []

        def go() -> Outgoing:
            box.append(self.server.finalize(map_fn))
            return []

        self._server_call(None, go, traced=True)
        return box[0]
