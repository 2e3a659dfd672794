"""Per-client cost of the SecAgg+ graph-seed step at large n (issue 11, "Measures").

Protocol v2 sends every client the seed commitments of all of ``U1`` (SeedRequest) and
every reveal of ``U1`` (in its KeysBroadcast): O(n) per client, O(n^2) per round.  A full
round at n = 10^4 costs minutes on a 2-core box, so this harness measures ONE real
client (``secagg.masking.Client``) of an n-client round against messages built the way
the server builds them, and times each part of the two handlers:

* ``seed_request``: ``Client.receive(SeedRequest bytes)`` (decode, U1 checks, ``D1``);
* ``keys_broadcast``: ``Client.receive(KeysBroadcast bytes)`` (decode of the n reveals
  and k key entries, n commitment checks, graph key, Harary neighbors, then the O(k)
  part: k X25519 + HKDF, Shamir split, k share boxes), as on a device: nothing derived
  before; ``keys_broadcast_shared``: the same for the next client of a process that
  already derived this list's commitments (a simulator's worker);
* the parts on their own: ``decode_seed_request``, ``decode_keys_broadcast``,
  ``neighbors`` (one client's Harary permutation), and the O(k) rest as the
  difference;
* server: ``encode`` of one client's SeedRequest and KeysBroadcast (the driver encodes
  one per client).

Every figure is the best of ``--reps`` (thread CPU time); a fresh client with the same
deterministic secrets handles the same bytes each repetition.  The messages are built
with the public message classes only, so the script runs unchanged against an older
tree: ``PYTHONPATH=OLD python benchmarks/graph_seed.py`` vs ``PYTHONPATH=NEW ...``, run
interleaved for a before/after ratio (``--compare OLD NEW``).

Usage::

    PYTHONPATH=. python benchmarks/graph_seed.py --clients 1000,3000,10000 --json -
    PYTHONPATH=. python benchmarks/graph_seed.py --compare /tmp/base . --clients 1000,10000
    PYTHONPATH=. python benchmarks/graph_seed.py --profile --clients 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np


def _cpu(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best


def measure(n: int, reps: int, profile: bool) -> dict[str, Any]:
    from secagg.errors import InsecureConfigurationWarning
    from secagg.masking import _common as cm
    from secagg.masking import messages as m
    from secagg.masking.client import Client
    from secagg.masking.config import ProtocolKind, RoundConfig
    from secagg.masking.graph import neighbors
    from secagg.primitives.kex import KeyPair
    from secagg.primitives.rand import InsecureDeterministicRandom

    warnings.simplefilter("ignore", InsecureConfigurationWarning)
    rng = InsecureDeterministicRandom(b"graph-seed-bench" + n.to_bytes(8, "big"))
    sid = rng.random_bytes(32)
    ids = tuple(range(1, n + 1))
    cfg = RoundConfig.create(
        session_id=sid,
        clients=ids,
        bits=32,
        length=1000,
        protocol=ProtocolKind.SECAGG_PLUS,
        graph_seed=rng.random_bytes(32),
    )
    me = n // 2 + 1
    x = np.zeros(cfg.length, dtype=np.uint32)

    def started() -> tuple[Client, m.AdvertiseKeys]:
        c = Client(
            config=cfg,
            client_id=me,
            input_vector=x,
            rng=InsecureDeterministicRandom(b"graph-seed-bench-client", warn=False),
        )
        return c, c.start()

    def fresh() -> Client:
        return started()[0]

    c0, mine = started()
    r = {v: rng.random_bytes(32) for v in ids if v != me}
    g = {v: cm.seed_commitment(r[v], session_id=sid, client=v) for v in r}
    g[me] = mine.seed_commitment
    view = tuple((v, g[v]) for v in ids)
    seed_request = m.SeedRequest(session_id=sid, sender=0, recipient=me, commitments=view)
    sr_bytes = m.encode(seed_request)
    reveal = c0.receive(sr_bytes)[0]
    assert isinstance(reveal, m.SeedReveal)
    r[me] = reveal.reveal
    reveals = tuple(m.Reveal(owner=v, reveal=r[v]) for v in ids)
    digest = cm.seed_view_digest(session_id=sid, entries=view)
    key = cm.graph_key(
        session_id=sid,
        graph_seed=cfg.graph_seed,
        view=digest,
        reveals=[(v, r[v]) for v in ids],
    )
    nbrs = sorted(neighbors(cfg, me, seed=key))
    entries = tuple(
        m.KeyEntry(
            owner=v,
            c_pk=KeyPair.generate(rng).public,
            s_pk=KeyPair.generate(rng).public,
            commitment=rng.random_bytes(32),
            seed_commitment=g[v],
        )
        for v in nbrs
    )
    keys = m.KeysBroadcast(session_id=sid, sender=0, recipient=me, entries=entries, reveals=reveals)
    kb_bytes = m.encode(keys)

    def after_seed() -> Client:
        c = fresh()
        c.receive(sr_bytes)
        return c

    # sanity: the measured client accepts the broadcast and answers with its share boxes
    out = after_seed().receive(kb_bytes)
    assert len(out) == 1 and isinstance(out[0], m.ShareKeys), out

    row: dict[str, Any] = {"n": n, "k": cfg.degree, "t": cfg.threshold}
    row["seed_request_bytes"] = len(sr_bytes)
    row["keys_broadcast_bytes"] = len(kb_bytes)

    def forget_shared() -> None:
        """As on a device hosting one client: no reveal list's commitments derived before."""
        if hasattr(cm, "_OPENED"):
            cm._OPENED = ()

    def timed_receive(data: bytes, prep: Callable[[], Client], *, shared: bool = False) -> float:
        best = float("inf")
        for _ in range(reps):
            c = prep()
            if not shared:
                forget_shared()
            t0 = time.thread_time()
            c.receive(data)
            best = min(best, time.thread_time() - t0)
        return best

    row["seed_request_ms"] = 1e3 * timed_receive(sr_bytes, fresh)
    row["keys_broadcast_ms"] = 1e3 * timed_receive(kb_bytes, after_seed)
    # the next client a simulator's worker hosts, same list: commitments derived already
    row["keys_broadcast_shared_ms"] = 1e3 * timed_receive(kb_bytes, after_seed, shared=True)
    row["decode_seed_request_ms"] = 1e3 * _cpu(lambda: m.decode(sr_bytes), reps)
    row["decode_keys_broadcast_ms"] = 1e3 * _cpu(lambda: m.decode(kb_bytes), reps)

    def cold(data: bytes) -> Callable[[], object]:
        """Decode as a device does: nothing decoded before (forget the shared lists)."""

        def run() -> object:
            for book in getattr(m, "_LISTS", {}).values():
                book.clear()
            return m.decode(data)

        return run

    row["decode_seed_request_cold_ms"] = 1e3 * _cpu(cold(sr_bytes), reps)
    row["decode_keys_broadcast_cold_ms"] = 1e3 * _cpu(cold(kb_bytes), reps)
    row["neighbors_ms"] = 1e3 * _cpu(lambda: neighbors(cfg, me, seed=key), reps)
    row["commitment_checks_ms"] = 1e3 * _cpu(
        lambda: [cm.seed_commitment(r[v], session_id=sid, client=v) for v in ids], reps
    )
    if hasattr(cm, "seed_commitments_many"):
        ids_raw = b"".join(v.to_bytes(4, "big") for v in ids)
        joined = b"".join(r[v] for v in ids)
        row["commitment_checks_many_ms"] = 1e3 * _cpu(
            lambda: cm.seed_commitments_many(session_id=sid, ids=ids_raw, reveals=joined), reps
        )
    row["server_encode_seed_request_ms"] = 1e3 * _cpu(lambda: m.encode(seed_request), reps)
    row["server_encode_keys_broadcast_ms"] = 1e3 * _cpu(lambda: m.encode(keys), reps)
    if profile:
        import cProfile
        import pstats

        for name, data, prep in (
            ("seed_request", sr_bytes, fresh),
            ("keys_broadcast", kb_bytes, after_seed),
        ):
            c = prep()
            forget_shared()
            prof = cProfile.Profile()
            prof.enable()
            c.receive(data)
            prof.disable()
            print(f"== cProfile: Client.receive({name}), n = {n}", file=sys.stderr)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(14)
    return row


