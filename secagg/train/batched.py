"""Batched local training: many clients' steps in one ``torch.func.vmap`` call.

The sequential loop trains one sampled client after another on the one model.
When the clients' local steps are independent and equal-shaped — every client
starts from the same global weights, takes ``local_steps`` steps on batches of
``batch_size × seq_len`` tokens with a fresh optimizer, and nothing in the step
draws randomness — the same work can run for a *chunk* of clients at once:

* the trainable parameters (every weight, or the LoRA adapters) are **stacked per
  client**: a ``[K, *shape]`` tensor per parameter, every row the global weights;
  frozen weights (the LoRA base) are shared, not copied;
* one step is ``vmap(grad_and_value(loss))`` over the stack and the clients'
  batches, the loss a ``torch.func.functional_call`` of the model;
* gradient clipping (total L2 norm 1.0, as ``torch.nn.utils.clip_grad_norm_``) and
  the optimizer (AdamW without weight decay, or SGD with momentum 0.9 — the
  formulas of ``torch.optim``'s single-tensor implementations) are applied per
  client row;
* each client's update is its row minus the global weights, flattened in the
  layout order (sorted names) as :func:`~secagg.train.model.trainable_vector` does.

The batches are the sequential path's batches (the same per-client generator), so
the updates agree with :meth:`~secagg.train.loop.FederatedTrainer.local_update`
within float tolerance (the attention runs in its eager form under ``vmap``: torch
has no batching rule for the fused CPU kernel; sums are ordered differently).

Not eligible (the loop falls back to one client at a time): sample-level DP-SGD
(Poisson batches differ in size per client and step; its per-example clipping is
Opacus's), and models with active dropout (randomness inside the step).

Cost (measured, see README): on a CPU the step is compute-bound and ``vmap``'s
batched matrix products and larger intermediates make it *slower* per client than
the sequential loop, so ``secagg train`` batches by default only on CUDA, where one
kernel over many clients is what fills the device.

torch is imported lazily (extra ``train``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.errors import ParameterError

__all__ = ["DEFAULT_CUDA_CHUNK", "BatchedLocalTrainer", "batching_obstacle"]

#: Clients per ``vmap`` call when ``--client-batch auto`` picks batching (CUDA).
DEFAULT_CUDA_CHUNK = 64
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_SGD_MOMENTUM = 0.9
_CLIP_NORM = 1.0  # the sequential path's clip_grad_norm_(params, 1.0)


def _base_config(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "config", None)


def batching_obstacle(model: Any, *, dpsgd: bool) -> str | None:
    """Why the clients' steps cannot be batched (``None``: they can).

    Parameters
    ----------
    model:
        The trainer's model.
    dpsgd:
        Whether sample-level DP-SGD runs in local training.
    """
    torch = require("torch", "train")
    if dpsgd:
        return "DP-SGD's Poisson batches differ in size per client (Opacus per-example path)"
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.modules.dropout._DropoutNd) and mod.p > 0:
            return f"dropout in {name or 'the model'} (randomness inside the step)"
    cfg = _base_config(model)
    for key in ("attention_dropout", "attn_pdrop", "hidden_dropout", "resid_pdrop",
                "embd_pdrop", "dropout"):
        v = getattr(cfg, key, 0.0)
        if isinstance(v, int | float) and v > 0:
            return f"config.{key} = {v:g} (randomness inside the step)"
    return None


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """The model's attention in its eager form while vmapped (restored after)."""
    cfg = _base_config(model)
    old = getattr(cfg, "_attn_implementation", None)
    if cfg is None or old is None or old == "eager":
        yield
        return
    cfg._attn_implementation = "eager"
    try:
        yield
    finally:
        cfg._attn_implementation = old


