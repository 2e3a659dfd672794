"""Sample-level DP-SGD for a client's local training: a thin, typed wrapper over Opacus.

``protocols/dp.md`` §7.  torch and opacus are imported lazily (extra ``dp``).

* :class:`DPSGDConfig` — clip norm ``C``, noise multiplier, Poisson sampling,
  grad-sample mode (:class:`GradSampleMode`), accountant (:class:`AccountantKind`),
  and the RNG choice.
* :func:`make_private` — wraps model, optimizer and data loader; returns a
  :class:`PrivateTraining` (always the same type, whatever the mode).
* :meth:`PrivateTraining.lm_loss` — the causal-LM loss in the form each mode needs
  (per-sequence mean, position ids with a batch dimension, contiguous ids and
  Opacus's own criterion for ghost clipping).
* :meth:`PrivateTraining.end_round` — the client's ε after each federated round, from
  Opacus's accountant (RDP or PRV).

Only parameters with ``requires_grad`` (the LoRA adapters) get per-sample gradients:
freeze the base model before calling :func:`make_private`.

Security notes
--------------
By default the DP noise comes from our own CSPRNG: :func:`gaussian_noise` turns
AES-CTR bytes (:class:`~secagg.primitives.rand.AesCtrRandom`, or any
:class:`~secagg.primitives.rand.RandomSource` passed as ``noise_rng``) into normals,
and a small subclass of Opacus's optimizer (:func:`use_csprng_noise`) adds them in
place of ``torch.normal``.  Like Opacus's ``secure_mode`` (which would need the
``torchcsprng`` package), each noise value is the mean of four normals scaled by 2,
the mitigation of Holohan et al. against floating-point attacks on the Gaussian.
``insecure_rng=True`` uses torch's default generator instead (experiments only) and
emits :class:`~secagg.errors.InsecureConfigurationWarning`.
"""

from __future__ import annotations

import enum
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.errors import (
    InsecureConfigurationWarning,
    LocalProtocolError,
    ParameterError,
)
from secagg.primitives.rand import AesCtrRandom, RandomSource, random_uint64

__all__ = [
    "AccountantKind",
    "DPSGDConfig",
    "GradSampleMode",
    "PrivateTraining",
    "RoundPrivacy",
    "gaussian_noise",
    "make_private",
    "use_csprng_noise",
]


class GradSampleMode(enum.Enum):
    """How Opacus computes per-sample gradient norms."""

    HOOKS = "hooks"  #: materialise per-sample gradients with module hooks
    GHOST = "ghost"  #: ghost clipping: norms without per-sample gradients (double backward)


class AccountantKind(enum.Enum):
    """Which Opacus accountant tracks the sample-level ε."""

    RDP = "rdp"
    PRV = "prv"


@dataclass(frozen=True, slots=True, kw_only=True)
class DPSGDConfig:
    """DP-SGD parameters for one client.

    Parameters
    ----------
    max_grad_norm:
        Per-sample L2 clip norm ``C`` (> 0).
    noise_multiplier:
        Noise std / ``C`` (≥ 0; 0 gives no privacy and is only for tests).
    poisson_sampling:
        Poisson-sample the batches (needed for the accountant's guarantee).
    grad_sample_mode:
        :class:`GradSampleMode`.
    accountant:
        :class:`AccountantKind`.
    insecure_rng:
        Use torch's default (non-cryptographic) generator instead of our CSPRNG
        noise; warns.
    insecure_seed:
        Seed for that generator (reproducible tests); only with ``insecure_rng``.

    Raises
    ------
    ParameterError
        On out-of-range values.
    """

    max_grad_norm: float
    noise_multiplier: float
    poisson_sampling: bool = True
    grad_sample_mode: GradSampleMode = GradSampleMode.HOOKS
    accountant: AccountantKind = AccountantKind.RDP
    insecure_rng: bool = False
    insecure_seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_grad_norm", "noise_multiplier"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ParameterError(f"{name} must be a finite number")
        if self.max_grad_norm <= 0:
            raise ParameterError("max_grad_norm must be > 0")
        if self.noise_multiplier < 0:
            raise ParameterError("noise_multiplier must be >= 0")
        if not isinstance(self.grad_sample_mode, GradSampleMode):
            raise ParameterError("grad_sample_mode must be a GradSampleMode")
        if not isinstance(self.accountant, AccountantKind):
            raise ParameterError("accountant must be an AccountantKind")
        if not isinstance(self.poisson_sampling, bool) or not isinstance(self.insecure_rng, bool):
            raise ParameterError("poisson_sampling and insecure_rng must be bool")
        if self.insecure_seed is not None and not self.insecure_rng:
            raise ParameterError("insecure_seed needs insecure_rng=True")


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundPrivacy:
    """The client's sample-level privacy after a federated round."""

    round: int
    steps: int
    epsilon: float
    delta: float


