"""Client pools: where the sans-IO client parties of a round live.

A pool hosts many clients (threads, processes, Ray actors, remote devices) and
moves bytes between them and the :class:`~secagg.runtime.driver.RoundDriver`:

* :meth:`ClientPool.start` creates each client inside its worker (from the
  picklable :class:`~secagg.runtime.parties.ClientFactory`) and yields its first
  wire messages;
* :meth:`ClientPool.exchange` delivers one encoded server message to each client
  of a batch and yields the replies **as they arrive**, so the server folds masked
  inputs into its running sum one at a time.

A client that does not answer before the deadline (a ``time.monotonic()`` value)
or whose worker died is simply not yielded: it is a dropout of that phase.  A
client that refuses or aborts is yielded with ``error`` set and no frames.

This module has the in-process and the multi-process pool; the Ray pool is in
:mod:`secagg.runtime.ray_pool`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from secagg.errors import LocalProtocolError, ParameterError, SecAggError
from secagg.runtime.parties import ClientFactory, ClientParty
from secagg.runtime.rss import status_kb

__all__ = ["ClientPool", "EngineError", "InProcessPool", "ProcessPool", "Reply", "remaining"]


class EngineError(SecAggError):
    """An engine cannot run the round: its cluster is unreachable, its workers
    did not start."""


class Reply(NamedTuple):
    """One client's answer to one step."""

    client: int
    frames: list[bytes]  #: encoded wire messages (may be memoryviews from a pipe)
    cpu_s: float = 0.0  #: the client's CPU time for the step (thread time in its worker)
    error: str | None = None  #: ``"ErrorType: reason"`` when the client refused / aborted


@runtime_checkable
class ClientPool(Protocol):
    """Hosts many sans-IO client parties somewhere."""

    engine: str  #: "inprocess" | "processes" | "ray" | "net" | "flower"
    workers: int

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        """Create each client and yield its first wire messages as they arrive."""
        ...

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None
                 ) -> Iterator[Reply]:
        """Deliver ``batch[u]`` to each client ``u``; yield replies as they arrive.
        Clients that miss ``deadline`` or whose worker died are not yielded.

        A pool whose class sets ``exchange_in_chunks = True`` may be called several
        times per phase, each with a part of the phase's clients (the driver then
        holds O(workers) encoded messages); without it, once per phase."""
        ...

    def close(self) -> None: ...


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (``None``: no deadline), never negative."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _step(party: ClientParty | None, client: int, data: bytes | None,
          make: Callable[[int], ClientParty] | None) -> tuple[ClientParty | None, Reply]:
    """Run one client step, timing it; protocol errors become ``Reply.error``."""
    t0 = time.thread_time()
    try:
        if data is None:
            assert make is not None
            party = make(client)
            frames = party.start()
        else:
            if party is None:
                raise LocalProtocolError(f"client {client} was never started on this pool")
            frames = party.receive(data)
        err = None
    except SecAggError as exc:
        frames, err = [], f"{type(exc).__name__}: {exc}"
    return party, Reply(client, frames, time.thread_time() - t0, err)


class InProcessPool:
    """Clients in this process; steps may run on a thread pool (masking and
    AES-CTR release the GIL).  A deadline is checked before each client step.

    Parameters
    ----------
    factory:
        Creates the clients.
    workers:
        Threads for client steps (1: run them in the caller's thread).
    """

    engine = "inprocess"
    #: several exchange() calls per phase are fine (see RoundDriver: lazy encoding)
    exchange_in_chunks = True

    def __init__(self, factory: ClientFactory, *, workers: int = 1) -> None:
        if workers < 1:
            raise ParameterError("workers must be >= 1")
        self.workers = workers
        self._factory = factory
        self._parties: dict[int, ClientParty] = {}
        self._executor: Executor | None = (
            ThreadPoolExecutor(max_workers=workers) if workers > 1 else None)

    @property
    def parties(self) -> Mapping[int, ClientParty]:
        return self._parties

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        return self._run([(u, None) for u in clients], deadline)

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None
                 ) -> Iterator[Reply]:
        return self._run(list(batch.items()), deadline)

    def _run(self, items: list[tuple[int, bytes | None]], deadline: float | None
             ) -> Iterator[Reply]:
        def one(item: tuple[int, bytes | None]) -> Reply | None:
            u, data = item
            if deadline is not None and time.monotonic() >= deadline:
                return None  # missed the deadline: a dropout of this phase
            party, reply = _step(self._parties.get(u), u, data, self._factory.make)
            if party is not None:
                self._parties[u] = party
            return reply

        if self._executor is None:
            for it in items:
                r = one(it)
                if r is not None:
                    yield r
            return
        window = 2 * self.workers
        pending: list[Any] = []
        for it in items:
            pending.append(self._executor.submit(one, it))
            if len(pending) >= window:
                r = pending.pop(0).result()
                if r is not None:
                    yield r
        for f in pending:
            r = f.result()
            if r is not None:
                yield r

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