class BatchedLocalTrainer:
    """Local training of a chunk of clients per ``vmap`` call (module docstring).

    Parameters
    ----------
    model:
        The trainer's model (its ``requires_grad`` parameters are the ones trained).
    names:
        The trainable parameters in layout order (sorted names).
    optimizer:
        ``"adamw"`` (no weight decay) or ``"sgd"`` (momentum 0.9).
    lr:
        Client learning rate.
    chunk:
        Clients per ``vmap`` call (bounds memory: each client holds its parameters,
        gradients and optimizer state, and its activations).

    Raises
    ------
    ParameterError
        A bad ``chunk``/``lr``/``optimizer``, or ``names`` not the model's trainable
        parameters.
    """

    def __init__(self, model: Any, names: Sequence[str], *, optimizer: str, lr: float,
                 chunk: int) -> None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ParameterError("chunk (clients per vmap call) must be an integer >= 1")
        if optimizer not in ("adamw", "sgd"):
            raise ParameterError("optimizer must be 'adamw' or 'sgd'")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ParameterError("lr must be a positive finite number")
        self.torch = require("torch", "train")
        func = require("torch.func", "train")
        self.model = model
        self.names = tuple(names)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        if trainable != set(self.names):
            raise ParameterError("names must be the model's trainable parameters")
        self.optimizer = optimizer
        self.lr = float(lr)
        self.chunk = chunk

        def loss(params: dict[str, Any], frozen: dict[str, Any], ids: Any, labels: Any) -> Any:
            out = func.functional_call(model, (params, frozen), args=(),
                                       kwargs={"input_ids": ids, "labels": labels}, strict=False)
            return out.loss

        self._step = func.vmap(func.grad_and_value(loss), in_dims=(0, None, 0, 0),
                               randomness="error")

    def train(self, ids: Any, labels: Any) -> tuple[npt.NDArray[np.float64], list[float]]:
        """Train ``K`` clients from the model's current weights.

        Parameters
        ----------
        ids, labels:
            ``[K, steps, batch, seq]`` token tensors: client ``k``'s batch of step
            ``s`` is ``ids[k, s]`` (labels ``-100`` on padding).

        Returns
        -------
        (updates, losses)
            ``updates[k]``: client ``k``'s trained parameters minus the model's, as
            one float64 vector in layout order; ``losses[k]``: its mean training loss
            over the steps.  The model itself is not changed.
        """
        if ids.dim() != 4 or ids.shape != labels.shape:
            raise ParameterError("ids and labels must be equal [clients, steps, batch, seq]")
        k_all = int(ids.shape[0])
        named = dict(self.model.named_parameters())
        start = {n: named[n].detach() for n in self.names}
        frozen = {n: p.detach() for n, p in named.items() if not p.requires_grad}
        device = start[self.names[0]].device
        out = np.empty((k_all, sum(int(p.numel()) for p in start.values())), dtype=np.float64)
        losses: list[float] = []
        with _eager_attention(self.model):
            for lo in range(0, k_all, self.chunk):
                hi = min(k_all, lo + self.chunk)
                delta, loss = self._train_chunk(start, frozen, ids[lo:hi].to(device),
                                                labels[lo:hi].to(device))
                out[lo:hi] = delta
                losses.extend(loss)
        return out, losses

    def _train_chunk(self, start: dict[str, Any], frozen: dict[str, Any], ids: Any,
                     labels: Any) -> tuple[npt.NDArray[np.float64], list[float]]:
        torch = self.torch
        k, steps = int(ids.shape[0]), int(ids.shape[1])
        params = {n: start[n].unsqueeze(0).repeat(k, *([1] * start[n].dim()))
                  for n in self.names}
        state1 = {n: torch.zeros_like(p) for n, p in params.items()}  # exp_avg / momentum
        state2 = {n: torch.zeros_like(p) for n, p in params.items()}  # exp_avg_sq
        step_losses = []
        for s in range(steps):
            grads, loss = self._step(params, frozen, ids[:, s], labels[:, s])
            step_losses.append(loss.detach())
            self._clip(grads)
            self._update(params, grads, state1, state2, s + 1)
        mean_loss = torch.stack(step_losses, 1).double().mean(1)
        # the sequential path subtracts in float64 from float32 weights: same here
        flat = (torch.cat([params[n].reshape(k, -1) for n in self.names], 1).double()
                - torch.cat([start[n].reshape(1, -1) for n in self.names], 1).double())
        del params, state1, state2
        return flat.cpu().numpy(), [float(x) for x in mean_loss.cpu()]

    def _clip(self, grads: dict[str, Any]) -> None:
        """``clip_grad_norm_(params, 1.0)`` per client row."""
        torch = self.torch
        norms = torch.stack([g.reshape(g.shape[0], -1).norm(dim=1) for g in grads.values()], 1)
        total = norms.norm(dim=1)
        coef = (_CLIP_NORM / (total + 1e-6)).clamp(max=1.0)
        for g in grads.values():
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    def _update(self, params: dict[str, Any], grads: dict[str, Any], m: dict[str, Any],
                v: dict[str, Any], step: int) -> None:
        """One optimizer step on every row (torch.optim's single-tensor formulas)."""
        lr = self.lr
        if self.optimizer == "adamw":
            b1, b2 = _ADAM_BETAS
            bc1 = 1 - b1**step
            bc2_sqrt = math.sqrt(1 - b2**step)
            for n, p in params.items():
                g = grads[n]
                m[n].lerp_(g, 1 - b1)
                v[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v[n].sqrt() / bc2_sqrt).add_(_ADAM_EPS)
                p.addcdiv_(m[n], denom, value=-lr / bc1)
            return
        for n, p in params.items():
            g = grads[n]
            if step == 1:
                m[n].copy_(g)
            else:
                m[n].mul_(_SGD_MOMENTUM).add_(g)
            p.add_(m[n], alpha=-lr)
