"""ClientApp of the example: Flower's NumPyClient, with secagg's SecAgg+ mod.

The only line that differs from Flower's own secure-aggregation example is the
import of ``secaggplus_mod``.
"""

from __future__ import annotations

from typing import Any

from flwr.client import NumPyClient
from flwr.clientapp import ClientApp

from flower_app import task
from secagg.integrations.flower import secaggplus_mod


class LinearClient(NumPyClient):
    def __init__(self, pid: int, num: int) -> None:
        self.x, self.y = task.partition(pid, num)

    def fit(self, parameters: Any, config: Any) -> Any:
        new = task.train(parameters, self.x, self.y)
        return new, len(self.y), {}

    def evaluate(self, parameters: Any, config: Any) -> Any:
        return task.loss(parameters, self.x, self.y), len(self.y), {}


def client_fn(context: Any) -> Any:
    pid = int(context.node_config.get("partition-id", 0))
    num = int(context.node_config.get("num-partitions", 1))
    return LinearClient(pid, num).to_client()


app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
