"""``InProcessGrid``: a Flower ``Grid`` that runs a ``ClientApp`` for many nodes in this process.

For tests and benchmarks: every message is serialized and parsed with Flower's own
protobuf serde on the way in and out (as a real transport would), each node keeps
its own ``Context``, and an exception in the ClientApp becomes an error reply the
way Flower's runtime makes it.  ``drop(node_id, index)`` makes a node silent from
its ``index``-th message on (0-based count of the messages delivered to it): a
silent node simply does not appear among the replies, which is what a passed
``timeout`` looks like to the server (so no wall-clock time is spent waiting).

It also accounts CPU time: ``client_cpu_s`` inside the ClientApp (mods included),
``transport_cpu_s`` in serialization; the rest of the caller's CPU is the server's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from secagg.integrations.flower import _flwr

__all__ = ["InProcessGrid"]


class InProcessGrid(_flwr.Grid):
    """Deliver every message to ``client_app`` synchronously, one node at a time.

    Parameters
    ----------
    client_app:
        A ``flwr.clientapp.ClientApp`` (or any ``(message, context) -> message``).
    node_ids:
        The nodes of this grid (64-bit Flower node ids).
    drop:
        ``(node_id, index) -> bool``: ``True`` makes the node silent for that message
        and every later one.
    node_config:
        ``node_id -> node_config`` dict (e.g. a partition id) put into its Context.
    """

    def __init__(
        self,
        client_app: Callable[[Any, Any], Any],
        node_ids: Sequence[int],
        *,
        drop: Callable[[int, int], bool] | None = None,
        node_config: Callable[[int], dict[str, Any]] | None = None,
        run_id: int = 1,
    ) -> None:
        from flwr.common.serde import message_from_proto, message_to_proto
        from flwr.supercore.run import Run

        self._to_proto = message_to_proto
        self._from_proto = message_from_proto
        self._app = client_app
        self._drop = drop
        self._silent: set[int] = set()
        self._run = Run.create_empty(run_id)
        _ensure_task_identity(run_id)
        self.contexts: dict[int, Any] = {
            nid: _flwr.Context(
                run_id=run_id,
                node_id=nid,
                node_config=dict(node_config(nid)) if node_config else {},
                state=_flwr.RecordDict(),
                run_config={},
            )
            for nid in node_ids
        }
        self.delivered: dict[int, int] = dict.fromkeys(self.contexts, 0)
        self.client_cpu_s = 0.0
        self.transport_cpu_s = 0.0
        self.bytes_to_clients = 0
        self.bytes_from_clients = 0

    # -- Grid API --------------------------------------------------------------------------

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(
        self, content: Any, message_type: str, dst_node_id: int, group_id: str,
        ttl: float | None = None,
    ) -> Any:
        return _flwr.Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
        raise NotImplementedError("InProcessGrid only supports send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
        raise NotImplementedError("InProcessGrid only supports send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Any], *, timeout: float | None = None
    ) -> Iterable[Any]:
        replies = []
        for msg in messages:
            nid = msg.metadata.dst_node_id
            if nid not in self.contexts:
                continue
            index = self.delivered[nid]
            self.delivered[nid] = index + 1
            if nid in self._silent or (self._drop is not None and self._drop(nid, index)):
                self._silent.add(nid)
                continue
            msg.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            t0 = time.process_time()
            proto = self._to_proto(msg)
            self.bytes_to_clients += proto.ByteSize()
            ins = self._from_proto(proto)
            t1 = time.process_time()
            try:
                out = self._app(ins, self.contexts[nid])
            except Exception as exc:  # Flower's runtime turns this into an error reply
                reason = str(type(exc)) + ":<'" + str(exc) + "'>"
                out = _flwr.Message(_flwr.Error(code=2, reason=reason), reply_to=ins)
            t2 = time.process_time()
            out.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            proto = self._to_proto(out)
            self.bytes_from_clients += proto.ByteSize()
            replies.append(self._from_proto(proto))
            t3 = time.process_time()
            self.client_cpu_s += t2 - t1
            self.transport_cpu_s += (t1 - t0) + (t3 - t2)
        return replies


def _ensure_task_identity(run_id: int) -> None:
    """Outside Flower's ServerApp runtime nobody sets the process's task identity,
    which ``Message(...)`` reads; set it (to the SuperLink node) if it is unset."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in (("run_id", run_id), ("node_id", SUPERLINK_NODE_ID), ("task_id", 0)):
        if getattr(TaskIdentity, f"_{name}") is None:
            setattr(TaskIdentity, name, value)
