"""``secagg simulate --engine net``: one round over loopback TLS with real client processes.

The server (:class:`~secagg.net.server.NetServer` and the round loop) runs in
this process; the clients run in separate processes started from a
``forkserver``: every client that is to crash gets a process of its own and
kills itself with ``SIGKILL`` at its crash point (a random point of a random
phase: after connecting, after HELLO, after advertising keys, on receiving the
keys, on receiving its share boxes, after any chunk of its masked upload, after
the upload, on receiving the consistency or unmasking request, after answering
it); the other clients share ``client_procs`` processes, each running its
clients on one event loop.  Certificates come from a fresh development CA.
The processes start, and build their clients' TLS contexts and inputs, before
the round's clock starts (a device is up before a round); they connect once the
round accepts connections.  With ``crash_group > 1`` crashing clients that share a
crash point share a process, up to ``crash_group`` of them: the process kills itself
when the first of them reaches the point, so the others die at that moment (at the
same point or earlier in the same phase; for "boxes", after key sharing all the same:
the server routes the share boxes only once every live client's shares are in).
``round_wall_s`` is the round alone, ``client_processes_start_s`` the start-up
before it.

Inputs follow ``secagg simulate``'s recipe (``rng.child("input/<id>")``), so the
expected sum over the survivors is recomputed here and compared exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import multiprocessing
import os
import queue
import resource
import signal
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from secagg.errors import InsecureConfigurationWarning, ParameterError, SecAggError
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.rand import (
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    randbelow,
)

__all__ = ["CRASH_POINTS", "ClientSpec", "issue_certs", "simulate_net"]

#: Crash points before/after the upload; "upload:<i>" (after chunk i) is added per round.
CRASH_POINTS = (
    "connected",
    "hello",
    "advertised",
    "keys",
    "boxes",
    "uploaded",
    "unmasking",
    "answered",
)
_MALICIOUS_POINTS = ("consistency",)
#: SecAgg+ only: the SeedRequest arrived (the client has not revealed its seed part).
_SECAGG_PLUS_POINTS = ("seed",)


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """Everything a client process needs (picklable; keys are created inside it)."""

    client_id: int
    input_seed: bytes
    bits: int
    length: int
    rng_seed: bytes | None  #: deterministic client randomness (INSECURE; simulations only)
    identity_private: bytes | None
    crash_at: str | None
    stream_chunk: int


def _quiet_rng(seed: bytes) -> InsecureDeterministicRandom:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        return InsecureDeterministicRandom(seed)


def make_input(seed: bytes, client_id: int, bits: int, length: int) -> UIntArray:
    """The simulation input of ``client_id`` (uniform in Z_{2^bits})."""
    dt = dtype_for_bits(bits)
    width = np.dtype(dt).itemsize
    raw = _quiet_rng(seed).child(f"input/{client_id}").random_bytes(width * length)
    x: UIntArray = np.frombuffer(raw, dtype=dt).copy()
    if bits < 8 * width:
        np.bitwise_and(x, dt((1 << bits) - 1), out=x)
    return x


def issue_certs(directory: str | os.PathLike[str], clients: Sequence[int]) -> Path:
    """A development CA, a server certificate for 127.0.0.1 and one per client."""
    from secagg.net import certs

    d = Path(directory)
    certs.init_ca(d)
    certs.issue_server(d, "127.0.0.1")
    for u in clients:
        certs.issue_client(d, u)
    return d


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A client ready to connect: its TLS context and input, built before the round."""

    spec: ClientSpec
    ssl_context: Any
    input_vector: UIntArray


def _prepare(certs_dir: str, spec: ClientSpec) -> _Prepared:
    from secagg.net.tls import client_context

    return _Prepared(
        spec,
        client_context(certs_dir, spec.client_id),
        make_input(spec.input_seed, spec.client_id, spec.bits, spec.length),
    )


#: Points whose time (``time.monotonic()``, one clock for every process) a client notes.
_TIMED_POINTS = ("connected", "hello", "advertised")


