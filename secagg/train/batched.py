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

Sample-level DP-SGD batches too (:meth:`BatchedLocalTrainer.train_dpsgd`): each
client's Poisson sample (drawn from its CSPRNG stream, as in the sequential path) is
padded to the chunk's largest and masked; per-example gradients come from a
``vmap`` over the examples inside the ``vmap`` over the clients, and the clip, the
noise (the same CSPRNG stream, in the order Opacus's optimizer adds it) and the
scaling are Opacus's formulas — tested against Opacus's own step.

Not eligible (the loop falls back to one client at a time): models with active
dropout (randomness inside the step), and DP-SGD with ``--insecure-rng``.

Cost (measured, see README): on a CPU the step is compute-bound and ``vmap``'s
batched matrix products and larger intermediates make it *slower* per client than
the sequential loop, so ``secagg train`` batches by default only on CUDA, where one
kernel over many clients is what fills the device.

torch is imported lazily (extra ``train``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
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


def batching_obstacle(model: Any, *, insecure_rng: bool = False) -> str | None:
    """Why the clients' steps cannot be batched (``None``: they can).

    Parameters
    ----------
    model:
        The trainer's model.
    insecure_rng:
        DP-SGD with torch's generator (``--insecure-rng``): its noise stream is
        Opacus's, drawn inside the sequential path only.
    """
    torch = require("torch", "train")
    if insecure_rng:
        return "DP-SGD with --insecure-rng draws torch's noise in Opacus's own loop"
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
        #: trainable names in the model's parameter order (Opacus's noise order)
        self.module_order = tuple(n for n, p in model.named_parameters() if p.requires_grad)
        torch = self.torch

        def example_loss(params: dict[str, Any], frozen: dict[str, Any], ids: Any,
                         labels: Any) -> Any:
            # one example's mean token loss (dpsgd_local's per-example loss)
            logits = func.functional_call(model, (params, frozen), args=(),
                                          kwargs={"input_ids": ids.unsqueeze(0)},
                                          strict=False).logits[0, :-1].float()
            tgt = labels[1:]
            per_tok = torch.nn.functional.cross_entropy(logits, tgt, ignore_index=-100,
                                                        reduction="none")
            valid = (tgt != -100).float()
            return (per_tok * valid).sum() / valid.sum().clamp(min=1.0)

        per_example = func.vmap(func.grad_and_value(example_loss), in_dims=(None, None, 0, 0),
                                randomness="error")
        self._per_example = func.vmap(per_example, in_dims=(0, None, 0, 0),
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
        start, frozen, device, out = self._snapshot(k_all)
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

    def train_dpsgd(
        self,
        examples: Sequence[tuple[Any, Any]],
        picks: Sequence[Sequence[npt.NDArray[np.int64]]],
        noise: Sequence[Callable[[int], npt.NDArray[np.float64]]],
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        expected: Sequence[int],
    ) -> tuple[npt.NDArray[np.float64], list[float]]:
        """DP-SGD for ``K`` clients from the model's current weights, Opacus's steps
        per client row: per-example gradients (``vmap`` over the examples inside
        ``vmap`` over the clients), each clipped to ``max_grad_norm`` in L2 over all
        trainable parameters (factor ``C / (norm + 1e-6)`` capped at 1, as Opacus's
        ``clip_and_accumulate``), summed, plus ``noise(numel) * z * C`` per parameter
        in the model's parameter order (the order Opacus's optimizer adds it), divided
        by the expected batch size, then the optimizer step (no further clip).

        Parameters
        ----------
        examples:
            Per client: its ``(ids, labels)`` windows, ``[N_k, seq]`` each.
        picks:
            Per client, per step: the indices of the examples in that step's
            Poisson sample (possibly empty: a step of pure noise).
        noise:
            Per client: a function returning that many standard normals from the
            client's noise stream (called in Opacus's order).
        expected:
            Per client: the expected batch size the noisy sum is divided by.

        Returns
        -------
        (updates, losses)
            As :meth:`train`; ``losses[k]`` is the mean over the non-empty steps
            (NaN if every sample was empty).
        """
        torch = self.torch
        k_all = len(examples)
        if not (len(picks) == len(noise) == len(expected) == k_all):
            raise ParameterError("examples, picks, noise and expected must have one entry "
                                 "per client")
        start, frozen, device, out = self._snapshot(k_all)
        losses: list[float] = []
        std = float(noise_multiplier * max_grad_norm)
        with _eager_attention(self.model):
            for lo in range(0, k_all, self.chunk):
                hi = min(k_all, lo + self.chunk)
                k = hi - lo
                steps = len(picks[lo])
                params = {n: start[n].unsqueeze(0).repeat(k, *([1] * start[n].dim()))
                          for n in self.names}
                m1 = {n: torch.zeros_like(p) for n, p in params.items()}
                m2 = {n: torch.zeros_like(p) for n, p in params.items()}
                step_losses: list[list[float]] = [[] for _ in range(k)]
                for s in range(steps):
                    sizes = [len(picks[lo + i][s]) for i in range(k)]
                    width = max(1, *sizes)
                    seq = int(examples[lo][0].shape[1])
                    ids = torch.zeros((k, width, seq), dtype=torch.long)
                    lab = torch.full((k, width, seq), -100, dtype=torch.long)
                    mask = torch.zeros((k, width))
                    for i in range(k):
                        idx = torch.from_numpy(np.asarray(picks[lo + i][s], dtype=np.int64))
                        ids[i, : sizes[i]] = examples[lo + i][0][idx]
                        lab[i, : sizes[i]] = examples[lo + i][1][idx]
                        mask[i, : sizes[i]] = 1.0
                    mask = mask.to(device)
                    grads, loss = self._per_example(params, frozen, ids.to(device),
                                                    lab.to(device))
                    norms = torch.stack([g.reshape(k, width, -1).norm(dim=2)
                                         for g in grads.values()], 2).norm(dim=2)
                    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * mask
                    for i in range(k):
                        if sizes[i]:
                            step_losses[i].append(
                                float((loss[i] * mask[i]).sum() / sizes[i]))
                    for n in self.module_order:
                        g = torch.einsum("kb,kb...->k...", factor, grads[n])
                        if std > 0:
                            z = np.stack([noise[lo + i](int(g[i].numel())) for i in range(k)])
                            g = g + torch.from_numpy(z * std).to(device=device,
                                                                 dtype=g.dtype).view_as(g)
                        scale = torch.tensor([float(expected[lo + i]) for i in range(k)],
                                             dtype=g.dtype, device=device)
                        grads[n] = g / scale.view(-1, *([1] * (g.dim() - 1)))
                    del norms, factor
                    self._update(params, grads, m1, m2, s + 1)
                out[lo:hi] = (torch.cat([params[n].reshape(k, -1) for n in self.names], 1)
                              .double()
                              - torch.cat([start[n].reshape(1, -1) for n in self.names], 1)
                              .double()).cpu().numpy()
                losses.extend(float(np.mean(x)) if x else math.nan for x in step_losses)
        return out, losses

    def _snapshot(
        self, clients: int
    ) -> tuple[dict[str, Any], dict[str, Any], Any, npt.NDArray[np.float64]]:
        """The trained parameters (detached), the frozen ones, their device, and the
        ``[clients, trained size]`` output array the updates are written into."""
        named = dict(self.model.named_parameters())
        start = {n: named[n].detach() for n in self.names}
        frozen = {n: p.detach() for n, p in named.items() if not p.requires_grad}
        out = np.empty((clients, sum(int(p.numel()) for p in start.values())), dtype=np.float64)
        return start, frozen, start[self.names[0]].device, out

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
