"""``secagg bench flower``: Flower 1.42's own SecAgg+ against ours, same round, same grid.

One round of FedAvg over ``n`` Flower nodes with ``m`` parameters each, run twice in
this process through the same :class:`~secagg.integrations.flower.InProcessGrid`
(every message serialized with Flower's protobuf serde, each node with its own
Context): once with ``flwr.client.mod.secaggplus_mod`` + ``flwr.server.workflow.
SecAggPlusWorkflow``, once with ``secagg.integrations.flower``'s pair, both built
with the same arguments (``num_shares``, ``reconstruction_threshold``,
``clipping_range``, ``quantization_range``, ``max_weight``).  The same 10% of the
nodes go silent after sending their masked input, so both servers rebuild those
nodes' pairwise masks.  Measured: CPU seconds inside the ClientApps (mods
included) and in the server (the caller's CPU minus the clients' and the
serialization's), ``ratio`` = Flower / ours, and ``exact``: our server's integer
sum equals the sum of the survivors' quantized inputs.  The inputs lie on the
quantization grid (half-integers with ``clipping_range = (quantization_range - 1)/2``,
every weight ``max_weight``), so both quantizers are lossless and the exact sum is
known here without reading any client's state.

Second part: the abort rate of each over random 10% dropout patterns at Flower's
example settings (``num_shares=3, reconstruction_threshold=2``: Flower's clients
then have 2 neighbors, ours too), and of ours with its own parameter finder
(``num_shares=None``).  Whether a round aborts does not depend on ``m``, so these
rounds use a small ``m``.

Full: n=100, m=10^6, num_shares=17, threshold 8; 20 patterns at n=100.
``--quick``: n=20, m=10^4, num_shares=9, threshold 4; 3 patterns at n=20.

Whether a round of the timed pair completes depends on the random neighbor graph
as well as on the dropouts; ``flower_completed`` / ``ours_completed`` say so, and
``exact`` is false for a round that aborted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from secagg._extras import require
from secagg.bench.common import machine_info, markdown_table
from secagg.primitives.rand import InsecureDeterministicRandom, randbelow

__all__ = ["run"]

_VALUE_BITS = 22
_MAX_WEIGHT = 1000
#: (result key, implementation, num_shares, reconstruction_threshold) for the abort rates
_ABORT_SETTINGS: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("flower", "flower", 3, 2),
    ("ours", "ours", 3, 2),
    ("ours_default", "ours", None, None),
)


def _sample(n: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices below ``n`` (a seeded, non-secret choice)."""
    rng = InsecureDeterministicRandom(seed, "bench/flower/dropouts", warn=False)
    idx = list(range(n))
    for i in range(count):
        j = i + randbelow(rng, n - i)
        idx[i], idx[j] = idx[j], idx[i]
    return sorted(idx[:count])


def _offset(nid: int) -> float:
    return float(nid % 7)


def _one_round(
    impl: str, *, n: int, m: int, num_shares: int | None, threshold: int | None,
    dropped: list[int],
) -> dict[str, Any]:
    """One FedAvg round through an InProcessGrid; CPU split and the outcome."""
    from flwr.app import Context, RecordDict
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod as flwr_mod
    from flwr.clientapp import ClientApp
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow
    from flwr.server.workflow import SecAggPlusWorkflow as FlwrWorkflow

    from secagg.integrations.flower import InProcessGrid, SecAggPlusWorkflow, secaggplus_mod

    base = ((np.arange(m) % 1000) - 500 + 0.5).astype(np.float32)  # half-integers: on the grid

    class _Client(NumPyClient):
        def __init__(self, nid: int) -> None:
            self.nid = nid

        def fit(self, parameters: Any, config: Any) -> Any:
            return [base + np.float32(_offset(self.nid))], _MAX_WEIGHT, {}

    def client_fn(context: Any) -> Any:
        return _Client(int(context.node_id)).to_client()

    nodes = [1000 + 7919 * i for i in range(n)]
    silent = {nodes[i] for i in dropped}
    app = ClientApp(client_fn=client_fn, mods=[flwr_mod if impl == "flower" else secaggplus_mod])
    # silent from the unmasking request on: Flower's 4th message, ours 5th (SecAgg+ v2
    # draws the graph seed jointly in a phase of its own)
    after = 3 if impl == "flower" else 4
    grid = InProcessGrid(app, nodes, drop=lambda nid, i: nid in silent and i >= after)
    q = 1 << _VALUE_BITS
    common: dict[str, Any] = {
        "max_weight": float(_MAX_WEIGHT),
        "clipping_range": (q - 1) / 2,
        "quantization_range": q,
    }
    workflow: Any
    if impl == "flower":
        assert num_shares is not None and threshold is not None
        workflow = FlwrWorkflow(num_shares, threshold, **common)
    else:
        workflow = SecAggPlusWorkflow(num_shares, threshold, **common)
    init = [np.zeros(m, dtype=np.float32)]
    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
        initial_parameters=ndarrays_to_parameters(init), accept_failures=True,
    )
    ctx = LegacyContext(
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=1), strategy=strategy,
    )
    loggers = [logging.getLogger(name) for name in ("flwr", "secagg.flower")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # an aborted round is data here, not news
        lg.setLevel(logging.CRITICAL + 10)
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        DefaultWorkflow(fit_workflow=workflow)(grid, ctx)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)
    from flwr.common import parameters_to_ndarrays
    from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters

    out = parameters_to_ndarrays(
        arrayrecord_to_parameters(ctx.state.array_records["parameters"], keep_input=True)
    )[0]
    completed = bool(np.any(out != 0))
    expected_mean = base.astype(np.float64) + np.mean([_offset(v) for v in nodes])
    res: dict[str, Any] = {
        "completed": completed,
        "client_cpu_s": round(grid.client_cpu_s, 3),
        "server_cpu_s": round(cpu - grid.client_cpu_s - grid.transport_cpu_s, 3),
        "cpu_s": round(cpu - grid.transport_cpu_s, 3),
        "transport_cpu_s": round(grid.transport_cpu_s, 3),
        "wall_s": round(wall, 3),
        "mean_abs_error": float(np.max(np.abs(out - expected_mean))) if completed else None,
    }
    if impl == "ours":
        rep = workflow.last_round
        res["neighbors"], res["threshold"], res["bits"] = rep.neighbors, rep.threshold, rep.bits
        if completed and rep.total is not None:
            half = 1 << (_VALUE_BITS - 1)
            ids = rep.survivors
            want = np.zeros(m + 1, dtype=np.int64)
            for v in ids:
                want[:m] += np.floor(base).astype(np.int64) + half + int(_offset(v))  # j + 2^(vb-1)
            want[m] = len(ids) * (q - 1)
            want %= 1 << rep.bits
            res["exact"] = bool(np.array_equal(rep.total.astype(np.int64), want))
            res["survivors"] = len(ids)
    return res


