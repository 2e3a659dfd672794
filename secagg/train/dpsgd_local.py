"""Sample-level DP-SGD inside each client's local training (``secagg train --dp-sgd``).

What one client does in a round, with noise multiplier ``z`` and clip norm ``C``:

* its **examples** are the non-overlapping ``seq_len``-token windows of its text
  (``N`` of them; a byte of text is in exactly one example, so "one example" is a
  well-defined unit of privacy);
* each of the ``local_steps`` steps **Poisson-samples** a batch: every example joins
  independently with probability ``q = min(1, batch_size / N)``, drawn from the
  client's CSPRNG (the sampling must be secret for the amplification the accountant
  claims);
* per-sample gradients (Opacus ``GradSampleModule``; LoRA adapters or every weight)
  are L2-clipped to ``C``, summed, and Gaussian noise ``N(0, (zC)²)`` from our CSPRNG
  (:func:`secagg.dp.dpsgd.use_csprng_noise`) is added; the sum is divided by the
  expected batch size ``qN`` and the client's optimizer steps;
* the client's own Opacus ``RDPAccountant`` records ``(z, q, steps)``; its ε after
  the round (all rounds it took part in so far) goes into the round record.

An empty Poisson batch still takes a step of pure noise (the accountant counts it).
The guarantee protects one example of one client against anyone who sees that
client's update — the server included, even without secure aggregation.

torch and opacus are imported lazily (extras ``train`` and ``dp``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg._extras import require
from secagg.errors import InsecureConfigurationWarning, ParameterError
from secagg.primitives.rand import RandomSource, random_unit_float64

__all__ = ["LocalDPSGD", "LocalDPSGDConfig", "check_delta", "example_count"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDPSGDConfig:
    """DP-SGD settings shared by every client.

    Parameters
    ----------
    noise_multiplier:
        ``z > 0``: noise std over the clip norm.
    max_grad_norm:
        ``C > 0``: per-example L2 clip norm.
    delta:
        δ at which each client's ε is reported.
    insecure_rng:
        Draw the noise from torch's default generator (seeded per client and round)
        instead of our CSPRNG — experiments only; warns.

    Raises
    ------
    ParameterError
        Non-positive or non-finite values, ``delta`` outside ``(0, 1)``.
    """

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5
    insecure_rng: bool = False

    def __post_init__(self) -> None:
        for name in ("noise_multiplier", "max_grad_norm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ParameterError(f"--{name.replace('_', '-')} must be a positive number")
        if not (isinstance(self.delta, int | float) and 0 < self.delta < 1):
            raise ParameterError("delta must be in (0, 1)")
        if not isinstance(self.insecure_rng, bool):
            raise ParameterError("insecure_rng must be a bool")

    def to_json(self) -> dict[str, Any]:
        return {
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "delta": self.delta,
            "insecure_rng": self.insecure_rng,
        }


class LocalDPSGD:
    """Per-client DP-SGD for :class:`~secagg.train.loop.FederatedTrainer`.

    Parameters
    ----------
    config:
        :class:`LocalDPSGDConfig`.
    model:
        The trainer's model; wrapped once in an Opacus ``GradSampleModule`` (its hooks
        record activations only in training mode with gradients enabled, so
        evaluation and sampling are unaffected).
    secret_rng:
        Source of every client's sampling and noise (``child`` per round and client).
    seed:
        Seeds torch's generator for the noise only with ``insecure_rng``.
    """

    def __init__(
        self, config: LocalDPSGDConfig, *, model: Any, secret_rng: RandomSource, seed: int
    ) -> None:
        if not isinstance(config, LocalDPSGDConfig):
            raise ParameterError("config must be a LocalDPSGDConfig")
        self.torch = require("torch", "train")
        opacus = require("opacus", "dp")
        self._accountants_mod = require("opacus.accountants", "dp")
        self._dp_opt = require("opacus.optimizers", "dp").DPOptimizer
        self.config = config
        self._rng = secret_rng
        self._seed = seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus's notes on hooks and RNG
            self.module = opacus.GradSampleModule(model, batch_first=True, loss_reduction="mean")
        self.accountants: dict[int, Any] = {}
        self._eps_cache: dict[tuple[tuple[float, ...], ...], float] = {}
        if config.insecure_rng:
            warnings.warn(
                "--insecure-rng: DP-SGD noise from torch's default generator, seeded from the "
                "run seed — not a cryptographic guarantee",
                InsecureConfigurationWarning,
                stacklevel=2,
            )

    # ---------------------------------------------------------------- accounting
    def _accountant(self, client: int) -> Any:
        acc = self.accountants.get(client)
        if acc is None:
            acc = self._accountants_mod.RDPAccountant()
            self.accountants[client] = acc
        return acc

    def epsilon(self, client: int) -> float:
        """Client ``client``'s sample-level ε so far (0 before its first step).

        Clients with the same history ``[(z, q, steps), ...]`` have the same ε; it is
        computed once per distinct history (Opacus's conversion is the slow part).
        """
        acc = self.accountants.get(client)
        if acc is None or not acc.history:
            return 0.0
        key = tuple(tuple(h) for h in acc.history)
        eps = self._eps_cache.get(key)
        if eps is None:
            eps = float(acc.get_epsilon(self.config.delta))
            self._eps_cache[key] = eps
        return eps

    def state(self) -> dict[str, list[list[float]]]:
        """Every client's accountant history ``[(z, q, steps), ...]`` (for checkpoints)."""
        return {str(c): [list(map(float, h)) for h in a.history]
                for c, a in sorted(self.accountants.items())}

    def load_state(self, state: dict[str, list[list[float]]]) -> None:
        """Restore :meth:`state` (replaces every accountant)."""
        self.accountants = {}
        for c, hist in state.items():
            acc = self._accountant(int(c))
            acc.history = [(float(z), float(q), int(n)) for z, q, n in hist]

    # ------------------------------------------------------------------ training
    def train_client(
        self,
        *,
        client: int,
        round: int,
        tokens: np.ndarray,
        pad_id: int,
        batch_size: int,
        seq_len: int,
        steps: int,
        make_optimizer: Callable[[list[Any]], Any],
        device: Any,
    ) -> float:
        """Run ``steps`` DP-SGD steps for ``client`` from the model's current weights.

        Returns the mean training loss over the non-empty batches (NaN if all were
        empty).  The model's trainable parameters are left at the client's result.
        """
        torch = self.torch
        cfg = self.config
        examples, labels = _windows(torch, tokens, seq_len, pad_id)
        n = int(examples.shape[0])
        q = min(1.0, batch_size / n)
        expected = max(1, round_half_up(q * n))
        params = [p for p in self.module.parameters() if p.requires_grad]
        opt = self._dp_opt(
            make_optimizer(params),
            noise_multiplier=cfg.noise_multiplier,
            max_grad_norm=cfg.max_grad_norm,
            expected_batch_size=expected,
            loss_reduction="mean",
        )
        rng = self._rng.child(f"dpsgd/round/{round}/client/{client}")
        sampling = rng.child("poisson-sampling")
        if cfg.insecure_rng:
            opt.generator = torch.Generator(device=device).manual_seed(
                (self._seed * 1_000_003 + round * 10_007 + client) % (2**63)
            )
        else:
            dpsgd = require("secagg.dp.dpsgd", "dp")
            dpsgd.use_csprng_noise(opt, rng.child("noise"))
        acc = self._accountant(client)
        losses: list[float] = []
        self.module.train()
        for _ in range(steps):
            picked = np.flatnonzero(random_unit_float64(sampling, n) < q)
            opt.zero_grad(set_to_none=True)
            if picked.size == 0:
                for p in params:  # an empty batch: the step is pure noise
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
            else:
                idx = torch.from_numpy(picked)
                ids = examples[idx].to(device)
                tgt = labels[idx].to(device)
                loss = self._loss(ids, tgt)
                loss.backward()
                losses.append(float(loss.detach()))
            opt.step()
            acc.step(noise_multiplier=cfg.noise_multiplier, sample_rate=q)
        opt.zero_grad(set_to_none=True)
        return float(np.mean(losses)) if losses else math.nan

    def train_batched(
        self,
        batched: Any,
        *,
        clients: tuple[int, ...],
        round: int,
        streams: dict[int, tuple[np.ndarray, int]],
        batch_size: int,
        seq_len: int,
        steps: int,
    ) -> tuple[np.ndarray, list[float]]:
        """:meth:`train_client` for several clients at once through ``batched`` (a
        :class:`~secagg.train.batched.BatchedLocalTrainer`): the same examples,
        Poisson samples and noise streams (the same CSPRNG children), the same
        accountant steps; Opacus's hooks are removed while it runs (and put back).
        Returns (updates, losses) in ``clients`` order; the model is not changed.
        """
        torch = self.torch
        cfg = self.config
        if cfg.insecure_rng:
            raise ParameterError("batched DP-SGD draws its noise from the CSPRNG only")
        dpsgd = require("secagg.dp.dpsgd", "dp")
        examples, picks, noise, expected = [], [], [], []
        for c in clients:
            tokens, pad_id = streams[c]
            ids, labels = _windows(torch, tokens, seq_len, pad_id)
            n = int(ids.shape[0])
            q = min(1.0, batch_size / n)
            rng = self._rng.child(f"dpsgd/round/{round}/client/{c}")
            sampling = rng.child("poisson-sampling")
            picks.append([np.flatnonzero(random_unit_float64(sampling, n) < q)
                          for _ in range(steps)])
            noise_rng = rng.child("noise")
            noise.append(lambda size, r=noise_rng: dpsgd.gaussian_noise(r, size))
            examples.append((ids, labels))
            expected.append(max(1, round_half_up(q * n)))
            acc = self._accountant(c)
            for _ in range(steps):
                acc.step(noise_multiplier=cfg.noise_multiplier, sample_rate=q)
        # Opacus's backward hooks wrap module outputs in an autograd.Function that
        # torch.func cannot transform: off (removed, not just disabled) while vmapped
        self.module.remove_hooks()
        try:
            return batched.train_dpsgd(  # type: ignore[no-any-return]
                examples, picks, noise, noise_multiplier=cfg.noise_multiplier,
                max_grad_norm=cfg.max_grad_norm, expected=expected,
            )
        finally:
            self.module.add_hooks(loss_reduction="mean", batch_first=True)

    def _loss(self, ids: Any, labels: Any) -> Any:
        """Per-example mean token loss, averaged over the batch (``loss_reduction="mean"``)."""
        torch = self.torch
        b, t = ids.shape
        pos = torch.arange(t, device=ids.device).unsqueeze(0).expand(b, t).contiguous()
        logits = self.module(input_ids=ids, position_ids=pos).logits[:, :-1].float()
        tgt = labels[:, 1:]
        per_tok = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100,
            reduction="none",
        ).view(b, t - 1)
        valid = (tgt != -100).float()
        per_example = (per_tok * valid).sum(1) / valid.sum(1).clamp(min=1.0)
        return per_example.mean()

    def close(self) -> None:
        """Remove Opacus's hooks from the model."""
        self.module._close()