# -- multi-process pool ----------------------------------------------------------------

_BATCH = 16  #: requests per pipe message to a worker


def _write_frame(conn: Connection, payload: bytes) -> None:
    """``u64`` length, then the payload, written straight to the pipe."""
    fd = conn.fileno()
    view = memoryview(len(payload).to_bytes(8, "big") + payload)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(conn: Connection) -> bytearray:
    """One frame read into a single buffer of its exact size (``recv_bytes`` would
    hold a large masked vector twice)."""
    fd = conn.fileno()

    def fill(buf: bytearray) -> None:
        view = memoryview(buf)
        got = 0
        while got < len(buf):
            k = os.readv(fd, [view[got:]])
            if k == 0:
                raise EOFError("worker pipe closed")
            got += k

    head = bytearray(8)
    fill(head)
    body = bytearray(int.from_bytes(head, "big"))
    fill(body)
    return body


def _pack(epoch: int, r: Reply) -> bytes:
    """Reply framing (worker -> driver); the large masked vectors are not pickled."""
    e = (r.error or "").encode("utf-8")
    head = [epoch.to_bytes(4, "big"), r.client.to_bytes(4, "big"),
            np.float64(r.cpu_s).tobytes(), len(e).to_bytes(4, "big"), e,
            len(r.frames).to_bytes(4, "big")]
    head += [len(b).to_bytes(8, "big") for b in r.frames]
    return b"".join(head + [bytes(b) for b in r.frames])


def _unpack(data: bytearray) -> tuple[int, Reply]:
    mv = memoryview(data)
    epoch = int.from_bytes(mv[0:4], "big")
    u = int.from_bytes(mv[4:8], "big")
    cpu = float(np.frombuffer(mv[8:16], dtype=np.float64)[0])
    el = int.from_bytes(mv[16:20], "big")
    err = bytes(mv[20:20 + el]).decode("utf-8") if el else None
    p = 20 + el
    cnt = int.from_bytes(mv[p:p + 4], "big")
    p += 4
    lens = [int.from_bytes(mv[p + 8 * i:p + 8 * i + 8], "big") for i in range(cnt)]
    p += 8 * cnt
    frames: list[Any] = []
    for ln in lens:
        frames.append(mv[p:p + ln])
        p += ln
    return epoch, Reply(u, frames, cpu, err)


_STOP = 0
_START = 1
_DELIVER = 2


def _worker(conn_in: Connection, conn_out: Connection, factory: ClientFactory) -> None:
    """Worker process: owns some clients, answers ``(epoch, kind, id, bytes)`` in order."""
    parties: dict[int, ClientParty] = {}
    while True:
        try:
            batch = conn_in.recv()
        except EOFError:
            break
        if batch is None:
            break
        for epoch, kind, u, data in batch:
            try:
                party, reply = _step(parties.get(u), u, data if kind == _DELIVER else None,
                                     factory.make)
            except Exception as exc:
                party, reply = parties.get(u), Reply(u, [], 0.0, f"{type(exc).__name__}: {exc}")
            if party is not None:
                parties[u] = party
            _write_frame(conn_out, _pack(epoch, reply))
    with contextlib.suppress(OSError):
        _write_frame(conn_out, _pack(0, Reply(0, [], float(status_kb("VmHWM")), "peak")))
    conn_out.close()


