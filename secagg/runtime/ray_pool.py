"""The Ray pool: a few actors (about one per CPU), each hosting a shard of clients.

* Ray actors are processes (hundreds of ms each to start): a pool starts
  ``workers`` of them, spread over the cluster's nodes, and each hosts many
  sans-IO clients.
* The client recipe (config, input vectors, identity seeds) goes into the object
  store once (``ray.put``); every actor reads it from there (zero-copy numpy on
  its node).  Each client's keys are generated inside its actor.
* A step sends each actor its clients' messages in sub-batches and collects the
  replies with ``ray.wait(..., timeout=remaining)``: replies stream into the
  server as they arrive; what has not arrived by the deadline is a dropout.
* An actor that dies (killed, node lost) takes its clients with it: they are
  dropouts of the phase in which it died and of every later one.

``address=None`` starts a fresh local Ray on this machine (``ray.init("local")``,
so a stale ``ray_current_cluster`` file never matters); ``address="host:port"``
(or ``ray://host:port``) joins a cluster — checked for reachability first, so an
unreachable address fails within seconds instead of hanging.

Needs the ``ray`` extra (``pip install 'secagg[ray]'``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from secagg._extras import require
from secagg.errors import ParameterError
from secagg.runtime.parties import ClientFactory, ClientParty
from secagg.runtime.pool import EngineError, Reply, _step, remaining

__all__ = ["RayPool", "check_reachable", "connect"]

#: Client messages per actor call (replies stream back per call).
_CALL = 16
#: Seconds to wait for an address to accept a TCP connection.
_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the actors to come up.
_READY_TIMEOUT = 120.0


def check_reachable(address: str, timeout: float = _CONNECT_TIMEOUT) -> None:
    """Raise :class:`EngineError` unless ``address`` (``host:port`` or
    ``ray://host:port``) accepts a TCP connection within ``timeout`` seconds.

    Raises
    ------
    ParameterError
        If the address is not ``host:port``.
    EngineError
        If nothing answers there.
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ParameterError(f"a Ray address is host:port or ray://host:port, not {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` or start a fresh local Ray (``None``);
    return whether this call started the connection (the caller then shuts it down).
    A process already connected keeps its connection.

    Raises
    ------
    MissingExtraError
        Without the ``ray`` extra.
    ParameterError
        If this process is connected to another cluster, or a malformed address.
    EngineError
        If the cluster cannot be reached or Ray does not start.
    """
    ray = require("ray", "ray")
    if ray.is_initialized():
        joined = ray.get_runtime_context().gcs_address
        if address is not None and not address.startswith("ray://") and address != joined:
            raise ParameterError(f"this process is already connected to Ray at {joined}, "
                                 f"not {address}")
        return False
    if address is not None:
        check_reachable(address)
    try:
        ray.init(address=address if address is not None else "local",
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise EngineError(f"cannot start or join Ray ({address or 'local'}): {exc}") from None
    return True


class _Shard:
    """The actor: hosts a shard of clients (created from the shared recipe)."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._parties: dict[int, ClientParty] = {}

    def where(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def step(self, items: list[tuple[int, bytes | None]]) -> list[Reply]:
        out = []
        for u, data in items:
            party, reply = _step(self._parties.get(u), u, data, self._factory.make)
            if party is not None:
                self._parties[u] = party
            out.append(reply)
        return out


class RayPool:
    """Clients on Ray actors.

    Parameters
    ----------
    factory:
        The client recipe (put in the object store once).
    workers:
        Actors (default: the cluster's CPU count).
    address:
        A cluster to join; ``None`` starts a local Ray (shut down by :meth:`close`).
    spread:
        Place the actors with Ray's SPREAD strategy (over every node).

    Raises
    ------
    MissingExtraError
        Without the ``ray`` extra.
    EngineError
        If the cluster cannot be reached or the actors do not start.
    """

    engine = "ray"
    exchange_in_chunks = True  #: several exchange() calls per phase are fine

    def __init__(self, factory: ClientFactory, *, workers: int | None = None,
                 address: str | None = None, spread: bool = True) -> None:
        ray = require("ray", "ray")
        self._ray = ray
        self._owns_ray = False
        self._owns_actors = True
        if workers is not None and (isinstance(workers, bool) or workers < 1):
            raise ParameterError("workers must be >= 1")
        self._owns_ray = connect(address)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.workers = workers if workers is not None else max(1, cpus)
            recipe = ray.put(factory)
            opts: dict[str, Any] = {"num_cpus": 1 if self.workers <= cpus else 0,
                                    "max_restarts": 0, "max_task_retries": 0}
            if spread:
                opts["scheduling_strategy"] = "SPREAD"
            actor_cls = ray.remote(_Shard)
            self.actors = [actor_cls.options(**opts).remote(recipe) for _ in range(self.workers)]
            try:
                where = ray.get([a.where.remote() for a in self.actors], timeout=_READY_TIMEOUT)
            except ray.exceptions.GetTimeoutError:
                raise EngineError(f"{self.workers} Ray actors did not start within "
                                  f"{_READY_TIMEOUT:.0f} s (cluster CPUs: {cpus})") from None
        except BaseException:
            self.close()
            raise
        #: actor index -> (node id, pid)
        self.placement: list[tuple[str, int]] = [(str(w[0]), int(w[1])) for w in where]
        self._owner: dict[int, int] = {}
        self._dead: set[int] = set()

    @classmethod
    def hosted(cls, actors: Sequence[Any], owner: Mapping[int, int]) -> RayPool:
        """A pool over actors someone else started and keeps (e.g. the training
        engine's, which hold the clients' updates): each has :meth:`_Shard.step`
        and a factory already set; ``owner`` says which actor hosts which client.
        :meth:`close` leaves the actors and the Ray connection alone."""
        ray = require("ray", "ray")
        if not actors or any(not 0 <= w < len(actors) for w in owner.values()):
            raise ParameterError("owner must map clients to indices of actors")
        pool = cls.__new__(cls)
        pool._ray = ray
        pool._owns_ray = False
        pool._owns_actors = False
        pool.workers = len(actors)
        pool.actors = list(actors)
        pool.placement = []
        pool._owner = dict(owner)
        pool._dead = set()
        return pool

    def owner(self, client: int) -> int:
        """The actor index hosting ``client`` (once started)."""
        return self._owner[client]

    def node_of(self, client: int) -> str:
        return self.placement[self._owner[client]][0]

    @property
    def dead_workers(self) -> frozenset[int]:
        return frozenset(self._dead)

    def start(self, clients: Sequence[int], *, deadline: float | None) -> Iterator[Reply]:
        for i, u in enumerate(clients):
            self._owner.setdefault(u, i % self.workers)
        return self._run([(u, None) for u in clients], deadline)

    def exchange(self, batch: Mapping[int, bytes], *, deadline: float | None
                 ) -> Iterator[Reply]:
        return self._run([(u, d) for u, d in batch.items() if u in self._owner], deadline)

    def _run(self, items: list[tuple[int, bytes | None]], deadline: float | None
             ) -> Iterator[Reply]:
        ray = self._ray
        per: list[list[tuple[int, bytes | None]]] = [[] for _ in self.actors]
        for u, data in items:
            w = self._owner[u]
            if w not in self._dead:
                per[w].append((u, data))
        refs: dict[Any, int] = {}
        for w, lst in enumerate(per):
            for a in range(0, len(lst), _CALL):
                refs[self.actors[w].step.remote(lst[a:a + _CALL])] = w
        del per, items
        pending = list(refs)
        while pending:
            timeout = remaining(deadline)
            if timeout == 0.0:
                break
            ready, pending = ray.wait(pending, num_returns=1, timeout=timeout)
            if not ready:
                break  # deadline passed: the rest are dropouts of this phase
            ref = ready[0]
            w = refs.pop(ref)
            try:
                replies = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                    ray.exceptions.ObjectLostError):
                self._dead.add(w)
                continue
            del ref
            yield from replies

    def close(self) -> None:
        ray = self._ray
        for a in getattr(self, "actors", []) if self._owns_actors else []:
            with contextlib.suppress(Exception):  # best effort: the actor may be gone
                ray.kill(a)
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
