"""``secagg bench scale``: one SecAgg+ round with 10^4 clients x 10^5 parameters on this machine.

The round is the real protocol — :class:`~secagg.masking.client.Client` and
:class:`~secagg.masking.server.Server` state machines exchanging wire bytes
(:mod:`secagg.masking.messages`) — driven by :func:`run_parallel_round`, a
process-parallel runtime for benchmarks: the server lives in this process; the
clients are split over ``workers`` forked processes (both cores do client work;
Python-level key agreement, Shamir and codec work is not GIL-free, so threads
alone would not use the second core).  Messages cross the process boundary as the
same bytes the in-process simulator (:mod:`secagg.sim`) passes.

Determinism: every random choice comes from one
:class:`~secagg.primitives.rand.InsecureDeterministicRandom` seed with
:func:`secagg.sim.run_round`'s labels (``client/<id>``, the config from
:func:`secagg.sim.build_config`, dropouts from ``dropouts``), so the transcript
is a function of the seed: ``transcript_digest`` (order-independent: per-message
SHA-256, sorted, hashed) is the same on every run, whatever the scheduling.  A
benchmark replays the same seed on purpose; it is not a way to run real rounds
(those must draw fresh secrets every round, as ``secure_sum`` does by forking).

Measured: wall time, client CPU per phase (mean per client and total), server CPU
per phase, bytes per client and in total, communication expansion, the server
process's peak RSS above its baseline (``/proc/self/status`` ``VmHWM`` after a
``clear_refs`` reset), the workers' peak RSS, ``exact`` (the sum equals the
plaintext sum over U3).  Next to it, in the same run, the costs of the building
blocks at this size (X25519 agreement, HKDF, Shamir split/reconstruct at
``k``, ``t``, and the AES-CTR limit for the masks), scaled by how many of each the
round needs, to show what dominates.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.bench.common import machine_info, markdown_table
from secagg.bench.mask import shifted_inputs
from secagg.errors import ParameterError, SecAggError
from secagg.masking import messages as msgs
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server, ServerPhase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import DropPhase, build_config, choose_dropouts, plaintext_sum

__all__ = ["PHASES", "building_blocks", "run", "run_parallel_round"]

#: Phase names, in protocol order (as in :data:`secagg.sim.runtime.PHASES`).
PHASES = ("advertise_keys", "share_keys", "masked_input", "consistency", "unmasking")
_DROP_BEFORE = {
    DropPhase.SHARE_KEYS: "share_keys",
    DropPhase.MASKED_INPUT: "masked_input",
    DropPhase.CONSISTENCY: "unmasking",  # semi-honest: no consistency round
    DropPhase.UNMASKING: "unmasking",
}
_BATCH = 16  # requests per pipe message to a worker
_START = 0
_DELIVER = 1


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _worker(
    conn_in: Connection,
    conn_out: Connection,
    cfg: RoundConfig,
    base: npt.NDArray[Any],
    seed: int,
) -> None:
    """Worker process: owns some clients, answers ``(kind, id, bytes)`` requests in order."""
    rng = InsecureDeterministicRandom(seed, warn=False)
    pos = {u: j for j, u in enumerate(cfg.clients)}
    m = cfg.length
    clients: dict[int, Client] = {}
    while True:
        batch = conn_in.recv()
        if batch is None:
            break
        for kind, u, data in batch:
            t0 = time.thread_time()
            err: str | None = None
            try:
                if kind == _START:
                    j = pos[u]
                    c = Client(config=cfg, client_id=u, input_vector=base[j : j + m],
                               rng=rng.child(f"client/{u}"))
                    clients[u] = c
                    replies: Sequence[msgs.Message] = [c.start()]
                else:
                    replies = clients[u].receive(data)
                encoded = [msgs.encode(r) for r in replies]
            except SecAggError as exc:
                encoded, err = [], f"{type(exc).__name__}: {exc}"
            _write_frame(conn_out, _pack(u, encoded, time.thread_time() - t0, err))
    _write_frame(conn_out, _pack(0, [], float(_status_kb("VmHWM")), None))
    conn_out.close()


def _write_frame(conn: Connection, payload: bytes) -> None:
    """``u64`` length, then the payload, written straight to the pipe."""
    fd = conn.fileno()
    view = memoryview(len(payload).to_bytes(8, "big") + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_frame(conn: Connection) -> bytearray:
    """One frame read into a single buffer of its exact size (no intermediate copies:
    ``Connection.recv_bytes`` would hold the message twice)."""
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


def _pack(u: int, encoded: list[bytes], cpu: float, err: str | None) -> bytes:
    """Reply framing (worker -> runtime): no pickling of the large masked vectors."""
    e = (err or "").encode("utf-8")
    head = [u.to_bytes(4, "big"), np.float64(cpu).tobytes(), len(e).to_bytes(4, "big"), e,
            len(encoded).to_bytes(4, "big")]
    for b in encoded:
        head.append(len(b).to_bytes(8, "big"))
    return b"".join(head + encoded)


def _unpack(data: bytes | bytearray) -> tuple[int, list[memoryview], float, str | None]:
    mv = memoryview(data)
    u = int.from_bytes(mv[0:4], "big")
    cpu = float(np.frombuffer(mv[4:12], dtype=np.float64)[0])
    el = int.from_bytes(mv[12:16], "big")
    err = bytes(mv[16 : 16 + el]).decode("utf-8") if el else None
    p = 16 + el
    cnt = int.from_bytes(mv[p : p + 4], "big")
    p += 4
    lens = [int.from_bytes(mv[p + 8 * i : p + 8 * i + 8], "big") for i in range(cnt)]
    p += 8 * cnt
    out = []
    for ln in lens:
        out.append(mv[p : p + ln])
        p += ln
    return u, out, cpu, err


class _Pool:
    """``workers`` forked processes, each owning the clients ``ids[w::workers]``."""

    def __init__(self, cfg: RoundConfig, base: npt.NDArray[Any], seed: int, workers: int) -> None:
        ctx = mp.get_context("fork")
        self.owner = {u: i % workers for i, u in enumerate(cfg.clients)}
        self.procs = []
        self.to_w: list[Connection] = []
        self.from_w: list[Connection] = []
        for _ in range(workers):
            a_in, b_in = ctx.Pipe(duplex=False)
            a_out, b_out = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_worker, args=(a_in, b_out, cfg, base, seed), daemon=True)
            p.start()
            a_in.close()
            b_out.close()
            self.procs.append(p)
            self.to_w.append(b_in)
            self.from_w.append(a_out)
        self.peak_kb: list[int] = []

    def exchange(
        self,
        items: list[tuple[int, int, Any]],
        encode: Callable[[int, Any], bytes] | None = None,
    ) -> Iterator[tuple[int, list[memoryview], float, str | None]]:
        """Send ``(kind, id, payload)`` to the owners; yield one reply per item as it arrives.

        ``items`` is emptied (the feeders own the payloads and drop each once sent).
        ``encode(id, payload) -> bytes`` runs in the per-worker feeder threads, just
        before sending, so a phase's encoded messages are never all in memory at once.
        """
        per: list[list[Any]] = [[] for _ in self.to_w]
        for it in items:
            per[self.owner[it[1]]].append(it)
        if isinstance(items, list):
            items.clear()

        def feed(w: int) -> None:  # a thread per worker: sending may block on a full pipe
            lst = per[w]
            for a in range(0, len(lst), _BATCH):
                batch = lst[a : a + _BATCH]
                lst[a : a + _BATCH] = [None] * len(batch)
                if encode is not None:
                    batch = [(k, u, encode(u, p)) for k, u, p in batch]
                self.to_w[w].send(batch)
                del batch

        feeders = [threading.Thread(target=feed, args=(w,), daemon=True) for w in range(len(per))]
        for f in feeders:
            f.start()
        left = [len(p) for p in per]
        conns = {c: w for w, c in enumerate(self.from_w)}
        try:
            while any(left):
                for c in wait([c for c, w in conns.items() if left[w]]):
                    w = conns[c]  # type: ignore[index]
                    yield _unpack(_read_frame(c))  # type: ignore[arg-type]
                    left[w] -= 1
        finally:
            for f in feeders:
                f.join()

    def close(self) -> None:
        for w, c in enumerate(self.to_w):
            c.send(None)
            _, _, peak, _ = _unpack(_read_frame(self.from_w[w]))
            self.peak_kb.append(int(peak))
        for p in self.procs:
            p.join(timeout=30)


def run_parallel_round(
    *,
    n: int,
    length: int,
    bits: int = 32,
    protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
    neighbors: int | None = None,
    threshold: int | None = None,
    dropout: float = 0.05,
    drop_phase: DropPhase = DropPhase.MASKED_INPUT,
    seed: int = 0,
    workers: int = 2,
    unmask_threads: int = 2,
    digest: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """One semi-honest round, clients in ``workers`` processes, server here; measured.

    Parameters
    ----------
    n, length, bits:
        Clients (ids ``1..n``), elements per input, modulus exponent.
    protocol, neighbors, threshold:
        As :func:`secagg.sim.secure_sum` (``None`` = the safe defaults).
    dropout, drop_phase:
        ``round(dropout * n)`` clients (chosen from the seed) stop replying before
        ``drop_phase``.
    seed:
        Everything random derives from it (inputs, keys, session, dropouts).
    workers, unmask_threads:
        Client processes; threads for the server's unmasking.
    digest:
        Compute the order-independent transcript digest (SHA-256 of every message).
    progress:
        Called with one line per finished phase.

    Raises
    ------
    ParameterError
        On bad sizes.
    """
    if n < 2 or length < 1 or workers < 1 or unmask_threads < 1:
        raise ParameterError("need n >= 2, length >= 1, workers >= 1, unmask_threads >= 1")
    ids = list(range(1, n + 1))
    base, inputs = shifted_inputs(ids, length, seed=seed, bits=bits)
    src = InsecureDeterministicRandom(seed, warn=False)
    cfg, _ = build_config(ids, bits=bits, length=length, protocol=protocol,
                          security=SecurityMode.SEMI_HONEST, neighbors=neighbors,
                          threshold=threshold, rng=src)
    dropped = choose_dropouts(ids, dropout, src.child("dropouts"))
    drop_before = _DROP_BEFORE[drop_phase]

    rss0_kb = _status_kb("VmRSS")
    rss_reset = _reset_peak_rss()
    wall0 = time.perf_counter()
    pool = _Pool(cfg, base, seed, workers)
    server = Server(config=cfg)
    server_cpu = dict.fromkeys(PHASES, 0.0)
    client_cpu: dict[str, list[float]] = {p: [] for p in PHASES}
    phase_wall: dict[str, float] = {}
    bytes_up = 0
    bytes_down = 0
    bytes_up_by_phase = dict.fromkeys(PHASES, 0)
    bytes_up_by_client = dict.fromkeys(ids, 0)
    hashes: list[bytes] = []
    errors: dict[int, str] = {}
    rejections: dict[int, str] = {}

    def note(direction: str, data: bytes | memoryview) -> None:
        if digest:
            h = hashlib.sha256(direction.encode())
            h.update(data)
            hashes.append(h.digest())

    def server_in(phase: str, u: int, data: memoryview) -> list[tuple[int, msgs.Message]]:
        t0 = time.thread_time()
        try:
            out = server.receive(u, data)
        except SecAggError as exc:
            rejections[u] = f"{type(exc).__name__}: {exc}"
            out = []
        server_cpu[phase] += time.thread_time() - t0
        return out

    def step(phase: str, items: list[tuple[int, int, Any]]) -> list[tuple[int, msgs.Message]]:
        nonlocal bytes_up
        t_phase = time.perf_counter()
        before = server.phase
        count = len(items)
        nxt: list[tuple[int, msgs.Message]] = []
        for u, replies, cpu, err in pool.exchange(items, encoder(phase)):
            client_cpu[phase].append(cpu)
            if err is not None:
                errors[u] = err
            while replies:  # pop: no reference to a received vector outlives its step
                data = replies.pop(0)
                bytes_up += len(data)
                bytes_up_by_phase[phase] += len(data)
                bytes_up_by_client[u] += len(data)
                note("to_server", data)
                nxt += server_in(phase, u, data)
                del data
        if server.phase is before and before in (
            ServerPhase.COLLECT_KEYS, ServerPhase.COLLECT_SHARES, ServerPhase.COLLECT_MASKED,
            ServerPhase.COLLECT_UNMASKING,
        ):
            t0 = time.thread_time()
            nxt = server.deadline_passed()
            server_cpu[phase] += time.thread_time() - t0
        phase_wall[phase] = time.perf_counter() - t_phase
        if progress is not None:
            progress(f"{phase}: {count} clients, {phase_wall[phase]:.1f} s")
        return nxt

    lock = threading.Lock()

    def encoder(phase: str) -> Callable[[int, Any], bytes]:
        def enc(u: int, msg: msgs.Message | bytes) -> bytes:
            nonlocal bytes_down
            if isinstance(msg, bytes):  # a start command, not a message
                return msg
            t0 = time.thread_time()
            data = msgs.encode(msg)
            with lock:
                bytes_down += len(data)
                note("to_client", data)
                server_cpu[phase] += time.thread_time() - t0
            return data

        return enc

    def outgoing(phase: str, out: list[tuple[int, msgs.Message]]) -> list[tuple[int, int, Any]]:
        enc = encoder(phase)
        items: list[tuple[int, int, Any]] = []
        for u, msg in out:
            if u in dropped and PHASES.index(phase) >= PHASES.index(drop_before):
                enc(u, msg)  # sent, but the client is gone: it never answers
                continue
            items.append((_DELIVER, u, msg))
        return items

    try:
        out = step("advertise_keys", [(_START, u, b"") for u in ids])
        for phase in ("share_keys", "masked_input", "unmasking"):
            if server.phase in (ServerPhase.ABORTED, ServerPhase.COMPLETED):
                break
            items = outgoing(phase, out)
            out = []  # the server's messages now live only in items, dropped once sent
            out = step(phase, items)
        result = None
        if server.phase is ServerPhase.FINALIZING:
            t_fin = time.perf_counter()
            p0 = time.process_time()
            with ThreadPoolExecutor(max_workers=unmask_threads) as ex:
                result = server.finalize(ex.map)
            server_cpu["unmasking"] += time.process_time() - p0
            phase_wall["finalize"] = time.perf_counter() - t_fin
    finally:
        pool.close()
    wall = time.perf_counter() - wall0
    server_peak_kb = _status_kb("VmHWM")
    survivors = server.survivors
    exact = False
    if result is not None:
        exact = bool(np.array_equal(result, plaintext_sum(inputs, survivors, bits)))
    steps = {p: len(v) for p, v in client_cpu.items()}
    client_total = {p: float(sum(v)) for p, v in client_cpu.items()}
    all_hash = hashlib.sha256(b"".join(sorted(hashes))).hexdigest() if digest else None
    width = 4 if bits <= 32 else 8
    survivor_up = [bytes_up_by_client[u] for u in survivors] or [0]
    expansion = float(np.mean(survivor_up)) / (length * bits / 8)
    return {
        "clients": n,
        "elements": length,
        "bits": bits,
        "protocol": protocol.value,
        "neighbors": cfg.degree,
        "threshold": cfg.threshold,
        "dropout": dropout,
        "drop_phase": drop_phase.value,
        "dropped": len(dropped),
        "survivors": len(survivors),
        "aborted": server.aborted,
        "abort_reason": server.abort_reason,
        "exact": exact,
        "wall_s": wall,
        "phase_wall_s": phase_wall,
        "workers": workers,
        "unmask_threads": unmask_threads,
        "client_cpu_mean_s": {p: (client_total[p] / steps[p] if steps[p] else 0.0)
                              for p in PHASES},
        "client_cpu_total_s": client_total,
        "client_cpu_per_client_s": sum(client_total.values()) / n,
        "client_steps": steps,
        "server_cpu_s": server_cpu,
        "server_cpu_total_s": sum(server_cpu.values()),
        "bytes_to_server": bytes_up,
        "bytes_to_clients": bytes_down,
        "bytes_per_client_upload": bytes_up / n,
        "bytes_per_client_download": bytes_down / n,
        "bytes_upload_by_phase": bytes_up_by_phase,
        "expansion": expansion,
        "bytes_per_surviving_client_upload": float(np.mean(survivor_up)),
        "expansion_note": "mean bytes sent by a client in U3 (all phases) / (m * b / 8)",
        "input_bytes_per_client": length * width,
        "server_peak_rss_mb": (server_peak_kb - rss0_kb) / 1024 if rss_reset else None,
        "server_baseline_rss_mb": rss0_kb / 1024,
        "server_running_sum_bytes": length * width,
        "worker_peak_rss_mb": [k / 1024 for k in pool.peak_kb],
        "memory_note": (
            "server: peak RSS of the server process above its RSS before the round (includes "
            "the encoded messages of a whole phase in flight and the O(n k) key/share state)"
        ),
        "client_errors": len(errors),
        "server_rejections": len(rejections),
        "transcript_digest": all_hash,
        "seed": seed,
    }


def building_blocks(n: int, k: int, t: int, length: int, *, reps: int = 200) -> dict[str, Any]:
    """Per-operation costs at this size and their total for one round (same run).

    X25519 agreement, HKDF derivation, Shamir ``split_many`` (2 secrets, ``k``
    holders, threshold ``t``), ``reconstruct`` (``t`` shares, uncached x-set), and the
    AES-CTR + add limit for one mask of ``length`` uint32.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from secagg.bench.prg import raw_masked_add
    from secagg.primitives import shamir
    from secagg.primitives.kdf import derive
    from secagg.primitives.prg import prg_key

    rng = InsecureDeterministicRandom(5, warn=False)

    def per_op(fn: Callable[[int], object], count: int) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(count):
                fn(i)
            best = min(best, (time.perf_counter() - t0) / count)
        return best

    sk = X25519PrivateKey.from_private_bytes(rng.random_bytes(32))
    pk = X25519PrivateKey.from_private_bytes(rng.random_bytes(32)).public_key()
    x25519 = per_op(lambda i: sk.exchange(pk), reps)
    hkdf = per_op(lambda i: derive(b"k" * 32, purpose="pairwise-mask-seed",
                                   session_id=b"s" * 32, fields=(i, i + 1)), reps)
    xs = list(range(1, k + 1))
    secrets = [int.from_bytes(rng.random_bytes(31), "big") for _ in range(2)]
    split = per_op(lambda i: shamir.split_many(secrets, t, xs, rng), max(3, reps // 20))
    ys = shamir.split(secrets[0], t, list(range(1, 10 * t + 1)), rng)

    def rec(i: int) -> None:
        pts = [(x, ys[x - 1]) for x in range(1 + i % (9 * t), 1 + i % (9 * t) + t)]
        shamir.lagrange_at_zero.cache_clear()
        shamir.reconstruct(pts, t)

    recon = per_op(rec, max(3, reps // 10))
    m = min(length, 10**6)
    vec = np.zeros(m, dtype=np.uint32)
    key = [(prg_key(b"x" * 32), True)]
    buf = np.empty(1 << 16, dtype=np.uint32)
    zeros = bytes(4 << 16)
    mask = per_op(lambda i: raw_masked_add(vec, key, chunk=1 << 16, buf=buf, zeros=zeros), 5)
    mask *= length / m
    d = round(0.05 * n)
    counts = {
        "x25519_client": n * 2 * k,
        "x25519_server": d * k,
        "hkdf": n * 4 * k,
        "shamir_split": n,
        "shamir_reconstruct": n,
        "mask_client": n * (k + 1),
        "mask_server": (n - d) + d * k,
    }
    per = {"x25519": x25519, "hkdf": hkdf, "shamir_split": split,
           "shamir_reconstruct": recon, "mask": mask}
    totals = {
        "x25519_s": (counts["x25519_client"] + counts["x25519_server"]) * x25519,
        "hkdf_s": counts["hkdf"] * hkdf,
        "shamir_split_s": counts["shamir_split"] * split,
        "shamir_reconstruct_s": counts["shamir_reconstruct"] * recon,
        "mask_limit_s": (counts["mask_client"] + counts["mask_server"]) * mask,
    }
    return {"per_op_s": per, "counts": counts, "round_totals_cpu_s": totals,
            "note": "per-op best of 3 here x how many the round needs (5% dropped after "
                    "ShareKeys, 4 HKDF per neighbour is approximate)"}


def run(quick: bool = False, *, n: int | None = None, length: int | None = None,
        seed: int = 2026) -> dict[str, Any]:
    """The scale benchmark: ``n = 10^4`` clients x ``10^5`` uint32, 5% dropped before
    masked input (``n = 200``, ``m = 10^4`` with ``--quick``).

    Raises
    ------
    ParameterError
        On bad sizes.
    """
    nn = n if n is not None else (200 if quick else 10**4)
    mm = length if length is not None else (10**4 if quick else 10**5)

    def say(line: str) -> None:
        print(f"[scale n={nn} m={mm}] {line}", file=sys.stderr, flush=True)

    res = run_parallel_round(n=nn, length=mm, dropout=0.05, seed=seed,
                             workers=max(1, min(2, os.cpu_count() or 1)), progress=say)
    blocks = building_blocks(nn, res["neighbors"], res["threshold"], mm,
                             reps=50 if quick else 200)
    budget = 3 * 4 * mm
    return {
        "benchmark": "scale",
        "quick": quick,
        **res,
        "wall_target_s": 300,
        "meets_wall_target": res["wall_s"] <= 300 and res["exact"],
        "server_memory_bound_note": "target: <= 3*4m bytes for vectors + O(n k) for keys/shares",
        "server_vector_budget_mb": budget / 2**20,
        "building_blocks": blocks,
        "machine": machine_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    r = result
    rows = [[p, r["client_cpu_mean_s"][p] * 1e3, r["client_cpu_total_s"][p],
             r["server_cpu_s"][p], r["phase_wall_s"].get(p, 0.0)] for p in PHASES
            if p != "consistency"]
    table = markdown_table(
        ["phase", "client CPU ms (mean)", "client CPU s (all)", "server CPU s", "wall s"], rows)
    bb = r["building_blocks"]["round_totals_cpu_s"]
    blocks = markdown_table(["building block", "CPU s for this round (estimated)"],
                            [[k, v] for k, v in bb.items()])
    peak = r["server_peak_rss_mb"]
    return (
        f"## scale\n\nSecAgg+ n={r['clients']:,}, m={r['elements']:,}, k={r['neighbors']}, "
        f"t={r['threshold']}, {r['dropped']} dropped before {r['drop_phase']}; "
        f"{r['workers']} client processes\n\n{table}\n\n"
        f"wall {r['wall_s']:.1f} s (target <= {r['wall_target_s']}), exact: {r['exact']}, "
        f"aborted: {r['aborted']}; upload {r['bytes_per_client_upload'] / 1e3:.1f} kB/client "
        f"(expansion {r['expansion']:.3f}); server peak RSS "
        f"{'n/a' if peak is None else f'{peak:.1f} MB'} above baseline "
        f"(vector budget 3*4m = {r['server_vector_budget_mb']:.2f} MB + O(n k)); "
        f"digest {str(r['transcript_digest'])[:16]}\n\n{blocks}"
    )
