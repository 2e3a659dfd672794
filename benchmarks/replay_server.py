"""Server-only timing of a `secagg simulate` masking round: record it once, replay it.

The n = 500 complete-graph round spends ~70 s of client CPU for ~1-2 s of server CPU, so
on a shared machine the server figure of one full run is noisy and a before/after pair
costs minutes.  This script records every client reply of one run (``record``), then
feeds the same frames to a fresh server through the same :class:`RoundDriver` with the
same options as ``secagg simulate`` (``replay``): the JSON is the simulate report (its
``server_cpu_s`` measured exactly as there), and the transcript digest and ``exact``
prove the replayed round is the recorded one.  With ``--seed`` the clients are
deterministic, so a replay on another commit is valid as long as the wire bytes did
not change (the digest says so).

    PYTHONPATH=. python benchmarks/replay_server.py record /tmp/r0.pkl -- \
        --protocol secagg --clients 500 --length 100000 --dropout 0 --seed 1 --json /tmp/a.json
    PYTHONPATH=. python benchmarks/replay_server.py replay /tmp/r0.pkl -- \
        --protocol secagg --clients 500 --length 100000 --dropout 0 --seed 1 --json -

``replay --client U`` runs client ``U`` for real (checked against the recording) and
prints its CPU per step on stderr.  Measuring only: nothing here is runtime code.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import secagg.cli as cli
import secagg.runtime.api as api
import secagg.runtime.pool as pool_mod
from secagg.runtime.pool import InProcessPool, Reply


def record(path: str, argv: Sequence[str]) -> int:
    rec: dict[int, list[Reply]] = {}

    class RecordingPool(InProcessPool):
        def _run(self, items: Any, deadline: float | None) -> Iterator[Reply]:
            for r in super()._run(items, deadline):
                rec.setdefault(r.client, []).append(
                    Reply(r.client, [bytes(f) for f in r.frames], r.cpu_s, r.error))
                yield r

    pool_mod.InProcessPool = RecordingPool  # type: ignore[misc]
    api.InProcessPool = RecordingPool  # type: ignore[misc]
    try:
        return cli.main(["simulate", *argv])
    finally:
        with open(path, "wb") as f:
            pickle.dump(rec, f, protocol=5)


class ReplayPool:
    """A ClientPool that answers with the recorded replies (one client may run for real)."""

    engine = "inprocess"
    exchange_in_chunks = True

    def __init__(self, rec: Mapping[int, list[Reply]], factory: Any, workers: int,
                 real: int) -> None:
        self.workers = workers
        self._queue = {u: list(rs) for u, rs in rec.items()}
        self._factory = factory
        self._real_id = real
        self._real: Any = None
        self.real_cpu: list[float] = []

    def _one(self, u: int, data: bytes | None) -> Reply:
        want = self._queue[u].pop(0)
        if u != self._real_id:
            return Reply(want.client, list(want.frames), want.cpu_s, want.error)
        t0 = time.thread_time()
        if data is None:
            self._real = self._factory.make(u)
            frames = self._real.start()
        else:
            frames = self._real.receive(data)
        self.real_cpu.append(time.thread_time() - t0)
        frames = [bytes(f) for f in frames]
        if frames != want.frames:
            raise SystemExit(f"client {u} does not reproduce the recording")
        return Reply(u, frames, self.real_cpu[-1], None)

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        for u in clients:
            yield self._one(u, None)

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None
                 ) -> Iterator[Reply]:
        for u, data in batch.items():
            yield self._one(u, data)

    def close(self) -> None:
        pass


def replay(path: str, argv: Sequence[str], client: int) -> int:
    with open(path, "rb") as f:
        rec = pickle.load(f)
    pools: list[ReplayPool] = []
    run = api.run_masking_round

    def patched(factory: Any, **kw: Any) -> Any:
        p = ReplayPool(rec, factory, kw.get("workers") or 2, client)
        pools.append(p)
        kw["pool"] = p
        return run(factory, **kw)

    api.run_masking_round = patched  # type: ignore[assignment]
    rc = cli.main(["simulate", *argv])
    if client:
        cpu = pools[-1].real_cpu
        print(f"client {client} CPU per step (ms): {[round(x * 1e3, 2) for x in cpu]}, "
              f"total {sum(cpu) * 1e3:.2f}", file=sys.stderr)
    return rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["record", "replay"])
    ap.add_argument("path", help="the recording (pickle: trusted, local files only)")
    ap.add_argument("--client", type=int, default=0, help="replay: run this client for real")
    a, rest = ap.parse_known_args()
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return record(a.path, rest) if a.mode == "record" else replay(a.path, rest, a.client)


if __name__ == "__main__":
    raise SystemExit(main())