def example_count(tokens: int, seq_len: int) -> int:
    """How many examples (:func:`_windows`) a client with ``tokens`` tokens holds."""
    count = max(1, -(-tokens // seq_len))
    if count > 1 and tokens % seq_len == 1:
        count -= 1
    return count


def check_delta(delta: float, tokens: dict[int, int], seq_len: int) -> None:
    """Refuse a δ that sample-level DP-SGD cannot honestly promise.

    The unit of privacy is one example of one client, so δ must be below
    ``1/N`` for every client, ``N`` its number of examples (the mechanism that
    publishes one of ``N`` examples at random is (0, 1/N)-DP): the largest client
    decides.  (The number of clients does not enter: that is user-level DP's δ.)

    Raises
    ------
    ParameterError
        ``delta >= 1/N`` for the client with the most examples.
    """
    if not tokens:
        return
    client, most = max(((c, example_count(t, seq_len)) for c, t in tokens.items()),
                       key=lambda ct: (ct[1], -ct[0]))
    if delta >= 1.0 / most:
        raise ParameterError(
            f"--delta {delta:g} >= 1/{most}: client {client} holds {most} examples of "
            f"{seq_len} tokens, and sample-level DP-SGD needs δ < 1/(examples per client); "
            f"use δ < {1 / most:.3g}, e.g. 1e-5"
        )


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _windows(torch: Any, tokens: np.ndarray, seq_len: int, pad_id: int) -> tuple[Any, Any]:
    """The non-overlapping ``seq_len`` windows of a token stream (the last one padded,
    labels ``-100`` on padding); at least one window."""
    n = int(tokens.size)
    count = max(1, -(-n // seq_len))  # example_count() is this, less the dropped window
    ids = torch.full((count, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((count, seq_len), -100, dtype=torch.long)
    flat = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
    full = n // seq_len
    if full:
        ids[:full] = flat[: full * seq_len].view(full, seq_len)
        labels[:full] = ids[:full]
    if n % seq_len:
        rest = flat[full * seq_len :]
        ids[full, : rest.numel()] = rest
        labels[full, : rest.numel()] = rest
    # a last window of a single token predicts nothing: drop it if there are others
    if count > 1 and n % seq_len == 1:
        ids, labels = ids[:-1], labels[:-1]
    return ids, labels