class ProcessPool:
    """``workers`` forked processes, each owning the clients ``ids[w::workers]``.

    The factory (config, inputs) is inherited by fork — large input arrays are
    shared copy-on-write, never pickled.  Replies cross the pipe as length-prefixed
    frames.  A worker that dies (killed, crashed) takes its clients with it: they
    are dropouts from then on.  Replies that arrive after their step's deadline are
    discarded (each step has an epoch number).

    Linux/macOS only (``fork``).

    Raises
    ------
    ParameterError
        If ``workers < 1``.
    """

    engine = "processes"
    exchange_in_chunks = True  #: several exchange() calls per phase are fine

    def __init__(self, factory: ClientFactory, *, workers: int = 2) -> None:
        if workers < 1:
            raise ParameterError("workers must be >= 1")
        if "fork" not in mp.get_all_start_methods():
            raise ParameterError("the processes engine needs the 'fork' start method")
        self.workers = workers
        ctx = mp.get_context("fork")
        self.procs: list[Any] = []
        self._to: list[Connection] = []
        self._from: list[Connection] = []
        self._owner: dict[int, int] = {}
        self._dead: set[int] = set()
        self._epoch = 0
        self._lock = threading.Lock()
        self._send_locks = [threading.Lock() for _ in range(workers)]
        self.peak_rss_kb: list[int] = []
        for _ in range(workers):
            a_in, b_in = ctx.Pipe(duplex=False)
            a_out, b_out = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(a_in, b_out, factory), daemon=True)
            p.start()
            a_in.close()
            b_out.close()
            self.procs.append(p)
            self._to.append(b_in)
            self._from.append(a_out)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def owner(self, client: int) -> int:
        """The worker index hosting ``client`` (once started)."""
        return self._owner[client]

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        for i, u in enumerate(clients):
            self._owner.setdefault(u, i % self.workers)
        return self._run([(u, None) for u in clients], _START, deadline)

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None
                 ) -> Iterator[Reply]:
        return self._run([(u, d) for u, d in batch.items() if u in self._owner], _DELIVER,
                         deadline)

    def _run(self, items: list[tuple[int, bytes | None]], kind: int, deadline: float | None
             ) -> Iterator[Reply]:
        self._epoch += 1
        epoch = self._epoch
        per: list[list[tuple[int, int, int, bytes | None]]] = [[] for _ in self._to]
        for u, data in items:
            w = self._owner[u]
            if w not in self._dead:
                per[w].append((epoch, kind, u, data))
        left = [len(p) for p in per]

        def feed(w: int) -> None:  # one thread per worker: a full pipe blocks the sender
            lst = per[w]
            try:
                for a in range(0, len(lst), _BATCH):
                    with self._send_locks[w]:  # a late feeder of an earlier step may still run
                        self._to[w].send(lst[a:a + _BATCH])
                    lst[a:a + _BATCH] = [None] * len(lst[a:a + _BATCH])  # type: ignore[list-item]
            except OSError:
                self._mark_dead(w)

        feeders = [threading.Thread(target=feed, args=(w,), daemon=True)
                   for w in range(self.workers) if per[w]]
        for f in feeders:
            f.start()
        conns = {c: w for w, c in enumerate(self._from)}
        while True:
            live = [c for c, w in conns.items() if left[w] and w not in self._dead]
            if not live:
                break
            timeout = remaining(deadline)
            if timeout == 0.0:
                break
            ready = wait(live, timeout=timeout)
            if not ready:
                break  # deadline passed: whoever has not answered is a dropout
            for c in ready:
                w = conns[c]  # type: ignore[index]
                try:
                    ep, reply = _unpack(_read_frame(c))  # type: ignore[arg-type]
                except (EOFError, OSError):
                    self._mark_dead(w)
                    continue
                if ep != epoch:
                    continue  # a late reply to an earlier step: discarded
                left[w] -= 1
                yield reply
        for f in feeders:
            f.join(timeout=0 if deadline is not None else None)

    def _mark_dead(self, w: int) -> None:
        with self._lock:
            self._dead.add(w)

    @property
    def dead_workers(self) -> frozenset[int]:
        return frozenset(self._dead)

    def close(self) -> None:
        for w, c in enumerate(self._to):
            if w in self._dead:
                continue
            try:
                c.send(None)
                while True:  # drain late replies up to the worker's goodbye
                    if not wait([self._from[w]], timeout=5.0):
                        raise OSError("worker does not answer")  # stopped or hung: killed below
                    _, r = _unpack(_read_frame(self._from[w]))
                    if r.client == 0 and r.error == "peak":
                        self.peak_rss_kb.append(int(r.cpu_s))
                        break
            except (EOFError, OSError):
                self._dead.add(w)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for c in self._to + self._from:
            c.close()