def run(quick: bool) -> dict[str, Any]:
    """Both implementations on the same round, then the abort rates.

    Raises
    ------
    MissingExtraError
        ``flwr`` is not installed (extra ``flower``).
    """
    require("flwr.app", "flower")
    if quick:
        n, m, shares, t, patterns, small_m = 20, 10**4, 9, 4, 3, 64
    else:
        n, m, shares, t, patterns, small_m = 100, 10**6, 17, 8, 20, 64
    drop = max(1, n // 10)
    dropped = _sample(n, drop, seed=1)
    flower = _one_round("flower", n=n, m=m, num_shares=shares, threshold=t, dropped=dropped)
    ours = _one_round("ours", n=n, m=m, num_shares=shares, threshold=t, dropped=dropped)
    aborts: dict[str, int] = {"flower": 0, "ours": 0, "ours_default": 0}
    for p in range(patterns):
        pat = _sample(n, drop, seed=100 + p)
        for key, impl, k, tt in _ABORT_SETTINGS:
            r = _one_round(impl, n=n, m=small_m, num_shares=k, threshold=tt, dropped=pat)
            aborts[key] += 0 if r["completed"] else 1
    ratio = flower["cpu_s"] / ours["cpu_s"] if ours["cpu_s"] > 0 else float("inf")
    return {
        "clients": n,
        "elements": m,
        "num_shares": shares,
        "reconstruction_threshold": t,
        "dropped_after_masking": drop,
        "flower_cpu_s": flower["cpu_s"],
        "ours_cpu_s": ours["cpu_s"],
        "ratio": round(ratio, 2),
        "exact": bool(ours.get("exact", False)),
        "flower_completed": flower["completed"],
        "ours_completed": ours["completed"],
        "flower": flower,
        "ours": ours,
        "abort_patterns": patterns,
        "abort_settings": "num_shares=3, reconstruction_threshold=2 (2 neighbors); "
        "ours_default: secagg's parameter finder",
        "flower_abort_rate": aborts["flower"] / patterns,
        "ours_abort_rate": aborts["ours"] / patterns,
        "ours_default_abort_rate": aborts["ours_default"] / patterns,
        "quick": quick,
        "machine": machine_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """The comparison as two small tables."""
    f, o = result["flower"], result["ours"]
    rows = [
        ["Flower 1.42 SecAgg+", f["client_cpu_s"], f["server_cpu_s"], f["cpu_s"], "-"],
        ["secagg (this package)", o["client_cpu_s"], o["server_cpu_s"], o["cpu_s"],
         result["exact"]],
    ]
    head = (
        f"## flower: n={result['clients']}, m={result['elements']}, num_shares="
        f"{result['num_shares']}, threshold {result['reconstruction_threshold']}, "
        f"{result['dropped_after_masking']} dropped after masking\n\n"
    )
    table = markdown_table(["implementation", "client CPU s", "server CPU s", "total CPU s",
                            "exact"], rows)
    aborts = markdown_table(
        ["abort rate over patterns", "value"],
        [["Flower (3, 2)", result["flower_abort_rate"]], ["ours (3, 2)", result["ours_abort_rate"]],
         ["ours (parameter finder)", result["ours_default_abort_rate"]]],
    )
    return f"{head}{table}\n\nratio (Flower / ours): {result['ratio']}\n\n{aborts}"
