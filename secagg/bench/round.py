"""``secagg bench round``: full SecAgg+ rounds over a grid of clients x parameters.

Each cell is one real round (client and server state machines, wire bytes, 5% of
the clients dropping before masked input so the server rebuilds their pairwise
masks), driven by :func:`secagg.bench.scale.run_parallel_round` (the runtime's
driver over the ``processes`` pool: clients in two worker processes, server
here).  Per cell: client CPU per phase (mean per client),
server CPU per phase, wall time, bytes per client and in total, the server
process's peak RSS above baseline, communication expansion
(bytes sent per client / (m·b/8)) and ``exact``.

Grid (``--quick``: n=20, 50 at m=10^4):

* n = 100 at m = 10^5, 10^6, 10^7; n = 1000 at m = 10^5, 10^6;
* n = 10^4 at m = 10^5 is the ``scale`` benchmark (not repeated here);
* left out for time on 2 cores: n = 1000 at m = 10^7 (~73 masks x 40 MB per client,
  ~10 min of AES alone) and n = 10^4 at m >= 10^6.

Peer comparison, same round shape as the figures measured for Flower 1.42
SecAgg+ on this machine (n=100, m=10^6, 10% dropped; k=3, t=2 and k=17, t=8):
our CPU (client + server) for a completed round of that shape (the first seed
from the given one whose dropout pattern does not abort), and the abort rate over
20 random 10% dropout patterns (at m=64: whether a round aborts does not depend
on m).  The peer's figures are quoted, not measured by this module.
"""

from __future__ import annotations

import sys
from typing import Any

from secagg.bench.common import machine_info, markdown_table
from secagg.bench.scale import run_parallel_round
from secagg.sim import Phase

__all__ = ["FULL_GRID", "PEER", "QUICK_GRID", "run"]

FULL_GRID: tuple[tuple[int, int], ...] = (
    (100, 10**5), (100, 10**6), (100, 10**7), (1000, 10**5), (1000, 10**6),
)
QUICK_GRID: tuple[tuple[int, int], ...] = ((20, 10**4), (50, 10**4))
_PATTERNS = 20  # random dropout patterns per peer-shaped setting for the abort rate
SKIPPED = (
    {"clients": 10**4, "elements": 10**5, "why": "measured by `secagg bench scale`"},
    {"clients": 1000, "elements": 10**7, "why": "time: ~73 masks x 40 MB per client"},
    {"clients": 10**4, "elements": 10**6, "why": "time: ~87 masks x 4 MB per client x 10^4"},
    {"clients": 10**4, "elements": 10**7, "why": "time and memory"},
)

#: Peer figures (Flower 1.42 SecAgg+, measured by others on this machine; quoted).
PEER = {
    "system": "Flower 1.42 SecAgg+",
    "source": "measured by others on this machine (quoted, not re-measured here)",
    "k3_t2_cpu_s": 11.0,
    "k17_t8_after_masked_input_cpu_s": 35.0,
    "mask_vs_aes_limit_slowdown": "16-20x",
}


def _cell(n: int, m: int, seed: int, **kw: Any) -> dict[str, Any]:
    def say(line: str) -> None:
        print(f"[round n={n} m={m}] {line}", file=sys.stderr, flush=True)

    return run_parallel_round(n=n, length=m, seed=seed, digest=False, progress=say, **kw)


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("clients", "elements", "neighbors", "threshold", "dropped", "drop_phase", "survivors",
            "aborted", "abort_reason", "exact", "wall_s", "client_cpu_mean_s",
            "client_cpu_per_client_s", "client_cpu_total_s", "server_cpu_s",
            "server_cpu_total_s", "bytes_per_client_upload", "bytes_per_client_download",
            "bytes_to_server", "bytes_to_clients", "expansion", "server_peak_rss_mb",
            "worker_peak_rss_mb", "phase_wall_s")
    out = {k: r[k] for k in keep}
    out["cpu_total_s"] = sum(r["client_cpu_total_s"].values()) + r["server_cpu_total_s"]
    return out