async def _run_clients(
    host: str,
    port: int,
    clients: Sequence[_Prepared],
    timeout: float,
    times: dict[int, dict[str, float]],
) -> dict[int, str]:
    from secagg.net.client import run_client
    from secagg.primitives.sign import SigningKey

    async def one(c: _Prepared) -> tuple[int, str]:
        spec = c.spec

        noted = times.setdefault(spec.client_id, {})

        def checkpoint(point: str) -> None:
            if point in _TIMED_POINTS:
                noted.setdefault(point, time.monotonic())
            if point == spec.crash_at:
                os.kill(os.getpid(), signal.SIGKILL)

        try:
            await run_client(
                host=host,
                port=port,
                ssl_context=c.ssl_context,
                client_id=spec.client_id,
                input_vector=c.input_vector,
                rng=(
                    _quiet_rng(spec.rng_seed).child(f"client/{spec.client_id}")
                    if spec.rng_seed is not None
                    else None
                ),
                identity_key=(
                    SigningKey.from_private_bytes(spec.identity_private)
                    if spec.identity_private is not None
                    else None
                ),
                connect_timeout=timeout,
                checkpoint=checkpoint,
                stream_chunk=spec.stream_chunk,
            )
            return spec.client_id, "completed"
        except SecAggError as exc:
            return spec.client_id, f"{type(exc).__name__}: {exc}"

    return dict(await asyncio.gather(*(one(c) for c in clients)))


def _worker(
    host: str,
    port: int,
    certs_dir: str,
    specs: list[ClientSpec],
    out_path: str,
    timeout: float,
    ready: Any,
    go: Any,
) -> None:
    """Client process entry point: build the clients (TLS contexts, inputs), say
    ``ready``, wait for ``go`` (the round is open), run them, write their outcomes
    as JSON.  A device is running before a round starts: its start-up is not part of
    the round."""
    prepared = [_prepare(certs_dir, s) for s in specs]
    ready.put(len(prepared))
    if not go.wait(timeout):
        raise SystemExit(4)
    times: dict[int, dict[str, float]] = {}
    results = asyncio.run(_run_clients(host, port, prepared, timeout, times))
    Path(out_path).write_text(
        json.dumps(
            {
                "status": {str(k): v for k, v in results.items()},
                "times": {str(k): v for k, v in times.items()},
            }
        )
    )
    # non-zero exit when a client of this process did not complete
    raise SystemExit(0 if all(v == "completed" for v in results.values()) else 3)


_CTX: Any = None


def _context() -> Any:
    global _CTX
    if _CTX is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CTX = multiprocessing.get_context("forkserver")
            # what every client process imports, loaded once in the forkserver: the
            # codec asyncio's TLS transport looks up for the server name and the
            # backend cryptography loads on the first X25519 key (profiled: a sixth of
            # a crashing client's process CPU at n = 1000 went to these imports)
            _CTX.set_forkserver_preload(
                [
                    "secagg.net.simulate",
                    "secagg.net.client",
                    "secagg.net.tls",
                    "secagg.primitives.sign",
                    "secagg.primitives.kex",
                    "encodings.idna",
                    "cryptography.hazmat.backends.openssl.backend",
                ]
            )
        else:  # pragma: no cover - non-POSIX
            _CTX = multiprocessing.get_context("spawn")
    return _CTX


