"""What user-level DP will do to a training run, said before it starts and after each round.

The distributed-DP aggregator (:class:`~secagg.train.aggregators.DPMaskedAggregator`)
plans its noise from ``(ε, δ, rounds, bits, cohort)``.  This module turns that plan
into numbers a user can act on:

* :func:`plan_user_dp` — the same :func:`secagg.dp.plan` the aggregator runs, plus
  the **expected noise norm of the mean update** in model units,
  ``‖noise‖ ≈ sqrt(d·(σ² + 1/4)/n) / s`` (``σ`` local noise and ``s`` scale in
  integer units, ``n`` survivors, ``d`` parameters; ``1/4`` bounds the variance of
  randomized rounding).  A mean of updates clipped to ``C`` has norm ``≤ C``, so
  ``‖noise‖ / C`` is a lower bound on the noise-to-signal ratio of every round.
  Above :data:`NOISE_DOMINATES` (2) the plan carries a warning; above
  :data:`MAX_NOISE_TO_CLIP` (10) it is refused with the smallest cohort that would
  pass (``allow_noise_dominated=True`` downgrades the refusal to a warning).
* :class:`UserDPAccountant` — the ε actually spent: per round (at that round's
  survivor count) and cumulative (Rényi composition of the rounds so far).
* :func:`round_noise_report` — after a round: the noise-to-signal ratio of the mean
  update against the measured norm of the clipped mean.

Pure numpy on top of :mod:`secagg.dp`; no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secagg.dp.accounting import DEFAULT_ORDERS, rdp_to_dp
from secagg.dp.distributed import DDPParams, Mechanism, plan
from secagg.errors import ParameterError

__all__ = [
    "MAX_NOISE_TO_CLIP",
    "NOISE_DOMINATES",
    "UserDPAccountant",
    "UserDPPlan",
    "expected_noise_norm",
    "plan_user_dp",
    "smallest_cohort",
]

#: Noise-to-signal ratio above which the console and the report say "noise dominates".
NOISE_DOMINATES = 2.0
#: A plan whose expected noise norm exceeds this many clip norms is refused.
MAX_NOISE_TO_CLIP = 10.0
#: Largest cohort :func:`smallest_cohort` looks at.
_MAX_COHORT = 1 << 20


def expected_noise_norm(params: DDPParams, survivors: int) -> float:
    """Expected L2 norm of the error (DP noise + rounding) in the decoded mean.

    ``sqrt(d · n(σ² + 1/4)) / (s·n)``: per coordinate the integer sum carries
    ``n`` noise draws of variance ``σ²`` and ``n`` rounding errors of variance
    ``≤ 1/4``; the inverse rotation is orthogonal, so the first ``d`` coordinates of
    the decoded sum carry the same per-coordinate variance, divided by ``s`` and ``n``.
    """
    n = int(survivors)
    if n < 1:
        raise ParameterError("survivors must be >= 1")
    var = n * (params.local_stddev**2 + 0.25)
    return math.sqrt(params.dim * var) / (params.scale * n)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDPPlan:
    """A planned user-level DP run (see the module docstring)."""

    params: DDPParams
    epsilon: float
    delta: float
    rounds: int
    cohort: int
    min_survivors: int
    noise_norm: float
    noise_to_clip: float
    smallest_ok_cohort: int | None
    smallest_quiet_cohort: int | None
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        p = self.params
        return {
            "mechanism": p.mechanism.value,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rounds": self.rounds,
            "cohort": self.cohort,
            "min_survivors": self.min_survivors,
            "bits": p.bits,
            "scale": p.scale,
            "local_stddev": p.local_stddev,
            "central_stddev": p.central_stddev,
            "padded_dim": p.padded_dim,
            "l2_clip": p.l2_clip,
            "expected_noise_norm_of_mean": self.noise_norm,
            "noise_to_clip": self.noise_to_clip,
            "noise_dominates": self.noise_to_clip > NOISE_DOMINATES,
            "smallest_cohort_within_refusal_limit": self.smallest_ok_cohort,
            "smallest_cohort_noise_not_dominating": self.smallest_quiet_cohort,
            "warnings": list(self.warnings),
        }


def _dropped(cohort: int, dropout: float) -> int:
    return min(math.floor(dropout * cohort + 0.5), cohort - 1)


def _plan_for(
    *, mechanism: Mechanism, epsilon: float, delta: float, dim: int, l2_clip: float,
    bits: int, rounds: int, cohort: int, dropout: float,
) -> DDPParams:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the scale warning: judged below
        return plan(
            mechanism=mechanism, epsilon=epsilon, delta=delta, dim=dim, l2_clip=l2_clip,
            bits=bits, min_survivors=cohort - _dropped(cohort, dropout), max_clients=cohort,
            rounds=rounds, sampling_rate=1.0,
        )


def smallest_cohort(
    *, mechanism: Mechanism, epsilon: float, delta: float, dim: int, l2_clip: float,
    bits: int, rounds: int, dropout: float, max_noise_to_clip: float, start: int = 1,
) -> int | None:
    """The fewest clients per round whose plan keeps ``noise/C ≤ max_noise_to_clip``.

    Exponential search from ``start`` then bisection (the ratio falls with the cohort
    as ``≈ 1/sqrt(n)``); ``None`` if no cohort up to 2^20 does (e.g. ``bits`` cannot
    hold that many clients).
    """

    def ok(n: int) -> bool | None:
        try:
            p = _plan_for(mechanism=mechanism, epsilon=epsilon, delta=delta, dim=dim,
                          l2_clip=l2_clip, bits=bits, rounds=rounds, cohort=n, dropout=dropout)
        except ParameterError:
            return None
        return expected_noise_norm(p, p.min_survivors) <= max_noise_to_clip * l2_clip

    lo, hi = max(1, start), max(1, start)
    while True:
        r = ok(hi)
        if r:
            break
        if r is None and hi > 2 * start:
            return None
        lo, hi = hi, hi * 2
        if hi > _MAX_COHORT:
            return None
    if hi == lo:
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def plan_user_dp(
    *,
    mechanism: str,
    epsilon: float,
    delta: float,
    dim: int,
    l2_clip: float,
    bits: int,
    rounds: int,
    cohort: int,
    dropout: float,
    num_clients: int,
    allow_noise_dominated: bool = False,
) -> UserDPPlan:
    """Plan user-level distributed DP for a run, or refuse it with a reason.

    Raises
    ------
    ParameterError
        ``epsilon ≤ 0``, ``delta ≥ 1/num_clients`` (δ must be small against the
        number of users it protects), a plan the bit width cannot hold, or — unless
        ``allow_noise_dominated`` — an expected noise norm above
        :data:`MAX_NOISE_TO_CLIP` clip norms; the message names the smallest cohort
        that passes.
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not (
        math.isfinite(epsilon) and epsilon > 0
    ):
        raise ParameterError(f"--epsilon must be a positive finite number (got {epsilon})")
    if not (isinstance(delta, int | float) and 0 < delta < 1):
        raise ParameterError(f"--delta must be in (0, 1) (got {delta})")
    if delta >= 1.0 / num_clients:
        raise ParameterError(
            f"--delta {delta:g} >= 1/n = 1/{num_clients}: a δ that large allows "
            f"revealing one of the {num_clients} users outright; use δ < {1 / num_clients:.3g} "
            "(e.g. 1e-5)"
        )
    mech = Mechanism(mechanism)
    common: dict[str, Any] = {
        "mechanism": mech, "epsilon": float(epsilon), "delta": float(delta), "dim": dim,
        "l2_clip": float(l2_clip), "bits": bits, "rounds": rounds, "dropout": dropout,
    }
    try:
        params = _plan_for(cohort=cohort, **common)
    except ParameterError as exc:
        raise ParameterError(f"user-level DP cannot be planned: {exc}") from exc
    n_min = params.min_survivors
    noise = expected_noise_norm(params, n_min)
    ratio = noise / l2_clip
    ok_cohort = smallest_cohort(max_noise_to_clip=MAX_NOISE_TO_CLIP, start=cohort, **common) \
        if ratio > MAX_NOISE_TO_CLIP else cohort
    quiet = smallest_cohort(max_noise_to_clip=NOISE_DOMINATES, start=max(cohort, ok_cohort or 1),
                            **common) if ratio > NOISE_DOMINATES else cohort
    msgs: list[str] = []
    where = (f"ε={epsilon:g}, δ={delta:g} over {rounds} rounds, {bits}-bit sum, "
             f"{cohort} clients per round ({n_min} counted as survivors)")
    if ratio > MAX_NOISE_TO_CLIP:
        need = (f"the smallest cohort that passes is --per-round {ok_cohort} "
                f"(and --clients >= {ok_cohort})" if ok_cohort is not None else
                f"no cohort up to {_MAX_COHORT} passes at {bits} bits")
        text = (f"user-level DP noise would swamp the model: {where} gives an expected noise "
                f"norm {noise:.3g} on the mean update, {ratio:.1f}× the L2 clip {l2_clip:g} "
                f"(the largest a mean update can be; limit {MAX_NOISE_TO_CLIP:g}×); {need}")
        if not allow_noise_dominated:
            raise ParameterError(text + "; --allow-noise-dominated runs it anyway")
        msgs.append(text)
    elif ratio > NOISE_DOMINATES:
        tail = (f"; it stops dominating (≤ {NOISE_DOMINATES:g}×) at about {quiet} clients per "
                "round" if quiet is not None else "")
        msgs.append(
            f"noise dominates: expected noise norm {noise:.3g} on the mean update is "
            f"{ratio:.1f}× the L2 clip {l2_clip:g} ({where}){tail}"
        )
    if params.scale * l2_clip < 1.0:
        msgs.append(f"scale {params.scale:.3g} leaves < 1 integer step per clip norm: "
                    "rounding error dominates; raise --dp-bits")
    return UserDPPlan(
        params=params, epsilon=float(epsilon), delta=float(delta), rounds=rounds,
        cohort=cohort, min_survivors=n_min, noise_norm=noise, noise_to_clip=ratio,
        smallest_ok_cohort=ok_cohort, smallest_quiet_cohort=quiet, warnings=tuple(msgs),
    )


