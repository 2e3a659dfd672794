"""User-level distributed DP over secure aggregation (``protocols/dp.md`` §1, §3–§5).

Client: flatten → randomised Hadamard rotation → L2 clip → scale → conditional
randomised rounding → local discrete Gaussian / Skellam noise with
``σ = σ_central/sqrt(n_min)`` → wrap into Z_{2^b} → secure sum.
Server: unwrap → unscale → inverse rotation → divide by survivors; abort below
``n_min`` survivors.

* :class:`DDPParams` — validated parameters of one deployment (checks the bit-width
  rule and refuses parameters that break it).
* :func:`plan` — choose scale and noise for a target ``(ε, δ)`` over ``rounds`` rounds
  with client sampling rate ``q``.
* :class:`DDPRound` — one round (parameters + public rotation seed): ``encode`` on a
  client, ``decode_sum`` / ``decode_mean`` on the server.
* the whole round (encode, secure sum, decode) is :func:`secagg.runtime.dp_secure_mean`
  (a runtime entry point: this core imports no runtime).

Security notes
--------------
Every random draw (rounding, noise) comes from a CSPRNG
(:class:`~secagg.primitives.rand.RandomSource`).  The privacy guarantee assumes that at
least ``n_min`` clients add their noise honestly and that the secure sum never
reveals a sum of fewer than ``n_min`` inputs (set the SecAgg threshold ``t ≥ n_min``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.dp.accounting import (
    DEFAULT_ORDERS,
    Mechanism,
    MechanismSpec,
    calibrate_local_stddev,
    epsilon,
)
from secagg.dp.rotation import RandomizedHadamard, padded_dim
from secagg.dp.samplers import discrete_gaussian, skellam
from secagg.encoding.modular import UIntArray, check_in_range, unwrap_signed, wrap_signed
from secagg.encoding.quantize import stochastic_round
from secagg.errors import AbortedError, ParameterError
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = [
    "DDPParams",
    "DDPRound",
    "Mechanism",
    "heuristic_scale",
    "inflated_l2_bound",
    "mod_clip_stddevs",
    "plan",
]

FloatArray = npt.NDArray[np.float64]

#: Conditional rounding gives up after this many tries (probability ≤ β^1000).
MAX_ROUNDING_TRIES = 1000
#: Largest bit width: the integer aggregate must fit int64 with headroom.
MAX_BITS = 62
DEFAULT_BETA = math.exp(-0.5)
#: :func:`plan` caps the scale so that ``s·c ≤ 2^32``: finer steps than float64 model
#: values can use gain nothing and would push the noise past the samplers' 2^40 range.
MAX_SCALED_CLIP = 2.0**32
DEFAULT_MODCLIP_PROB = 1e-4


def mod_clip_stddevs(prob: float) -> float:
    """``k = sqrt(2 ln(2/p))``: a sub-Gaussian variable exceeds ``k`` proxies w.p. ``≤ p``."""
    if not (isinstance(prob, (int, float)) and 0.0 < prob < 1.0):
        raise ParameterError("modclip_prob must be in (0, 1)")
    return math.sqrt(2.0 * math.log(2.0 / prob))


def inflated_l2_bound(*, scaled_l2_clip: float, dim: int, beta: float) -> float:
    """``Δ₂``: the norm bound that conditional randomised rounding enforces (KLS 2021).

    ``Δ₂² = min((cs)² + D/4 + sqrt(2 ln(1/β))(cs + sqrt(D)/2), (cs + sqrt(D))²)``;
    ``β = 0`` means unconditional rounding (the deterministic bound ``cs + sqrt(D)``).
    """
    cs = float(scaled_l2_clip)
    det = (cs + math.sqrt(dim)) ** 2
    if beta == 0.0:
        return math.sqrt(det)
    prob = cs * cs + dim / 4.0 + math.sqrt(2.0 * math.log(1.0 / beta)) * (cs + math.sqrt(dim) / 2.0)
    return math.sqrt(min(prob, det))


def heuristic_scale(
    *, local_stddev: float, l2_clip: float, bits: int, clients: int, dim: int, k: float
) -> float:
    """TFF's scale rule: ``s = sqrt(2^{2b} − n k²) / (2k sqrt((c n)²/D + n σ₀²))``.

    ``σ₀`` is the local noise in model units.  With it, ``2k·sqrt(v) = 2^b`` where
    ``v`` is the aggregate's per-coordinate variance proxy in integer units.

    Raises
    ------
    ParameterError
        If ``2^{2b} ≤ n k²`` (no scale can keep the wrap probability below the bound).
    """
    top = 2.0 ** (2 * bits) - clients * k * k
    if top <= 0:
        raise ParameterError(
            f"bits={bits} is too small for {clients} clients at this mod-clip probability "
            f"(need 2^(2b) > n·k² = {clients * k * k:.1f}); increase bits or lower the count"
        )
    return math.sqrt(top) / (
        2.0 * k * math.sqrt((l2_clip * clients) ** 2 / dim + clients * local_stddev**2)
    )


def _num(name: str, v: object, *, lo: float, lo_open: bool = True, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number")
    f = float(v)
    if not math.isfinite(f) or f < lo or (lo_open and f == lo) or f > hi:
        raise ParameterError(f"{name}={v!r} is out of range")
    return f


def _int(name: str, v: object, *, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= int(v) <= hi:
        raise ParameterError(f"{name} must be an integer in [{lo}, {hi}]")
    return int(v)


@dataclass(frozen=True, slots=True, kw_only=True)
class DDPParams:
    """Parameters of the distributed-DP encoding for one deployment.

    Parameters
    ----------
    mechanism:
        :class:`Mechanism` (discrete Gaussian or Skellam).
    dim:
        Length ``d`` of the flattened update.
    l2_clip:
        ``c``, the L2 clip norm in model units.
    bits:
        ``b``, the secure sum works in Z_{2^b}; 2..62.
    scale:
        ``s``: one integer step is ``1/s`` model units.
    local_stddev:
        ``σ`` of each client's noise in integer units.
    min_survivors:
        ``n_min``; the noise is calibrated to it and decoding aborts below it.
    max_clients:
        ``n_max ≥ n_min``, the most inputs ever summed (used by the wrap rule).
    beta:
        Conditional-rounding failure probability ``β ∈ [0, 1)``.
    modclip_prob:
        Bound ``p`` on the per-coordinate modular-wrap probability.

    Raises
    ------
    ParameterError
        On out-of-range values, or if the bit-width rule
        ``2k·sqrt((s c n)²/D + n/4 + nσ²) ≤ 2^b`` (``n = n_max``,
        ``k = sqrt(2 ln(2/p))``) does not hold.
    """

    mechanism: Mechanism
    dim: int
    l2_clip: float
    bits: int
    scale: float
    local_stddev: float
    min_survivors: int
    max_clients: int
    beta: float = DEFAULT_BETA
    modclip_prob: float = DEFAULT_MODCLIP_PROB

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, Mechanism):
            raise ParameterError("mechanism must be a secagg.dp.Mechanism")
        padded_dim(self.dim)
        _num("l2_clip", self.l2_clip, lo=0.0)
        _int("bits", self.bits, lo=2, hi=MAX_BITS)
        _num("scale", self.scale, lo=0.0)
        _num("local_stddev", self.local_stddev, lo=0.0, hi=2.0**40)
        _int("min_survivors", self.min_survivors, lo=1, hi=1 << 30)
        _int("max_clients", self.max_clients, lo=self.min_survivors, hi=1 << 30)
        _num("beta", self.beta, lo=0.0, lo_open=False, hi=0.999)
        k = mod_clip_stddevs(self.modclip_prob)
        need = 2.0 * k * math.sqrt(self.wrap_variance_proxy)
        if need > 2.0**self.bits:
            raise ParameterError(
                f"bits={self.bits} cannot hold the aggregate: 2k·sqrt(v) = {need:.4g} > 2^b "
                f"(mod-clip probability {self.modclip_prob}); lower the scale or raise bits"
            )

    @property
    def padded_dim(self) -> int:
        """``D``, the power of two the rotation pads to."""
        return padded_dim(self.dim)

    @property
    def l2_sensitivity(self) -> float:
        """``Δ₂`` in integer units, enforced by conditional rounding."""
        return inflated_l2_bound(
            scaled_l2_clip=self.l2_clip * self.scale, dim=self.padded_dim, beta=self.beta
        )

    @property
    def l1_sensitivity(self) -> float:
        """``Δ₁ = ceil(Δ₂ · min(sqrt(D), Δ₂))`` (integer vectors)."""
        d2 = self.l2_sensitivity
        return float(math.ceil(d2 * min(math.sqrt(self.padded_dim), d2)))

    @property
    def central_stddev(self) -> float:
        """``σ·sqrt(n_min)``: the least total noise std of the aggregate (integer units)."""
        return self.local_stddev * math.sqrt(self.min_survivors)

    @property
    def wrap_variance_proxy(self) -> float:
        """``v = (s c n)²/D + n/4 + nσ²`` with ``n = n_max`` (integer units)."""
        n = self.max_clients
        sc = self.scale * self.l2_clip
        return sc * sc * n * n / self.padded_dim + n / 4.0 + n * self.local_stddev**2

    @property
    def wrap_probability_bound(self) -> float:
        """``2 exp(−2^{2(b−1)}/(2v))``: per-coordinate wrap probability bound (§4)."""
        half = 4.0 ** (self.bits - 1)
        return min(1.0, 2.0 * math.exp(-half / (2.0 * self.wrap_variance_proxy)))

    def mechanism_spec(self) -> MechanismSpec:
        return MechanismSpec(
            mechanism=self.mechanism,
            l2_sensitivity=self.l2_sensitivity,
            l1_sensitivity=self.l1_sensitivity,
            local_stddev=self.local_stddev,
            dim=self.padded_dim,
        )

    def epsilon(
        self,
        *,
        delta: float,
        rounds: int = 1,
        sampling_rate: float = 1.0,
        survivors: int | None = None,
    ) -> float:
        """``ε`` after ``rounds`` rounds.

        ``survivors=None`` gives the calibrated guarantee (worst case over
        ``[n_min, n_max]``); an integer gives the ε for that realised survivor count.

        Raises
        ------
        ParameterError
            If ``survivors < n_min`` (such a round is aborted and releases nothing) or
            other parameters are invalid.
        """
        if self.local_stddev == 0.0:
            return math.inf
        max_clients: int | None
        if survivors is None:  # worst case over [n_min, n_max]
            clients, max_clients = self.min_survivors, self.max_clients
        else:
            clients = _int("survivors", survivors, lo=self.min_survivors, hi=1 << 30)
            max_clients = None
        return epsilon(
            self.mechanism_spec(),
            delta=delta,
            rounds=rounds,
            sampling_rate=sampling_rate,
            clients=clients,
            max_clients=max_clients,
        )


def plan(
    *,
    mechanism: Mechanism,
    epsilon: float,
    delta: float,
    dim: int,
    l2_clip: float,
    bits: int,
    min_survivors: int,
    max_clients: int,
    rounds: int = 1,
    sampling_rate: float = 1.0,
    beta: float = DEFAULT_BETA,
    modclip_prob: float = DEFAULT_MODCLIP_PROB,
) -> DDPParams:
    """Choose the scale and local noise that give ``(ε, δ)`` after ``rounds`` rounds.

    Iterates scale (TFF heuristic, capped at ``s·c ≤ 2^32``) ↔ noise (bisection on the
    accountant) to a fixed point, then backs the scale off by 1 % so the bit-width
    rule holds with the final noise, and validates (``DDPParams`` re-checks the rule).

    Raises
    ------
    ParameterError
        If the bit width is too small for ``max_clients`` at ``modclip_prob`` or the
        target ε cannot be reached.
    """
    eps_target = _num("epsilon", epsilon, lo=0.0)
    _num("delta", delta, lo=0.0, hi=0.5)
    _int("bits", bits, lo=2, hi=MAX_BITS)
    _int("min_survivors", min_survivors, lo=1, hi=1 << 30)
    _int("max_clients", max_clients, lo=min_survivors, hi=1 << 30)
    _num("l2_clip", l2_clip, lo=0.0)
    big = padded_dim(dim)
    k = mod_clip_stddevs(modclip_prob)
    worst_max = max_clients if mechanism is Mechanism.DDGAUSS else None

    def scale_for(sigma_model: float) -> float:
        s = heuristic_scale(
            local_stddev=sigma_model, l2_clip=l2_clip, bits=bits, clients=max_clients, dim=big, k=k
        )
        return min(s, MAX_SCALED_CLIP / l2_clip)

    def noise_for(scale: float) -> float:
        d2 = inflated_l2_bound(scaled_l2_clip=l2_clip * scale, dim=big, beta=beta)
        d1 = float(math.ceil(d2 * min(math.sqrt(big), d2)))
        return calibrate_local_stddev(
            target_epsilon=eps_target,
            delta=delta,
            rounds=rounds,
            sampling_rate=sampling_rate,
            mechanism=mechanism,
            l2_sensitivity=d2,
            l1_sensitivity=d1,
            dim=big,
            clients=min_survivors,
            max_clients=worst_max,
            orders=DEFAULT_ORDERS,
        )

    sigma_model = l2_clip / math.sqrt(min_survivors)  # start: noise multiplier 1
    for _ in range(30):
        scale = scale_for(sigma_model)
        new = noise_for(scale) / scale
        done = abs(new - sigma_model) <= 1e-4 * new
        sigma_model = new
        if done:
            break
    scale = scale_for(sigma_model * 1.01)
    sigma = noise_for(scale)
    if scale * l2_clip < 1.0:
        warnings.warn(
            f"scale {scale:.3g} leaves fewer than one integer step per clip norm: "
            "quantization error will dominate; raise bits",
            UserWarning,
            stacklevel=2,
        )
    return DDPParams(
        mechanism=mechanism,
        dim=dim,
        l2_clip=l2_clip,
        bits=bits,
        scale=scale,
        local_stddev=sigma,
        min_survivors=min_survivors,
        max_clients=max_clients,
        beta=beta,
        modclip_prob=modclip_prob,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DDPRound:
    """One round: the parameters plus the round's public rotation seed.

    Parameters
    ----------
    params:
        :class:`DDPParams`.
    rotation_seed:
        16..64 public bytes agreed for this round (fixed before clients train).
    """

    params: DDPParams
    rotation_seed: bytes
    _rotation: RandomizedHadamard = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.params, DDPParams):
            raise ParameterError("params must be DDPParams")
        rot = RandomizedHadamard(seed=self.rotation_seed, dim=self.params.dim)
        object.__setattr__(self, "_rotation", rot)

    @property
    def rotation(self) -> RandomizedHadamard:
        return self._rotation

    def rotate_clip_round(self, x: npt.ArrayLike, rng: RandomSource) -> npt.NDArray[np.int64]:
        """Steps 1–4: rotation, clip, scale and conditional randomised rounding.

        Raises
        ------
        ParameterError
            If ``x`` is not a finite 1-D vector of length ``dim``, or rounding failed
            ``MAX_ROUNDING_TRIES`` times (impossible for valid parameters except with
            probability ``β^1000``).
        """
        return self._rotate_clip_round(x, rng).astype(np.int64)

    def _rotate_clip_round(self, x: npt.ArrayLike, rng: RandomSource) -> FloatArray:
        """:meth:`rotate_clip_round` as float64 integers (exact: ``|r_i| ≤ Δ₂ < 2^53``)."""
        p = self.params
        y = self._rotation.forward(x)  # a fresh vector: scaled in place below
        norm = float(np.linalg.norm(y))
        if norm > p.l2_clip:
            y *= p.l2_clip / norm
        y *= p.scale  # z = s·y
        bound = p.l2_sensitivity
        for _ in range(MAX_ROUNDING_TRIES):
            r = stochastic_round(y, rng)
            if float(np.linalg.norm(r)) <= bound:
                return r
            if p.beta == 0.0:  # pragma: no cover - deterministic bound always holds
                break
        raise ParameterError("conditional randomized rounding failed to meet the norm bound")

    def local_noise(self, rng: RandomSource) -> npt.NDArray[np.int64]:
        """Step 5: ``D`` independent noise draws with std ``σ`` (integer units)."""
        p = self.params
        if p.mechanism is Mechanism.DDGAUSS:
            return discrete_gaussian(rng, p.local_stddev, p.padded_dim)
        return skellam(rng, p.local_stddev**2, p.padded_dim)

    def encode(self, x: npt.ArrayLike, rng: RandomSource | None = None) -> UIntArray:
        """The client's input to the secure sum: steps 1–6 of ``protocols/dp.md`` §1.

        Parameters
        ----------
        x:
            The flattened float update, length ``dim``.
        rng:
            CSPRNG for rounding and noise (default :class:`SystemRandom`).

        Raises
        ------
        ParameterError
            On a malformed ``x`` (see :meth:`rotate_clip_round`).

        Security notes
        --------------
        The noise must come from a secret CSPRNG; a seeded
        :class:`~secagg.primitives.rand.InsecureDeterministicRandom` voids the
        guarantee for whoever knows the seed.
        """
        src = (rng if rng is not None else SystemRandom()).fork("dp-encode")
        r = self._rotate_clip_round(x, src.child("dp/rounding"))
        total = self.local_noise(src.child("dp/noise"))
        # r + noise in place: both are integers below 2^53 in magnitude (|r_i| ≤ Δ₂,
        # |noise| ≤ 2^40·O(1)), so the float64 addition and the cast back are exact.
        np.add(total, r, out=total, casting="unsafe")
        return wrap_signed(total, self.params.bits)

    def decode_sum(self, total: npt.NDArray[np.generic], survivors: int) -> FloatArray:
        """Server: the float sum (model units, length ``dim``) from the modular total.

        Raises
        ------
        AbortedError
            If ``survivors < n_min``: nothing is decoded.
        ParameterError
            If ``total`` is not a length-``D`` vector in Z_{2^b}.
        """
        p = self.params
        if isinstance(survivors, bool) or not isinstance(survivors, (int, np.integer)):
            raise ParameterError("survivors must be an integer")
        if survivors < p.min_survivors:
            raise AbortedError(
                f"only {survivors} survivors < n_min = {p.min_survivors}: the noise would be "
                "below the calibrated level, nothing is released"
            )
        vec = check_in_range(total, p.bits)
        if vec.shape[0] != p.padded_dim:
            raise ParameterError(f"total must have length {p.padded_dim}")
        a = unwrap_signed(vec, p.bits).astype(np.float64) / p.scale
        return self._rotation.inverse(a)

    def decode_mean(self, total: npt.NDArray[np.generic], survivors: int) -> FloatArray:
        """:meth:`decode_sum` divided by ``survivors``."""
        return self.decode_sum(total, survivors) / float(survivors)
