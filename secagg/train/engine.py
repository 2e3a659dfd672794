"""Where the sampled clients of a training round run: ``--engine ray``.

With the default in-process engine the loop trains every sampled client in this
process and hands the updates to the aggregator.  :class:`RayTrainEngine` runs
each client's whole device side on Ray actors instead, as a deployment would:

* a few actors (about one per CPU, spread over the cluster's nodes) each host a
  fixed shard of the clients (client ``c`` on actor ``(c - 1) % workers``): its
  copy of the model and the clients' token streams are built once, inside the
  actor;
* per round the global weights go into the object store once (``ray.put``) and
  every actor trains its sampled clients from them (the same
  :meth:`~secagg.train.loop.FederatedTrainer.local_update` as in process, so the
  same seed gives the same deltas);
* the update never leaves its actor: the actor encodes it with the aggregation
  scheme's client half (quantization randomness from the same labelled stream
  as in process) and hosts the client's masking party; the server process runs
  the :class:`~secagg.runtime.driver.RoundDriver` over a
  :class:`~secagg.runtime.ray_pool.RayPool` of these actors and sees only wire
  bytes.  Only scalars come back besides: each client's mean training loss, the
  L2 norm of its update (a simulation-side diagnostic, as in process) and the
  fraction of coordinates its client half clipped.

Same seed, same protocol randomness: with a seeded
:class:`~secagg.primitives.rand.InsecureDeterministicRandom` the actors derive
exactly the streams the in-process path uses, so the round's transcript, the sum
and the final model are the same as with ``--engine inprocess``.  Unseeded
sources (the default, secret) are replaced in the actors by ``os.urandom``.

Needs the ``ray`` extra.  Schemes wired here: ``plain``, ``secagg`` / ``secagg+``
and ``lightsecagg`` (its client parties run on the actors the same way); HE,
``--dp`` and DP-SGD in local training refuse ``--engine ray`` with a
:class:`~secagg.errors.ParameterError` before anything starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.errors import ParameterError
from secagg.lightsecagg.config import LightSecAggConfig
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom, RandomSource
from secagg.runtime.api import (
    SumResult,
    build_config,
    drop_schedule,
    masking_sum_result,
    run_lightsecagg_round,
    run_masking_round,
)
from secagg.runtime.driver import Listener, RoundOutcome
from secagg.runtime.parties import (
    ArrayInputs,
    LightSecAggClientFactory,
    MaskingClientFactory,
    RngRecipe,
)
from secagg.runtime.pool import EngineError
from secagg.runtime.ray_pool import RayPool, _Shard, connect

__all__ = ["TRAIN_ENGINES", "RayTrainEngine", "recipe_of"]

#: The engines ``secagg train --engine`` accepts.
TRAIN_ENGINES = ("inprocess", "ray")
#: Seconds to wait for the actors to build their model and data.
_READY_TIMEOUT = 300.0


def recipe_of(rng: RandomSource | None) -> RngRecipe | None:
    """The picklable recipe an actor derives ``rng``'s children from: a seeded
    source's (seed, label) — the very streams of the in-process path — or, for a
    secret source that cannot be shipped (``AesCtrRandom``), ``os.urandom``."""
    if rng is None:
        return None
    if isinstance(rng, InsecureDeterministicRandom):
        return RngRecipe.of(rng)
    return RngRecipe(None, "")


class _TrainShard(_Shard):
    """The actor: a model and the token streams of its clients; per round it trains
    its sampled clients, keeps their updates, encodes them with the client half and
    hosts their masking parties (:meth:`_Shard.step`)."""

    def __init__(self, shared: tuple[Any, Any], device: str, threads: int) -> None:
        from secagg.train.loop import FederatedTrainer

        config, corpus = shared
        if threads > 0:
            require("torch", "train").set_num_threads(threads)
        # sampling happens on the server; this trainer only trains (its rng is unused)
        self.trainer = FederatedTrainer(
            config, corpus=corpus, device=device,
            sampling_rng=InsecureDeterministicRandom(b"\0" * 16, "unused", warn=False),
        )
        self._updates: dict[int, npt.NDArray[np.float64]] = {}
        self._encoded: dict[int, npt.NDArray[Any]] = {}
        self._factory: Any = None
        self._parties: dict[int, Any] = {}

    def ready(self) -> tuple[str, int]:
        return self.where()

    def begin(self, round: int, vector: npt.NDArray[np.float64]) -> bool:
        """Start round ``round`` from the global weights ``vector`` (drops what the
        last round kept)."""
        self._updates, self._encoded, self._factory, self._parties = {}, {}, None, {}
        t = self.trainer
        t.global_vector = np.asarray(vector, dtype=np.float64)
        t._round = round
        return True

    def train_client(self, client: int) -> tuple[int, float, float]:
        """Train ``client`` from this round's weights; keep its update here; return
        (client, mean loss, update norm)."""
        delta, loss = self.trainer.local_update(client)
        self._updates[client] = delta
        return client, loss, float(np.linalg.norm(delta))

    def encode(self, half: Any, recipe: RngRecipe | None, label: str) -> dict[int, float]:
        """Encode every kept update with the client half (randomness
        ``recipe.child(f"{label}/<id>")``); drop the float updates; return each
        client's clipped fraction."""
        clipped = {}
        for c in sorted(self._updates):
            x = self._updates.pop(c)
            rng = recipe.child(f"{label}/{c}").build() if recipe is not None else None
            self._encoded[c] = half.encode(x, rng)
            clipped[c] = float(half.clipped_fraction(x))
        return clipped

    def payloads(self, half: Any, clients: Sequence[int]) -> dict[int, bytes]:
        """The plain scheme's uploads (INSECURE baseline: the update in the clear)."""
        return {c: half.payload(self._encoded[c]) for c in clients if c in self._encoded}

    def set_factory(self, factory: MaskingClientFactory | LightSecAggClientFactory) -> bool:
        """This round's client recipe, with the inputs kept here."""
        factory.inputs = ArrayInputs(self._encoded)
        self._factory, self._parties = factory, {}
        return True