def _compare(trees: list[str], sizes: list[int], reps: int, rounds: int) -> dict[str, Any]:
    """Run each tree's measurement in a child process, interleaved, ``rounds`` times;
    keep each tree's best per key."""
    best: dict[str, dict[int, dict[str, float]]] = {t: {} for t in trees}
    for _ in range(rounds):
        for n in sizes:
            for tree in trees:
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--clients", str(n),
                     "--reps", str(reps), "--json", "-"],
                    env=env, check=True, capture_output=True, text=True,
                ).stdout
                row = json.loads(out)["rows"][0]
                cur = best[tree].setdefault(n, {})
                for k, v in row.items():
                    if isinstance(v, float):
                        cur[k] = min(cur.get(k, v), v)
                    else:
                        cur[k] = v
    return {"trees": trees, "best": {t: list(best[t].values()) for t in trees}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--clients", default="1000,3000,10000", help="comma-separated n")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile both handlers (stderr)")
    ap.add_argument("--compare", nargs="+", metavar="TREE",
                    help="source trees to measure interleaved in child processes")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --compare")
    ap.add_argument("--json", metavar="PATH", help="write JSON here ('-' = stdout)")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.clients.split(",")]
    if a.compare:
        result: dict[str, Any] = _compare(a.compare, sizes, a.reps, a.rounds)
        base, new = (result["best"][t] for t in a.compare[:2]) if len(a.compare) > 1 else (
            result["best"][a.compare[0]], result["best"][a.compare[0]])
        result["ratio_old_over_new"] = [
            {"n": o["n"], **{k: o[k] / w[k] for k in o if k.endswith("_ms") and w[k] > 0}}
            for o, w in zip(base, new, strict=True)
        ]
    else:
        result = {"rows": [measure(n, a.reps, a.profile) for n in sizes]}
    result["load_average"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    if a.json == "-":
        print(text)
    else:
        if a.json:
            with open(a.json, "w") as f:
                f.write(text + "\n")
        print(text, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
