"""ServerApp of the example: FedAvg whose fit rounds run secagg's SecAggPlusWorkflow.

The only line that differs from Flower's own secure-aggregation example is the
import of ``SecAggPlusWorkflow``.  The centralized loss of every round is appended
to :data:`LOSSES` (and printed), so a caller can check that it falls.
"""

from __future__ import annotations

from typing import Any

from flwr.common import ndarrays_to_parameters
from flwr.server import ServerApp, ServerConfig
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow

from flower_app import task
from secagg.integrations.flower import SecAggPlusWorkflow

NUM_ROUNDS = 3
LOSSES: list[float] = []
WORKFLOWS: list[SecAggPlusWorkflow] = []
_X, _Y = task.test_set()


def evaluate(server_round: int, parameters: Any, config: Any) -> tuple[float, dict[str, Any]]:
    value = task.loss(parameters, _X, _Y)
    LOSSES.append(value)
    rep = WORKFLOWS[-1].last_round if WORKFLOWS and server_round > 0 else None
    note = ""
    if rep is not None:
        note = f" ({len(rep.survivors)} of {len(rep.sampled)} nodes in the sum)"
        if rep.aborted:
            note = f" (round aborted: {rep.abort_reason}; ignored replies: {rep.faults[:3]})"
    print(f"round {server_round}: centralized loss {value:.4f}{note}", flush=True)
    return value, {}


def make_workflow(**kw: Any) -> DefaultWorkflow:
    """The fit workflow: SecAgg+ with secagg's parameter finder unless told otherwise."""
    args: dict[str, Any] = {"num_shares": None, "reconstruction_threshold": None,
                            "clipping_range": 8.0, "timeout": 60.0}
    args.update(kw)
    WORKFLOWS.append(SecAggPlusWorkflow(**args))
    return DefaultWorkflow(fit_workflow=WORKFLOWS[-1])


def make_context(context: Any, num_nodes: int) -> LegacyContext:
    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=num_nodes,
        min_available_clients=num_nodes, evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters(task.initial_parameters()),
    )
    return LegacyContext(context, config=ServerConfig(num_rounds=NUM_ROUNDS), strategy=strategy)


app = ServerApp()


@app.main()
def main(grid: Any, context: Any) -> None:
    num_nodes = len(list(grid.get_node_ids()))
    make_workflow()(grid, make_context(context, num_nodes))