@dataclass(slots=True, kw_only=True)
class PrivateTraining:
    """What :func:`make_private` returns: the wrapped objects plus accounting.

    Attributes
    ----------
    model, optimizer, data_loader:
        Opacus's wrapped module, DP optimizer and (Poisson) data loader.
    config:
        The :class:`DPSGDConfig`.
    engine:
        The ``opacus.PrivacyEngine`` (its accountant holds the history).
    criterion:
        The loss to call in ghost mode (Opacus's ``DPLossFastGradientClipping``);
        in hooks mode a plain ``CrossEntropyLoss``.
    """

    model: Any
    optimizer: Any
    data_loader: Any
    config: DPSGDConfig
    engine: Any
    criterion: Any
    history: list[RoundPrivacy] = field(default_factory=list)

    def lm_loss(self, input_ids: Any, labels: Any | None = None) -> Any:
        """Causal-LM loss of a batch, in the form the grad-sample mode needs.

        ``input_ids`` is a ``(B, T)`` integer tensor; ``labels`` default to
        ``input_ids`` (next-token prediction, shifted inside).  Position ids are
        passed as ``(B, T)`` (hooks mode needs the batch dimension); ids are made
        contiguous (ghost mode); the per-sequence loss is the mean over its tokens,
        and the batch loss the mean over sequences (Opacus's ``loss_reduction="mean"``).

        Returns
        -------
        A scalar tensor (hooks) or Opacus's loss wrapper (ghost); call ``.backward()``.
        """
        torch = require("torch", "dp")
        ids = input_ids.contiguous()
        if ids.dim() != 2:
            raise ParameterError("input_ids must be a (batch, sequence) tensor")
        tgt = (ids if labels is None else labels).contiguous()
        b, t = ids.shape
        pos = torch.arange(t, device=ids.device).unsqueeze(0).expand(b, t).contiguous()
        logits = self.model(input_ids=ids, position_ids=pos).logits
        shift_logits = logits[:, :-1, :].contiguous()
        shift_labels = tgt[:, 1:].contiguous()
        v = shift_logits.shape[-1]
        flat_logits = shift_logits.view(-1, v)
        flat_labels = shift_labels.view(-1)
        if self.config.grad_sample_mode is GradSampleMode.GHOST:
            return self.criterion(flat_logits, flat_labels, shape=(b, t - 1, v))
        per_token = torch.nn.functional.cross_entropy(flat_logits, flat_labels, reduction="none")
        return per_token.view(b, t - 1).mean(dim=1).mean()

    def epsilon(self, delta: float) -> float:
        """The client's ε so far (all rounds) at ``delta``, from Opacus's accountant."""
        if not 0.0 < delta < 1.0:
            raise ParameterError("delta must be in (0, 1)")
        if len(self.engine.accountant) == 0:
            return 0.0
        if self.config.noise_multiplier == 0.0:
            return math.inf
        return float(self.engine.get_epsilon(delta))

    def end_round(self, delta: float) -> RoundPrivacy:
        """Record and return the client's cumulative ε at the end of a federated round."""
        steps = int(sum(n for _, _, n in self.engine.accountant.history))
        rp = RoundPrivacy(
            round=len(self.history) + 1, steps=steps, epsilon=self.epsilon(delta), delta=delta
        )
        self.history.append(rp)
        return rp


