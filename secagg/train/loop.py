"""The minimal FedAvg loop.

One round:

1. the server samples ``per_round`` of the ``clients`` (and, with ``dropout > 0``,
   which of them will stop replying before they send their update);
2. every sampled client loads the global trainable parameters, trains
   ``local_steps`` steps on its own text (AdamW or SGD, fresh optimizer state),
   and computes its update: the delta of its trainable parameters, flattened with
   :mod:`secagg.encoding.tensors`;
3. the updates go to the :class:`~secagg.train.aggregators.Aggregator`; the server
   receives only the mean over the survivors;
4. the server applies ``global += server_lr * mean`` (FedAvg) and measures the
   validation loss.

Steps 2 and 3's client side run in this process by default; with
``engine="ray"`` (:mod:`secagg.train.engine`) each sampled client trains, encodes
its update with the scheme's client half and runs its protocol party on a Ray
actor, and only the server side (the driver, the server half) runs here — same
seed, same final model.

Round 0 is the initial model.  Everything non-secret (initial weights, batches,
client sampling, dropouts) is determined by ``seed``.  Secrets come from the
aggregator's :class:`~secagg.primitives.rand.RandomSource` only (and, with
sample-level DP-SGD, :mod:`secagg.train.dpsgd_local`'s).

Every round also records what privacy cost and what it did to the update: the mean
norm of the clients' updates, under user-level DP the fraction of updates the L2
clip actually cut, the norm of the clipped mean (the signal) against the error the
release added (the noise), and the ε spent (:mod:`secagg.train.privacy`).  The
norms of individual updates are simulation-side diagnostics a real server never sees.
A run can be checkpointed after every round and resumed (:mod:`secagg.train.checkpoint`).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.errors import ParameterError
from secagg.primitives.rand import RandomSource, randbelow
from secagg.train.aggregators import AggregateResult, Aggregator
from secagg.train.batched import DEFAULT_CUDA_CHUNK, BatchedLocalTrainer, batching_obstacle
from secagg.train.checkpoint import Checkpoint
from secagg.train.checkpoint import save as ckpt_save
from secagg.train.data import FederatedCorpus, TokenStream, load_corpus, tokenize
from secagg.train.dpsgd_local import LocalDPSGD, LocalDPSGDConfig, check_delta
from secagg.train.engine import TRAIN_ENGINES, RayTrainEngine
from secagg.train.model import (
    LoadedModel,
    TinyLlamaSpec,
    build_model,
    load_trainable_vector,
    trainable_vector,
)
from secagg.train.privacy import NOISE_DOMINATES, UserDPAccountant, expected_noise_norm

__all__ = [
    "FederatedTrainer",
    "OptimizerKind",
    "RoundRecord",
    "TrainConfig",
    "TrainResult",
    "choose_dropouts",
    "dropout_count",
    "resolve_device",
    "run_training",
    "sample_clients",
]


class OptimizerKind(enum.Enum):
    """Local optimizer of a client."""

    ADAMW = "adamw"
    SGD = "sgd"


def _pos_int(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ParameterError(f"{name} must be a positive integer")


def _pos_float(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not (math.isfinite(v) and v > 0):
        raise ParameterError(f"{name} must be a positive finite number")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run (secrets aside).

    Parameters
    ----------
    rounds, clients, per_round, local_steps:
        FedAvg shape: ``per_round`` of ``clients`` train ``local_steps`` steps each round.
        ``clients=None`` with ``data_dir`` in the one-sub-folder-per-client layout takes
        the number of sub-folders (default 16 otherwise).
    batch_size, seq_len:
        Local batches of ``batch_size`` windows of ``seq_len`` tokens.
    lr, optimizer, server_lr:
        Client learning rate and optimizer; server step on the mean update.
    dropout:
        Fraction of the sampled clients that drop before sending
        (``round(dropout * per_round)`` of them, chosen at random each round).
    lora_rank:
        0 = full training; ``R > 0`` = LoRA adapters of rank ``R``.
    seed:
        Seeds torch (initial weights, batches) and the client/dropout sampling.
    model_path, data_dir:
        A local HF model directory / a folder of the user's text files.
    eval_windows:
        At most this many validation windows per evaluation.
    spec:
        Dimensions of the default tiny model.
    """

    rounds: int = 10
    clients: int | None = 16
    per_round: int = 8
    local_steps: int = 10
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    optimizer: OptimizerKind = OptimizerKind.ADAMW
    server_lr: float = 1.0
    dropout: float = 0.0
    lora_rank: int = 0
    seed: int = 0
    model_path: str | None = None
    data_dir: str | None = None
    eval_windows: int = 96
    spec: TinyLlamaSpec = field(default_factory=TinyLlamaSpec)

    def __post_init__(self) -> None:
        for name in ("rounds", "per_round", "local_steps", "batch_size", "seq_len", "eval_windows"):
            _pos_int(name, getattr(self, name))
        if self.clients is not None:
            _pos_int("clients", self.clients)
            if self.per_round > self.clients:
                raise ParameterError("per_round cannot exceed clients")
        _pos_float("lr", self.lr)
        _pos_float("server_lr", self.server_lr)
        if not isinstance(self.optimizer, OptimizerKind):
            raise ParameterError("optimizer must be an OptimizerKind")
        if not (isinstance(self.dropout, int | float) and 0.0 <= self.dropout < 1.0):
            raise ParameterError("dropout must be in [0, 1)")
        if round(self.dropout * self.per_round) >= self.per_round:
            raise ParameterError("dropout would drop every sampled client")
        if isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int):
            raise ParameterError("lora_rank must be an integer")
        if self.lora_rank < 0:
            raise ParameterError("lora_rank must be >= 0")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError("seed must be a non-negative integer")
        if not isinstance(self.spec, TinyLlamaSpec):
            raise ParameterError("spec must be a TinyLlamaSpec")
        if self.model_path is None and self.seq_len > self.spec.max_positions:
            raise ParameterError("seq_len exceeds the model's max_positions")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["optimizer"] = self.optimizer.value
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """What one round did (round 0: the initial model, nothing aggregated).

    ``train_loss`` is the mean local training loss of the sampled clients (``None``
    in round 0); ``clipped_fraction`` is the fraction of update coordinates that
    exceeded the clip range of the scheme's client half (each client measures its
    own; the aggregator reports the mean; 0 for schemes without a coordinate clip).

    Under user-level DP (``l2_clip`` set): ``l2_clipped_fraction`` is the fraction of
    the survivors' updates whose L2 norm exceeded the clip; ``signal_norm`` the norm
    of the mean of the clipped updates; ``noise_norm`` the norm of the error the
    release added to it (released mean − clipped mean: DP noise and rounding);
    ``expected_noise_norm`` the planned value of that error; ``noise_to_signal`` =
    ``expected_noise_norm / signal_norm`` and ``noise_dominates`` when it exceeds
    :data:`~secagg.train.privacy.NOISE_DOMINATES`; ``epsilon_round`` and
    ``epsilon_cumulative`` the user-level ε of this round and of all rounds so far
    (at the realised survivor count).  ``dpsgd_epsilon`` maps each sampled client to
    its sample-level DP-SGD ε so far.  ``update_norm`` is the norm of the applied
    mean (noise included).
    """

    round: int
    train_loss: float | None
    val_loss: float
    val_perplexity: float
    sampled: tuple[int, ...]
    dropped: tuple[int, ...]
    survivors: int
    aborted: bool
    abort_reason: str | None
    bytes_per_client_upload: float
    update_norm: float
    clipped_fraction: float
    phase_seconds: dict[str, float]
    mean_client_update_norm: float = 0.0
    l2_clip: float | None = None
    l2_clipped_fraction: float | None = None
    signal_norm: float | None = None
    noise_norm: float | None = None
    expected_noise_norm: float | None = None
    noise_to_signal: float | None = None
    noise_dominates: bool = False
    epsilon_round: float | None = None
    epsilon_cumulative: float | None = None
    dpsgd_epsilon: dict[int, float] | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["sampled"] = list(self.sampled)
        d["dropped"] = list(self.dropped)
        if self.dpsgd_epsilon is not None:
            d["dpsgd_epsilon"] = {str(k): v for k, v in self.dpsgd_epsilon.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RoundRecord:
        """Inverse of :meth:`to_json` (a checkpoint's records)."""
        kw = dict(d)
        kw["sampled"] = tuple(kw["sampled"])
        kw["dropped"] = tuple(kw["dropped"])
        if kw.get("dpsgd_epsilon") is not None:
            kw["dpsgd_epsilon"] = {int(k): float(v) for k, v in kw["dpsgd_epsilon"].items()}
        return cls(**kw)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainResult:
    """The run's records and the final model."""

    config: TrainConfig
    rounds: tuple[RoundRecord, ...]
    loaded: LoadedModel
    final_vector: npt.NDArray[np.float64]
    aggregator: str
    corpus_source: str
    seconds: float
    dpsgd_epsilon: dict[int, float] | None = None
    user_dp_epsilon: float | None = None
    engine: str = "inprocess"
    workers: int = 1
    local_training: str = "sequential"


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one
    is an error.

    Raises
    ------
    ParameterError
        Unknown device, or ``cuda`` requested where none is available.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ParameterError("device must be auto, cpu or cuda")
    torch = require("torch", "train")
    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        raise ParameterError("--device cuda: torch sees no CUDA device here")
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def sample_clients(rng: RandomSource, clients: int, k: int) -> tuple[int, ...]:
    """``k`` distinct ids from ``1..clients`` (partial Fisher–Yates), sorted."""
    if not 1 <= k <= clients:
        raise ParameterError("need 1 <= k <= clients")
    pool = list(range(1, clients + 1))
    for i in range(k):
        j = i + randbelow(rng, clients - i)
        pool[i], pool[j] = pool[j], pool[i]
    return tuple(sorted(pool[:k]))


def dropout_count(sampled: int, fraction: float) -> int:
    """How many of ``sampled`` clients :func:`choose_dropouts` drops: ``fraction *
    sampled`` rounded half up, and never all of them.

    The DP aggregators calibrate their noise to ``sampled - dropout_count(...)``
    survivors, so this is the one place the count is computed.
    """
    return min(math.floor(fraction * sampled + 0.5), sampled - 1)


def choose_dropouts(
    rng: RandomSource, sampled: tuple[int, ...], fraction: float
) -> tuple[int, ...]:
    """:func:`dropout_count` of ``sampled`` at random (never all of them)."""
    n = dropout_count(len(sampled), fraction)
    if n <= 0:
        return ()
    picks = sample_clients(rng, len(sampled), n)
    return tuple(sampled[i - 1] for i in picks)


class FederatedTrainer:
    """Holds the model, the clients' token streams and the global parameters.

    Parameters
    ----------
    config:
        The run's configuration.
    sampling_rng:
        Draws the clients of each round and the dropouts (not secret; pass an
        ``InsecureDeterministicRandom`` seeded from ``config.seed`` to reproduce a run).
    corpus:
        Override the corpus (default: from ``config.data_dir`` / ``pydoc_data``).
    device:
        ``cpu``, ``cuda`` or ``auto`` (:func:`resolve_device`): where local training
        and evaluation run; the aggregation always works on host vectors.
    local_dp, secret_rng:
        Sample-level DP-SGD for every client (:mod:`secagg.train.dpsgd_local`), with
        its sampling and noise from ``secret_rng``.
    client_batch:
        Clients trained together per ``torch.func.vmap`` call
        (:mod:`secagg.train.batched`); ``0``: one client at a time; ``None`` (auto):
        :data:`~secagg.train.batched.DEFAULT_CUDA_CHUNK` on CUDA, sequential on a
        CPU (where batching measured no faster).  Falls back to one client at a time
        when the steps cannot be batched (dropout, DP-SGD's insecure RNG); :attr:`local_training`
        says which ran.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        sampling_rng: RandomSource,
        corpus: FederatedCorpus | None = None,
        device: str = "cpu",
        local_dp: LocalDPSGDConfig | None = None,
        secret_rng: RandomSource | None = None,
        client_batch: int | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ParameterError("config must be a TrainConfig")
        if client_batch is not None and (isinstance(client_batch, bool)
                                         or not isinstance(client_batch, int)
                                         or client_batch < 0):
            raise ParameterError("client_batch must be an integer >= 0 (0: one at a time)")
        self.torch = require("torch", "train")
        self.config = config
        self.corpus = corpus or load_corpus(config.data_dir, config.clients)
        if config.per_round > self.corpus.num_clients:
            raise ParameterError(
                f"per_round={config.per_round} exceeds the {self.corpus.num_clients} clients"
            )
        self.loaded = build_model(
            lora_rank=config.lora_rank,
            model_path=config.model_path,
            spec=config.spec,
            seed=config.seed,
        )
        if config.model_path is not None and config.seq_len > self.loaded.max_positions:
            raise ParameterError("seq_len exceeds the model's max_position_embeddings")
        self.device = resolve_device(device)
        self.loaded.model.to(self.device)
        #: where the sampled clients run (set by :func:`run_training`; ``None``: here)
        self.engine: RayTrainEngine | None = None
        #: set by the caller (``on_start``) when the aggregator adds user-level DP
        self.user_dp: UserDPAccountant | None = None
        #: ``on_client(round, done, total)`` after each sampled client's local training
        #: (set by :func:`run_training`; progress display only)
        self.on_client: Callable[[int, int, int], None] | None = None
        tok = self.loaded.tokenizer
        self.streams: dict[int, TokenStream] = {
            i + 1: tokenize(pieces, tok) for i, pieces in enumerate(self.corpus.clients)
        }
        self.local_dp: LocalDPSGD | None = None
        if local_dp is not None:
            from secagg.primitives.rand import AesCtrRandom

            check_delta(local_dp.delta, {c: int(s.tokens.size) for c, s in self.streams.items()},
                        config.seq_len)
            self.local_dp = LocalDPSGD(
                local_dp, model=self.loaded.model,
                secret_rng=secret_rng if secret_rng is not None else AesCtrRandom(),
                seed=config.seed,
            )
        chunk = client_batch
        if chunk is None:
            chunk = DEFAULT_CUDA_CHUNK if self.device == "cuda" else 0
        self.batched: BatchedLocalTrainer | None = None
        #: how local training runs: "batched (...)" or "sequential[ (why)]"
        self.local_training = "sequential"
        if chunk > 0:
            why = batching_obstacle(self.loaded.model,
                                    insecure_rng=local_dp is not None and local_dp.insecure_rng)
            if why is None:
                self.batched = BatchedLocalTrainer(
                    self.loaded.model, self.loaded.layout.names,
                    optimizer=config.optimizer.value, lr=config.lr, chunk=chunk,
                )
                self.local_training = f"batched (torch.func.vmap, {chunk} clients per call)"
            else:
                self.local_training = f"sequential ({why})"
        val = tokenize(self.corpus.validation, tok)
        self._val_ids, self._val_labels = val.eval_windows(config.seq_len, config.eval_windows)
        self.global_vector = trainable_vector(self.loaded.model)
        self._sampling_rng = sampling_rng
        self._round = 0

    @property
    def num_clients(self) -> int:
        return self.corpus.num_clients

    @property
    def num_trainable(self) -> int:
        return int(self.global_vector.size)

    def evaluate(self) -> float:
        """Mean token cross-entropy of the current global model on the validation split."""
        torch = self.torch
        model = self.loaded.model
        load_trainable_vector(model, self.global_vector, self.loaded.layout)
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for s in range(0, self._val_ids.shape[0], 32):
                ids = self._val_ids[s : s + 32].to(self.device)
                labels = self._val_labels[s : s + 32].to(self.device)
                logits = model(input_ids=ids).logits[:, :-1].float()
                tgt = labels[:, 1:]
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]),
                    tgt.reshape(-1),
                    ignore_index=-100,
                    reduction="sum",
                )
                total += float(loss)
                count += int((tgt != -100).sum())
        model.train()
        return total / max(count, 1)

    def _optimizer(self, params: list[Any]) -> Any:
        torch = self.torch
        if self.config.optimizer is OptimizerKind.ADAMW:
            return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        return torch.optim.SGD(params, lr=self.config.lr, momentum=0.9)

    def local_update(self, client: int) -> tuple[npt.NDArray[np.float64], float]:
        """Client ``client`` trains from the global weights; returns (delta, mean loss).

        The batches come from a generator seeded by (seed, round, client), so a
        client's work does not depend on which aggregator runs.
        """
        torch = self.torch
        cfg = self.config
        model = self.loaded.model
        load_trainable_vector(model, self.global_vector, self.loaded.layout)
        model.train()
        stream = self.streams[client]
        if self.local_dp is not None:
            mean_loss = self.local_dp.train_client(
                client=client, round=self._round, tokens=stream.tokens, pad_id=stream.pad_id,
                batch_size=cfg.batch_size, seq_len=cfg.seq_len, steps=cfg.local_steps,
                make_optimizer=self._optimizer, device=self.device,
            )
            return trainable_vector(model) - self.global_vector, mean_loss
        params = [p for p in model.parameters() if p.requires_grad]
        opt = self._optimizer(params)
        losses = []
        for ids, labels in self._client_batches(client):
            ids, labels = ids.to(self.device), labels.to(self.device)
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
        delta = trainable_vector(model) - self.global_vector
        return delta, float(np.mean(losses))

    def _client_batches(self, client: int) -> list[tuple[Any, Any]]:
        """Client ``client``'s ``local_steps`` batches this round, from a generator
        seeded by (seed, round, client): the same whichever path trains it."""
        cfg = self.config
        gen = self.torch.Generator().manual_seed(
            (cfg.seed * 1_000_003 + self._round * 10_007 + client) % (2**63)
        )
        stream = self.streams[client]
        return [stream.random_batch(cfg.batch_size, cfg.seq_len, gen)
                for _ in range(cfg.local_steps)]

    def local_updates(
        self, clients: tuple[int, ...]
    ) -> dict[int, tuple[npt.NDArray[np.float64], float]]:
        """Every client of ``clients`` trains from the global weights: client ->
        (delta, mean loss).  Batched (:mod:`secagg.train.batched`) when
        :attr:`batched` is set, otherwise :meth:`local_update` one at a time; both
        give the same updates within float tolerance.  Reports progress through
        :attr:`on_client` after every client (one at a time) or every chunk (batched)."""
        self._client_done(0, len(clients))
        if self.batched is None:
            done: dict[int, tuple[npt.NDArray[np.float64], float]] = {}
            for i, c in enumerate(clients):
                done[c] = self.local_update(c)
                self._client_done(i + 1, len(clients))
            return done
        torch = self.torch
        cfg = self.config
        model = self.loaded.model
        load_trainable_vector(model, self.global_vector, self.loaded.layout)
        model.train()
        out: dict[int, tuple[npt.NDArray[np.float64], float]] = {}
        step = self.batched.chunk
        if self.local_dp is not None:
            for lo in range(0, len(clients), step):
                part = clients[lo : lo + step]
                deltas, losses = self.local_dp.train_batched(
                    self.batched, clients=part, round=self._round,
                    streams={c: (self.streams[c].tokens, self.streams[c].pad_id)
                             for c in part},
                    batch_size=cfg.batch_size, seq_len=cfg.seq_len, steps=cfg.local_steps,
                )
                for i, c in enumerate(part):
                    out[c] = (deltas[i], losses[i])
                self._client_done(len(out), len(clients))
            return out
        for lo in range(0, len(clients), step):
            part = clients[lo : lo + step]
            batches = [self._client_batches(c) for c in part]
            ids = torch.stack([torch.stack([b[0] for b in bs]) for bs in batches])
            labels = torch.stack([torch.stack([b[1] for b in bs]) for bs in batches])
            deltas, losses = self.batched.train(ids, labels)
            for i, c in enumerate(part):
                out[c] = (deltas[i], losses[i])
            self._client_done(len(out), len(clients))
        return out

    def initial_record(self) -> RoundRecord:
        t0 = time.perf_counter()
        val = self.evaluate()
        return RoundRecord(
            round=0,
            train_loss=None,
            val_loss=val,
            val_perplexity=math.exp(min(val, 50.0)),
            sampled=(),
            dropped=(),
            survivors=0,
            aborted=False,
            abort_reason=None,
            bytes_per_client_upload=0.0,
            update_norm=0.0,
            clipped_fraction=0.0,
            phase_seconds={"eval": time.perf_counter() - t0},
        )

    def run_round(self, aggregator: Aggregator) -> RoundRecord:
        """Sample, train locally, aggregate, apply, evaluate."""
        cfg = self.config
        self._round += 1
        sampled = sample_clients(self._sampling_rng, self.num_clients, cfg.per_round)
        dropped = choose_dropouts(self._sampling_rng, sampled, cfg.dropout)
        t0 = time.perf_counter()
        res: AggregateResult
        if self.engine is not None:
            # the clients train, encode and mask on the engine's workers; the update
            # never comes here (only each client's loss and update norm do)
            out = self.engine.train(self._round, self.global_vector, sampled,
                                    progress=self._client_done)
            losses = [out[cid][0] for cid in sampled]
            t1 = time.perf_counter()
            stats = _UpdateStats.of_norms({c: out[c][1] for c in sampled}, dropped)
            res = aggregator.aggregate_on(self.engine, sampled, length=self.num_trainable,
                                          dropped=dropped)
        else:
            trained = self.local_updates(sampled)
            updates = {cid: trained[cid][0] for cid in sampled}
            losses = [trained[cid][1] for cid in sampled]
            del trained
            t1 = time.perf_counter()
            stats = _UpdateStats(updates, dropped, _l2_clip(aggregator))
            res = aggregator.aggregate(updates, dropped=dropped)
            del updates  # the server side keeps only the aggregate
        t2 = time.perf_counter()
        norm = 0.0
        dp: dict[str, Any] = stats.fields()
        if not res.aborted and res.mean is not None:
            dp.update(stats.after_release(res.mean, self.user_dp, len(res.survivors)))
            # Parameters live in float32: keep the global vector exactly representable.
            new = self.global_vector + cfg.server_lr * res.mean
            self.global_vector = new.astype(np.float32).astype(np.float64)
            norm = float(np.linalg.norm(res.mean))
        if self.local_dp is not None:
            dp["dpsgd_epsilon"] = {c: self.local_dp.epsilon(c) for c in sampled}
        t3 = time.perf_counter()
        val = self.evaluate()
        t4 = time.perf_counter()
        phases = {
            "local_train": t1 - t0,
            "aggregate": t2 - t1,
            "apply": t3 - t2,
            "eval": t4 - t3,
        }
        for k, v in res.phase_seconds.items():
            if k != "aggregate":
                phases[f"agg.{k}"] = float(v)
        return RoundRecord(
            round=self._round,
            train_loss=float(np.mean(losses)),
            val_loss=val,
            val_perplexity=math.exp(min(val, 50.0)),
            sampled=sampled,
            dropped=dropped,
            survivors=len(res.survivors),
            aborted=res.aborted,
            abort_reason=res.abort_reason,
            bytes_per_client_upload=res.bytes_per_client_upload,
            update_norm=norm,
            clipped_fraction=res.clipped_fraction,
            phase_seconds=phases,
            **dp,
        )

    def _client_done(self, done: int, total: int) -> None:
        if self.on_client is not None:
            self.on_client(self._round, done, total)

    def fast_forward(self, rounds: int) -> None:
        """Advance to after round ``rounds`` without training: replays the client and
        dropout sampling so that round ``rounds + 1`` samples what an uninterrupted run
        would have (used by resume; the caller restores the weights)."""
        for _ in range(rounds):
            self._round += 1
            sampled = sample_clients(self._sampling_rng, self.num_clients, self.config.per_round)
            choose_dropouts(self._sampling_rng, sampled, self.config.dropout)


def _l2_clip(aggregator: Aggregator) -> float | None:
    """The user-level DP L2 clip of ``aggregator`` (``None`` without user-level DP)."""
    dp = getattr(aggregator, "dp", None)
    c = getattr(dp, "l2_clip", None)
    return float(c) if isinstance(c, int | float) else None


class _UpdateStats:
    """Norms of one round's updates (simulation-side), and the clipped mean the
    user-level DP release estimates."""

    def __init__(
        self,
        updates: dict[int, npt.NDArray[np.float64]],
        dropped: tuple[int, ...],
        l2_clip: float | None,
    ) -> None:
        survivors = [c for c in sorted(updates) if c not in set(dropped)]
        norms = np.array([float(np.linalg.norm(updates[c])) for c in survivors])
        self.mean_norm = float(norms.mean()) if norms.size else 0.0
        self.l2_clip = l2_clip
        self.clipped_mean: npt.NDArray[np.float64] | None = None
        self.clipped_fraction: float | None = None
        if l2_clip is not None and survivors:
            total = np.zeros_like(updates[survivors[0]])
            for c, n in zip(survivors, norms, strict=True):
                total += updates[c] * min(1.0, l2_clip / n if n > 0 else 1.0)
            self.clipped_mean = total / len(survivors)
            self.clipped_fraction = float(np.mean(norms > l2_clip))

    @classmethod
    def of_norms(cls, norms: dict[int, float], dropped: tuple[int, ...]) -> _UpdateStats:
        """Only the mean update norm over the survivors (no user-level DP clip)."""
        self = cls({}, dropped, None)
        kept = np.array([n for c, n in sorted(norms.items()) if c not in set(dropped)])
        self.mean_norm = float(kept.mean()) if kept.size else 0.0
        return self

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean_client_update_norm": self.mean_norm}
        if self.l2_clip is not None:
            out["l2_clip"] = self.l2_clip
            out["l2_clipped_fraction"] = self.clipped_fraction
            if self.clipped_mean is not None:
                out["signal_norm"] = float(np.linalg.norm(self.clipped_mean))
        return out

    def after_release(
        self,
        mean: npt.NDArray[np.float64],
        user_dp: UserDPAccountant | None,
        survivors: int,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.clipped_mean is None:
            return out
        signal = float(np.linalg.norm(self.clipped_mean))
        out["noise_norm"] = float(np.linalg.norm(mean - self.clipped_mean))
        if user_dp is not None:
            expected = expected_noise_norm(user_dp.params, survivors)
            ratio = expected / signal if signal > 0 else math.inf
            eps_r, eps_c = user_dp.record(survivors)
            out.update(
                expected_noise_norm=expected,
                noise_to_signal=ratio,
                noise_dominates=ratio > NOISE_DOMINATES,
                epsilon_round=eps_r,
                epsilon_cumulative=eps_c,
            )
        return out


def _set_aggregator_rounds(aggregator: Aggregator, rounds: int) -> None:
    """Resume: the aggregators count their calls to derive each round's secrets (and,
    under user-level DP, to enforce the budget's round count); set that count."""
    for attr in ("_calls", "_round"):
        if hasattr(aggregator, attr):
            setattr(aggregator, attr, rounds)


def run_training(
    config: TrainConfig,
    aggregator: Aggregator,
    *,
    sampling_rng: RandomSource,
    corpus: FederatedCorpus | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_start: Callable[[FederatedTrainer], None] | None = None,
    on_client: Callable[[int, int, int], None] | None = None,
    device: str = "cpu",
    local_dp: LocalDPSGDConfig | None = None,
    secret_rng: RandomSource | None = None,
    checkpoint_dir: Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    resume: Checkpoint | None = None,
    engine: str = "inprocess",
    workers: int | None = None,
    ray_address: str | None = None,
    threads: int = 1,
    client_batch: int | None = None,
) -> TrainResult:
    """Run ``config.rounds`` FedAvg rounds with ``aggregator``.

    Parameters
    ----------
    config:
        The run.
    aggregator:
        How updates are summed (see :mod:`secagg.train.aggregators`).
    sampling_rng:
        Client and dropout sampling (not secret).
    corpus:
        Override the corpus.
    on_round:
        Called with every :class:`RoundRecord` (round 0 included, and the records
        of a resumed checkpoint) as it completes.
    on_start:
        Called with the :class:`FederatedTrainer` before round 0 (plan and check
        what depends on the model, e.g. user-level DP; set ``trainer.user_dp``).
    on_client:
        Called as ``on_client(round, done, total)`` when a round's local training
        starts (``done = 0``) and after each sampled client finished it, here or on
        the engine's workers (a progress display; it must not raise).
    device, local_dp, secret_rng:
        See :class:`FederatedTrainer`.
    checkpoint_dir, fingerprint:
        Write a :mod:`~secagg.train.checkpoint` there after every round, tagged with
        ``fingerprint`` (what a resume must match).
    resume:
        Continue from this checkpoint (already checked against the configuration).
    engine, workers, ray_address, threads:
        Where the sampled clients train and run their side of the protocol:
        ``"inprocess"`` (here) or ``"ray"`` (:class:`~secagg.train.engine.RayTrainEngine`:
        ``workers`` actors, on the cluster at ``ray_address`` or a fresh local Ray;
        ``threads`` torch threads each).  Same seed, same final model.
    client_batch:
        In process: clients per ``torch.func.vmap`` call (see
        :class:`FederatedTrainer`; ``None`` = auto).

    Raises
    ------
    ParameterError
        Bad configuration or data, or a scheme / DP-SGD not wired for ``engine``.
    MissingExtraError
        ``engine="ray"`` without the ``ray`` extra.
    EngineError
        The Ray cluster cannot be reached or its actors fail.
    """
    require("torch", "train")
    if not isinstance(aggregator, Aggregator):
        raise ParameterError("aggregator must be an Aggregator")
    if engine not in TRAIN_ENGINES:
        raise ParameterError(f"unknown engine {engine!r}; choose one of {', '.join(TRAIN_ENGINES)}")
    if engine == "inprocess" and (workers is not None or ray_address is not None):
        raise ParameterError("workers and ray_address are for the ray engine")
    if engine not in aggregator.engines:
        raise ParameterError(
            f"aggregator {aggregator.kind.value!r} does not run on --engine {engine} "
            f"(wired there: plain, secagg, secagg+ without --dp, lightsecagg)"
        )
    if engine != "inprocess" and local_dp is not None:
        raise ParameterError(f"DP-SGD in local training does not run on --engine {engine} yet")
    t0 = time.perf_counter()
    trainer = FederatedTrainer(
        config, sampling_rng=sampling_rng, corpus=corpus, device=device,
        local_dp=local_dp, secret_rng=secret_rng,
        client_batch=client_batch if engine == "inprocess" else 0,
    )
    trainer.on_client = on_client
    try:
        if engine == "ray":
            trainer.engine = RayTrainEngine(config, trainer.corpus, workers=workers,
                                            address=ray_address, device=trainer.device,
                                            threads=threads)
        if on_start is not None:
            on_start(trainer)
        records: list[RoundRecord] = []
        if resume is not None:
            if resume.vector.size != trainer.num_trainable:
                raise ParameterError("--resume: the checkpoint's weights do not fit this model")
            trainer.global_vector = resume.vector.astype(np.float32).astype(np.float64)
            trainer.fast_forward(resume.round)
            _set_aggregator_rounds(aggregator, resume.round)
            if trainer.local_dp is not None and resume.dpsgd_state is not None:
                trainer.local_dp.load_state(resume.dpsgd_state)
            if trainer.user_dp is not None:
                for n in resume.user_dp_survivors:
                    trainer.user_dp.record(n)
            records = [RoundRecord.from_json(d) for d in resume.records]
            for rec in records:
                if on_round is not None:
                    on_round(rec)
        else:
            records.append(trainer.initial_record())
            if on_round is not None:
                on_round(records[0])

        def checkpoint() -> None:
            if checkpoint_dir is None:
                return
            ckpt_save(checkpoint_dir, Checkpoint(
                round=trainer._round,
                fingerprint=dict(fingerprint or {}),
                records=[r.to_json() for r in records],
                vector=trainer.global_vector,
                dpsgd_state=None if trainer.local_dp is None else trainer.local_dp.state(),
                user_dp_survivors=[] if trainer.user_dp is None else trainer.user_dp.survivors,
            ))

        checkpoint()
        while trainer._round < config.rounds:
            rec = trainer.run_round(aggregator)
            records.append(rec)
            if on_round is not None:
                on_round(rec)
            checkpoint()
        load_trainable_vector(trainer.loaded.model, trainer.global_vector, trainer.loaded.layout)
    finally:
        if trainer.local_dp is not None:
            trainer.local_dp.close()
        if trainer.engine is not None:
            trainer.engine.close()
    dpsgd_eps = None
    if trainer.local_dp is not None:
        dpsgd_eps = {c: trainer.local_dp.epsilon(c) for c in sorted(trainer.local_dp.accountants)}
    return TrainResult(
        config=config,
        rounds=tuple(records),
        loaded=trainer.loaded,
        final_vector=trainer.global_vector.copy(),
        aggregator=aggregator.description,
        corpus_source=trainer.corpus.source,
        seconds=time.perf_counter() - t0,
        dpsgd_epsilon=dpsgd_eps,
        user_dp_epsilon=None if trainer.user_dp is None else trainer.user_dp.epsilon,
        engine=engine,
        workers=1 if trainer.engine is None else trainer.engine.workers,
        local_training=trainer.local_training if trainer.engine is None
        else "sequential (on the engine's workers)",
    )