def _join_summary(
    times: dict[int, dict[str, float]], opened: float | None
) -> dict[str, dict[str, float]]:
    """Median and maximum seconds from the round opening to each timed client point."""
    out: dict[str, dict[str, float]] = {}
    if opened is None:
        return out
    for point in _TIMED_POINTS:
        xs = sorted(t[point] - opened for t in times.values() if point in t)
        if xs:
            out[point] = {"clients": len(xs), "median": xs[len(xs) // 2], "max": xs[-1]}
    return out


def _crash_plan(
    ids: Sequence[int], fraction: float, rng: RandomSource, points: Sequence[str]
) -> dict[int, str]:
    from secagg.sim.runtime import choose_dropouts

    crashed = sorted(choose_dropouts(ids, fraction, rng.child("crashed")))
    pick = rng.child("crash-points")
    return {u: points[randbelow(pick, len(points))] for u in crashed}


def _crash_groups(
    plan: dict[int, str], specs: dict[int, ClientSpec], size: int
) -> list[list[ClientSpec]]:
    """The crashing clients' processes: clients with the same crash point together,
    at most ``size`` per process, as evenly as that allows (ids in order)."""
    by_point: dict[str, list[int]] = {}
    for u in sorted(plan):
        by_point.setdefault(plan[u], []).append(u)
    groups: list[list[ClientSpec]] = []
    for point in sorted(by_point):
        ids = by_point[point]
        k = math.ceil(len(ids) / size)
        groups += [[specs[u] for u in ids[i::k]] for i in range(k)]
    return groups


def simulate_net(
    *,
    clients: int,
    length: int,
    bits: int = 32,
    protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
    security: SecurityMode = SecurityMode.SEMI_HONEST,
    neighbors: int | None = None,
    threshold: int | None = None,
    crash: float = 0.0,
    crash_points: Sequence[str] | None = None,
    seed: int | None = None,
    phase_timeout: float = 10.0,
    join_timeout: float = 60.0,
    idle_timeout: float = 10.0,
    client_procs: int | None = None,
    certs_dir: str | os.PathLike[str] | None = None,
    stream_chunk: int | None = None,
    measure_memory: bool = True,
    unmask_threads: int = 2,
    io_threads: int | None = None,
    digest: bool = True,
    crash_group: int = 1,
) -> dict[str, Any]:
    """Run one round over loopback TLS with client processes; return a JSON-able report.

    Parameters
    ----------
    crash:
        Fraction of clients killed with SIGKILL at a crash point.
    crash_points:
        Points to choose from (default: every point of every phase, including
        after each upload chunk).
    client_procs:
        Processes hosting the clients that do not crash (default ``min(n, cpus)``).
    certs_dir:
        A directory already holding a CA, ``server`` and every client's
        certificate (default: a fresh one in a temporary directory).
    unmask_threads:
        Threads of the server's unmasking step (as the process engine's default).
    io_threads:
        The server's I/O event loops (default: :class:`~secagg.net.server.NetServer`'s).
    crash_group:
        Crashing clients with the same crash point per process (default 1: every
        crashing client its own process, killed at its own point).  A process of
        several is killed when the first of them reaches the point; each process
        of a simulation costs CPU that a real federation's devices would not take
        from the server's machine.
    digest:
        Compute the transcript digest (SHA-256 of every frame, on the driver's
        thread; ``transcript_digest`` is ``""`` without it).
    stream_chunk:
        Elements per upload chunk, a positive multiple of 8 (default: the vector
        in about 4 chunks when some client may crash mid-upload, else the client
        default).

    Raises
    ------
    ParameterError
        On bad sizes, fractions or ``stream_chunk``.
    """
    from secagg.net.server import NetServer
    from secagg.net.tls import server_context
    from secagg.runtime.api import build_config
    from secagg.runtime.rss import PeakRSS

    if clients < 2 or length < 1:
        raise ParameterError("clients must be >= 2 and length >= 1")
    if not 0.0 <= crash <= 1.0:
        raise ParameterError("crash must be a fraction in [0, 1]")
    if stream_chunk is not None and (
        isinstance(stream_chunk, bool)
        or not isinstance(stream_chunk, int)
        or stream_chunk < 8
        or stream_chunk % 8
    ):
        raise ParameterError("stream_chunk must be a positive multiple of 8 (packed chunks)")
    if isinstance(crash_group, bool) or not isinstance(crash_group, int) or crash_group < 1:
        raise ParameterError("crash_group must be a positive integer")
    wall0 = time.perf_counter()
    rng: RandomSource
    if seed is not None:
        rng = _quiet_rng(seed.to_bytes(32, "big"))
        rng_seed: bytes | None = seed.to_bytes(32, "big")
        input_seed = seed.to_bytes(32, "big")
    else:
        rng = SystemRandom()
        rng_seed = None
        input_seed = os.urandom(16)  # simulation inputs are not secret
    ids = list(range(1, clients + 1))
    cfg, idkeys = build_config(
        ids,
        bits=bits,
        length=length,
        protocol=protocol,
        security=security,
        neighbors=neighbors,
        threshold=threshold,
        rng=rng,
    )
    chunk = stream_chunk
    points = list(crash_points) if crash_points is not None else None
    if points is None:
        points = list(CRASH_POINTS)
        if security is SecurityMode.MALICIOUS:
            points += list(_MALICIOUS_POINTS)
        if protocol is ProtocolKind.SECAGG_PLUS:
            points += list(_SECAGG_PLUS_POINTS)
        if chunk is None:
            chunk = 8 * max(1, math.ceil(length / 32))  # about 4 chunks, each a multiple of 8
        points += [f"upload:{i}" for i in range(math.ceil(length / chunk) - 1)]
    if chunk is None:
        from secagg.net.client import STREAM_CHUNK

        chunk = STREAM_CHUNK
    plan = _crash_plan(ids, crash, rng, points) if crash > 0 else {}
    tmp = tempfile.TemporaryDirectory(prefix="secagg-net-")
    try:
        cdir = (
            Path(certs_dir) if certs_dir is not None else issue_certs(Path(tmp.name) / "certs", ids)
        )
        t_certs = time.perf_counter() - wall0
        specs = {
            u: ClientSpec(
                client_id=u,
                input_seed=input_seed,
                bits=bits,
                length=length,
                rng_seed=rng_seed,
                identity_private=idkeys[u].private_bytes() if u in idkeys else None,
                crash_at=plan.get(u),
                stream_chunk=chunk,
            )
            for u in ids
        }
        steady = [specs[u] for u in ids if u not in plan]
        procs_n = max(1, min(len(steady), client_procs or (os.cpu_count() or 1)))
        groups = _crash_groups(plan, specs, crash_group)
        groups += [steady[i::procs_n] for i in range(procs_n) if steady[i::procs_n]]
        server = NetServer(
            ssl_context=server_context(cdir),
            idle_timeout=idle_timeout,
            upload_slots=2,
            handshake_timeout=max(10.0, min(60.0, join_timeout)),  # n handshakes at once
            io_threads=io_threads,
        )
        host, port = server.start()
        ctx = _context()
        procs = []
        ready, go = ctx.Queue(), ctx.Event()
        try:
            # the client processes start (and build their clients) before the round's
            # clock: they wait for `go`, set once the round accepts connections
            t_procs = time.perf_counter()
            for i, group in enumerate(groups):
                out = str(Path(tmp.name) / f"clients-{i}.json")
                p = ctx.Process(
                    target=_worker,
                    args=(host, port, str(cdir), group, out, join_timeout, ready, go),
                    daemon=True,
                )
                p.start()
                procs.append((p, out, group))
            waiting = len(procs)
            give_up = time.monotonic() + join_timeout
            while waiting:
                try:
                    ready.get(timeout=1.0)
                    waiting -= 1
                except queue.Empty:
                    if time.monotonic() > give_up or any(not p.is_alive() for p, _, _ in procs):
                        raise ParameterError("the client processes did not start") from None
            procs_s = time.perf_counter() - t_procs
            round_t0 = time.perf_counter()
            opened: list[float] = []

            def open_now() -> None:  # the round accepts connections: clients, go
                opened.append(time.monotonic())
                go.set()

            rss = PeakRSS()
            outcome, pool = server.run_round(
                cfg,
                phase_timeout=phase_timeout,
                join_timeout=join_timeout,
                measure_memory=measure_memory,
                unmask_threads=unmask_threads,
                on_open=open_now,
                digest=digest,
            )
            round_wall = time.perf_counter() - round_t0
            peak_rss_mb = rss.peak_mb()
        finally:
            server.close()
            if not go.is_set():  # the round never opened: nothing to wait for
                for p, _, _ in procs:
                    p.kill()
            for p, _, _ in procs:
                p.join(timeout=phase_timeout * 4 + 30)
                if p.is_alive():
                    p.kill()
                    p.join()
        client_status: dict[int, str] = {}
        join_times: dict[int, dict[str, float]] = {}
        exitcodes: dict[int, int | None] = {}
        for p, out, group in procs:
            for s in group:
                exitcodes[s.client_id] = p.exitcode
            if os.path.exists(out):
                doc = json.loads(Path(out).read_text())
                client_status.update({int(k): v for k, v in doc["status"].items()})
                for k, v in doc["times"].items():
                    join_times[int(k)] = v
            else:
                for s in group:
                    client_status[s.client_id] = f"process exited with {p.exitcode}"
    finally:
        tmp.cleanup()
    exact = None
    if outcome.result is not None:
        acc = np.zeros(length, dtype=dtype_for_bits(bits))
        for u in outcome.survivors:
            np.add(acc, make_input(input_seed, u, bits, length), out=acc)
        if bits < 8 * acc.dtype.itemsize:
            np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)
        exact = bool(np.array_equal(acc, outcome.result))
    killed = sorted(u for u in plan if exitcodes.get(u) == -signal.SIGKILL)
    st = pool.stats
    u3 = set(outcome.sets.get("U3", ()))
    surv_msg = sum(st[u].message_bytes_in for u in u3 if u in st)
    surv_frame = sum(st[u].frame_bytes_in for u in u3 if u in st)
    surv_tcp = (
        sum(st[u].tcp_bytes_in or 0 for u in u3 if u in st)
        if all(st[u].tcp_bytes_in is not None for u in u3 if u in st)
        else None
    )
    msg_in = sum(s.message_bytes_in for s in st.values())
    frame_in = sum(s.frame_bytes_in for s in st.values())
    tcp_in = [s.tcp_bytes_in for s in st.values()]
    return {
        "engine": "net",
        "protocol": cfg.protocol.value,
        "security": cfg.security.value,
        "clients": clients,
        "length": length,
        "bits": bits,
        "neighbors": cfg.degree,
        "threshold": cfg.threshold,
        "crash": crash,
        "crashed": {str(u): p for u, p in sorted(plan.items())},
        "killed_by_sigkill": len(killed),
        "survivors": len(outcome.survivors),
        "aborted": outcome.aborted,
        "abort_reason": outcome.abort_reason,
        "exact": exact,
        "total_sha256": (
            None if outcome.result is None else hashlib.sha256(outcome.result.tobytes()).hexdigest()
        ),
        "transcript_digest": outcome.transcript_digest,
        "sets": {k: len(v) for k, v in outcome.sets.items()},
        "phases": {p.key: st.as_dict() for p, st in outcome.phases.items()},
        "finalize_wall_s": outcome.finalize_wall_s,
        "server_peak_mb": outcome.server_peak_mb,
        "server_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "server_round_peak_rss_mb": peak_rss_mb,
        "survivor_message_bytes_to_server": surv_msg,
        "survivor_frame_bytes_to_server": surv_frame,
        "survivor_tcp_bytes_to_server": surv_tcp,
        "message_bytes_to_server": msg_in,
        "frame_bytes_to_server": frame_in,
        "tcp_bytes_to_server": sum(x for x in tcp_in if x is not None),
        "tcp_counted": all(x is not None for x in tcp_in),
        "message_bytes_to_clients": sum(s.message_bytes_out for s in st.values()),
        "tcp_bytes_to_clients": sum(s.tcp_bytes_out or 0 for s in st.values()),
        "cut": {str(k): v for k, v in sorted(pool.cut.items())},
        "rejections": {str(k): v for k, v in sorted(outcome.server_rejections.items())},
        "client_status": {str(k): v for k, v in sorted(client_status.items())},
        "client_processes": len(procs),
        "crash_processes": sum(1 for _, _, g in procs if g[0].crash_at is not None),
        "certs_s": t_certs,
        "client_processes_start_s": procs_s,
        "join_s": _join_summary(join_times, opened[0] if opened else None),
        "round_wall_s": round_wall,
        "wall_s": time.perf_counter() - wall0,
        "seed": seed,
    }