def run(quick: bool = False, *, seed: int = 11, peer: bool | None = None) -> dict[str, Any]:
    """Run the grid (and, unless ``quick``, the peer-shaped rounds); JSON-ready result."""
    grid = QUICK_GRID if quick else FULL_GRID
    cells = [_summary(_cell(n, m, seed, dropout=0.05)) for n, m in grid]
    do_peer = (not quick) if peer is None else peer
    peer_rows: list[dict[str, Any]] = []
    if do_peer:
        pn, pm = (100, 10**6) if not quick else (20, 10**4)
        for k, t, phase in ((3, 2, Phase.MASKED_INPUT), (3, 2, Phase.UNMASKING),
                            (17, 8, Phase.UNMASKING), (None, None, Phase.MASKED_INPUT)):
            kw: dict[str, Any] = {"dropout": 0.10, "neighbors": k, "threshold": t,
                                  "drop_phase": phase}
            # abort rate over random 10% dropout patterns (tiny m: aborts do not depend on m)
            aborted = [run_parallel_round(n=pn, length=64, seed=seed + i, digest=False,
                                          **kw)["aborted"] for i in range(_PATTERNS)]
            # CPU of a completed round: the first seed from `seed` up whose pattern completes
            first = next((seed + i for i, a in enumerate(aborted) if not a), seed)
            r = _summary(_cell(pn, pm, first, **kw))
            r["setting"] = f"k={k}, t={t}" if k is not None else "our default (k, t)"
            r["seed"] = first
            r["abort_rate"] = sum(aborted) / len(aborted)
            r["patterns_tried"] = len(aborted)
            peer_rows.append(r)
    return {
        "benchmark": "round",
        "quick": quick,
        "dropout": 0.05,
        "drop_phase": Phase.MASKED_INPUT.value,
        "protocol": "secagg+ (semi-honest), default (k, t) from the parameter finder",
        "runtime": "secagg.runtime RoundDriver, processes pool: clients in 2 processes, "
                   "server here",
        "cells": cells,
        "skipped": list(SKIPPED) if not quick else [],
        "peer_shaped": peer_rows,
        "peer": PEER,
        "all_exact": all(c["exact"] for c in cells),
        "machine": machine_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    rows = []
    for c in result["cells"]:
        rows.append([
            c["clients"], f"{c['elements']:.0e}", f"{c['neighbors']}/{c['threshold']}",
            c["wall_s"], c["client_cpu_per_client_s"] * 1e3,
            c["client_cpu_mean_s"]["masked_input"] * 1e3, c["server_cpu_total_s"],
            c["bytes_per_client_upload"] / 1e3, c["expansion"],
            "n/a" if c["server_peak_rss_mb"] is None else c["server_peak_rss_mb"], c["exact"],
        ])
    table = markdown_table(
        ["n", "m", "k/t", "wall s", "client CPU ms/client", "of which masked input ms",
         "server CPU s", "upload kB/client", "expansion", "server peak MB", "exact"], rows)
    text = (f"## round\n\nSecAgg+ semi-honest, {result['dropout']:.0%} dropped before "
            f"masked input, clients in 2 processes\n\n{table}")
    if result["peer_shaped"]:
        prow = [[p["setting"], p["drop_phase"], f"{p['abort_rate']:.0%}", p["exact"],
                 p["cpu_total_s"], sum(p["client_cpu_total_s"].values()),
                 p["server_cpu_total_s"], p["wall_s"]]
                for p in result["peer_shaped"]]
        text += "\n\nPeer-shaped rounds (n=100, m=10^6, 10% dropped), ours measured here:\n\n"
        text += markdown_table(["setting", "dropped before",
                                f"aborts ({_PATTERNS} patterns)", "exact", "CPU s total",
                                "client CPU s", "server CPU s", "wall s"], prow)
        pr = result["peer"]
        text += (f"\n\nPeer ({pr['system']}, {pr['source']}): ~{pr['k3_t2_cpu_s']} s client + "
                 f"server CPU at k=3, t=2; ~{pr['k17_t8_after_masked_input_cpu_s']} s at k=17, "
                 f"t=8 with 10% dropped after masked input; masks "
                 f"{pr['mask_vs_aes_limit_slowdown']} slower than the AES limit.")
    return text