class _Observe(Listener):
    def __init__(self, observer: Any) -> None:
        self._observer = observer

    def on_frame(self, direction: str, client: int, data: bytes | memoryview) -> None:
        self._observer(direction, client, bytes(data))


class RayTrainEngine:
    """Training clients on Ray actors (see the module docstring).

    Parameters
    ----------
    config, corpus:
        The run's :class:`~secagg.train.loop.TrainConfig` and its corpus (put in
        the object store once; each actor builds its model from them).
    workers:
        Actors (default: the cluster's CPUs, at most ``config.per_round``).
    address:
        A cluster to join (``host:port`` or ``ray://...``); ``None`` starts a fresh
        local Ray, shut down by :meth:`close`.
    device, threads:
        Where the actors train (``cpu`` / ``cuda``), and torch threads per actor
        (0: torch's default).

    Raises
    ------
    MissingExtraError
        Without the ``ray`` extra.
    EngineError
        Unreachable cluster, or actors that do not come up.
    """

    engine = "ray"

    def __init__(self, config: Any, corpus: Any, *, workers: int | None = None,
                 address: str | None = None, device: str = "cpu", threads: int = 1) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ParameterError("workers must be an integer >= 1")
        ray = require("ray", "ray")
        self._ray = ray
        self.actors: list[Any] = []
        self._owns_ray = connect(address)
        try:
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            self.workers = workers if workers is not None else min(cpus, config.per_round)
            shared = ray.put((config, corpus))
            opts: dict[str, Any] = {"num_cpus": 1 if self.workers <= cpus else 0,
                                    "max_restarts": 0, "max_task_retries": 0,
                                    "scheduling_strategy": "SPREAD"}
            cls = ray.remote(_TrainShard)
            self.actors = [cls.options(**opts).remote(shared, device, threads)
                           for _ in range(self.workers)]
            try:
                where = ray.get([a.ready.remote() for a in self.actors],
                                timeout=_READY_TIMEOUT)
            except ray.exceptions.GetTimeoutError:
                raise EngineError(f"{self.workers} training actors did not start within "
                                  f"{_READY_TIMEOUT:.0f} s") from None
            except ray.exceptions.RayActorError as exc:
                raise EngineError(f"a training actor failed to start: {exc}") from None
        except BaseException:
            self.close()
            raise
        #: actor index -> (node id, pid)
        self.placement = [(str(w[0]), int(w[1])) for w in where]

    def owner(self, client: int) -> int:
        """The actor that hosts ``client`` (its data and, each round, its update)."""
        return (client - 1) % self.workers

    def _by_actor(self, clients: Collection[int]) -> dict[int, list[int]]:
        per: dict[int, list[int]] = {}
        for c in sorted(clients):
            per.setdefault(self.owner(c), []).append(c)
        return per

    def _get(self, refs: list[Any]) -> list[Any]:
        ray = self._ray
        try:
            return list(ray.get(refs))
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            raise EngineError(f"a training actor died: {exc}") from None

    def train(self, round: int, vector: npt.NDArray[np.float64], clients: Collection[int],
              *, progress: Callable[[int, int], None] | None = None,
              ) -> dict[int, tuple[float, float]]:
        """Local training of ``clients`` from ``vector`` (shipped once through the
        object store); returns client -> (mean loss, update norm).  The updates stay
        on the actors.  One task per client (an actor runs its own in order), so
        ``progress(done, total)`` is called as each one finishes.

        Raises
        ------
        EngineError
            If an actor dies (the round cannot be trained).
        """
        ray = self._ray
        ref = ray.put(np.ascontiguousarray(vector, dtype=np.float64))
        per = self._by_actor(clients)
        self._get([a.begin.remote(round, ref) for a in self.actors])  # every actor: no stale state
        pending = [self.actors[w].train_client.remote(c) for w, cs in per.items() for c in cs]
        total = len(pending)
        out: dict[int, tuple[float, float]] = {}
        if progress is not None:
            progress(0, total)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for c, loss, norm in self._get(ready):
                out[c] = (loss, norm)
            if progress is not None:
                progress(len(out), total)
        return out

    def encode(self, half: Any, rng: RandomSource | None, label: str) -> dict[int, float]:
        """Every actor encodes its kept updates with ``half`` (client ``c`` draws from
        ``rng.child(f"{label}/{c}")``); returns client -> clipped fraction."""
        recipe = recipe_of(rng)
        out: dict[int, float] = {}
        for part in self._get([a.encode.remote(half, recipe, label) for a in self.actors]):
            out.update(part)
        return out

    def payloads(self, half: Any, clients: Collection[int]) -> dict[int, bytes]:
        """The plain scheme's uploads of ``clients`` (INSECURE baseline)."""
        out: dict[int, bytes] = {}
        for part in self._get([self.actors[w].payloads.remote(half, cs)
                               for w, cs in self._by_actor(clients).items()]):
            out.update(part)
        return out

    def secure_sum(
        self,
        clients: Collection[int],
        *,
        length: int,
        bits: int,
        protocol: ProtocolKind,
        neighbors: int | None,
        threshold: int | None,
        dropouts: Mapping[Phase, Collection[int]] | None,
        rng: RandomSource,
        observer: Any = None,
    ) -> SumResult:
        """:func:`secagg.runtime.secure_sum` of the encoded updates kept on the
        actors, whose masking client parties run there: the same config and client
        randomness as in process (``rng.fork("secure-sum")``), the RoundDriver here."""
        security = SecurityMode.SEMI_HONEST
        src = rng.fork("secure-sum")
        cfg, idkeys = build_config(clients, bits=bits, length=length, protocol=protocol,
                                   security=security, neighbors=neighbors,
                                   threshold=threshold, rng=src)
        recipe = recipe_of(src)
        assert recipe is not None
        factory = MaskingClientFactory(
            config=cfg, inputs=ArrayInputs({}), rng=recipe,
            identity={u: k.private_bytes() for u, k in idkeys.items()},
        )
        self._get([a.set_factory.remote(factory) for a in self.actors])
        pool = RayPool.hosted(self.actors, {c: self.owner(c) for c in cfg.clients})
        out = run_masking_round(
            factory, pool=pool, dropouts=drop_schedule(dropouts, security),
            listener=_Observe(observer) if observer is not None else None,
            unmask_threads=min(2, os.cpu_count() or 1),
        )
        # an actor that died mid-round took its clients with it: dropouts of that phase
        # (the round is exact over the survivors or aborts); the next train() fails
        return masking_sum_result(out, cfg)

    def lightsecagg_round(
        self,
        config: LightSecAggConfig,
        recipe: RngRecipe,
        *,
        dropouts: Mapping[Phase, Collection[int]] | None,
        observer: Any = None,
    ) -> RoundOutcome:
        """One LightSecAgg round of ``config`` over the encoded updates kept on the
        actors, whose client parties run there (client ``u``'s secrets from
        ``recipe.child("lightsecagg-client/<u>")``, as in process); the RoundDriver
        runs here."""
        if not isinstance(config, LightSecAggConfig):
            raise ParameterError("config must be a LightSecAggConfig")
        factory = LightSecAggClientFactory(config=config, inputs=ArrayInputs({}), rng=recipe)
        self._get([a.set_factory.remote(factory) for a in self.actors])
        pool = RayPool.hosted(self.actors, {c: self.owner(c) for c in config.clients})
        return run_lightsecagg_round(
            factory, pool=pool, dropouts=drop_schedule(dropouts, None),
            listener=_Observe(observer) if observer is not None else None,
            unmask_threads=min(2, os.cpu_count() or 1),
        )

    def close(self) -> None:
        ray = self._ray
        for a in self.actors:
            with contextlib.suppress(Exception):  # best effort: the actor may be gone
                ray.kill(a)
        self.actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