class UserDPAccountant:
    """The user-level ε actually spent, round by round (Rényi composition).

    A round with ``m`` survivors is charged the RDP curve of the mechanism at ``m``
    noise summands (no sampling amplification claimed, as in the plan); the cumulative
    ε composes the curves of every completed round.  Aborted rounds release nothing
    and are charged nothing.
    """

    def __init__(self, params: DDPParams, delta: float, *, orders: Sequence[int] = DEFAULT_ORDERS):
        self.params = params
        self.delta = float(delta)
        self.orders = tuple(orders)
        self._spec = params.mechanism_spec()
        self._total = np.zeros(len(self.orders))
        self.survivors: list[int] = []

    def record(self, survivors: int) -> tuple[float, float]:
        """Charge one released round; returns ``(ε of this round, cumulative ε)``."""
        if survivors < self.params.min_survivors:
            raise ParameterError("a round below n_min releases nothing and is not charged")
        rdp = self._spec.rdp(self.orders, int(survivors))
        self._total = self._total + rdp
        self.survivors.append(int(survivors))
        return (rdp_to_dp(self.orders, rdp, self.delta)[0],
                rdp_to_dp(self.orders, self._total, self.delta)[0])

    @property
    def epsilon(self) -> float:
        if not self.survivors:
            return 0.0
        return rdp_to_dp(self.orders, self._total, self.delta)[0]