def gaussian_noise(rng: RandomSource, size: int) -> npt.NDArray[np.float64]:
    """``size`` standard normals from CSPRNG bytes, hardened like Opacus's secure mode.

    Box–Muller on 53-bit uniforms (``u₁ ∈ (0, 1]``): ``sqrt(−2 ln u₁)·(cos, sin)(2π u₂)``
    gives two independent normals per pair of words.  Each returned value is
    ``(z₁ + z₂ + z₃ + z₄)/2`` of four such normals — again exactly ``N(0, 1)`` — so that
    the low-order bits of one float64 normal do not reveal the noise (Holohan et al.
    2021; the ``n = 2`` choice of Opacus's ``_generate_noise``).

    Raises
    ------
    ParameterError
        ``size`` negative.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ParameterError("size must be a non-negative integer")
    pairs = 2 * size  # four normals per output, two per Box–Muller pair
    w = random_uint64(rng, 2 * pairs)
    k = (w >> np.uint64(11)).astype(np.float64)
    u1 = (9007199254740992.0 - k[:pairs]) * (1.0 / 9007199254740992.0)  # (0, 1]
    theta = k[pairs:] * (2.0 * math.pi / 9007199254740992.0)
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.concatenate([r * np.cos(theta), r * np.sin(theta)])
    out: npt.NDArray[np.float64] = z.reshape(4, size).sum(axis=0) * 0.5
    return out


_CSPRNG_CLASSES: dict[type, type] = {}


def use_csprng_noise(optimizer: Any, rng: RandomSource) -> Any:
    """Make an Opacus ``DPOptimizer`` draw its Gaussian noise from ``rng``.

    The optimizer's class is swapped for a subclass whose ``add_noise`` is Opacus's
    own (clipped sum + ``N(0, (z·C)²)`` per coordinate, processed-flag checks) with
    :func:`gaussian_noise` in place of ``torch.normal``; clipping, scaling and the
    step are untouched.  Returns the same optimizer object.

    Raises
    ------
    ParameterError
        ``optimizer`` is not an Opacus ``DPOptimizer``.
    """
    opt_mod = require("opacus.optimizers.optimizer", "dp")
    torch = require("torch", "dp")
    base = type(optimizer)
    if not isinstance(optimizer, opt_mod.DPOptimizer):
        raise ParameterError("use_csprng_noise needs an Opacus DPOptimizer")
    cls = _CSPRNG_CLASSES.get(base)
    if cls is None:

        def add_noise(self: Any) -> None:
            std = float(self.noise_multiplier * self.max_grad_norm)
            for p in self.params:
                opt_mod._check_processed_flag(p.summed_grad)
                ref = p.summed_grad
                if std > 0.0:
                    z = gaussian_noise(self._secagg_noise_rng, int(ref.numel()))
                    noise = torch.from_numpy(z * std).to(device=ref.device, dtype=ref.dtype)
                    p.grad = (ref + noise.view_as(ref)).view_as(p)
                else:
                    p.grad = ref.clone().view_as(p)
                opt_mod._mark_as_processed(p.summed_grad)

        cls = type(f"Csprng{base.__name__}", (base,), {"add_noise": add_noise})
        _CSPRNG_CLASSES[base] = cls
    if base is not cls:
        optimizer.__class__ = cls
    optimizer._secagg_noise_rng = rng
    return optimizer


def make_private(
    *, model: Any, optimizer: Any, data_loader: Any, config: DPSGDConfig,
    noise_rng: RandomSource | None = None,
) -> PrivateTraining:
    """Make a client's local training DP-SGD with Opacus.

    Parameters
    ----------
    model:
        A ``torch.nn.Module`` (e.g. a PEFT LoRA causal LM) whose trainable parameters
        are exactly those to be trained privately.
    optimizer:
        A torch optimizer over those parameters.
    data_loader:
        A ``torch.utils.data.DataLoader`` over the client's examples (each example
        one sequence).
    config:
        :class:`DPSGDConfig`.
    noise_rng:
        CSPRNG for the Gaussian noise (default: a fresh :class:`AesCtrRandom`);
        ignored with ``config.insecure_rng``.

    Raises
    ------
    MissingExtraError
        If opacus/torch are missing.
    LocalProtocolError
        If the model has no trainable parameters.
    """
    if not isinstance(config, DPSGDConfig):
        raise ParameterError("config must be a DPSGDConfig")
    torch = require("torch", "dp")
    opacus = require("opacus", "dp")
    if not any(p.requires_grad for p in model.parameters()):
        raise LocalProtocolError("the model has no trainable parameters")
    generator = None
    if config.insecure_rng:
        warnings.warn(
            "DP-SGD noise from torch's default generator (insecure_rng=True): "
            "not a cryptographically secure guarantee",
            InsecureConfigurationWarning,
            stacklevel=2,
        )
        if config.insecure_seed is not None:
            generator = torch.Generator().manual_seed(int(config.insecure_seed))
    with warnings.catch_warnings():
        # Opacus's own "secure RNG off" warning: our CSPRNG noise replaces it below
        warnings.simplefilter("ignore", UserWarning)
        engine = opacus.PrivacyEngine(accountant=config.accountant.value, secure_mode=False)
    kwargs: dict[str, Any] = {
        "module": model,
        "optimizer": optimizer,
        "data_loader": data_loader,
        "noise_multiplier": float(config.noise_multiplier),
        "max_grad_norm": float(config.max_grad_norm),
        "poisson_sampling": config.poisson_sampling,
        "grad_sample_mode": config.grad_sample_mode.value,
        "noise_generator": generator,
        "loss_reduction": "mean",
    }
    if config.grad_sample_mode is GradSampleMode.GHOST:
        crit = torch.nn.CrossEntropyLoss(reduction="mean")
        m, opt, criterion, loader = engine.make_private(criterion=crit, **kwargs)
    else:
        m, opt, loader = engine.make_private(**kwargs)
        criterion = torch.nn.CrossEntropyLoss(reduction="mean")
    if not config.insecure_rng:
        opt = use_csprng_noise(opt, noise_rng if noise_rng is not None else AesCtrRandom())
    return PrivateTraining(
        model=m,
        optimizer=opt,
        data_loader=loader,
        config=config,
        engine=engine,
        criterion=criterion,
    )
