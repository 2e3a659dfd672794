"""End to end: distributed DP through SecAgg+ (``secagg.sim.secure_sum``).

100 clients, repeated rounds: the decoded mean is unbiased for the true mean and the
error has the per-coordinate variance the parameters promise,
``(mσ² + r)/(s²m²)`` with rounding variance ``0 ≤ r ≤ m/4``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import secagg.sim as sim
from secagg.dp.distributed import DDPParams, DDPRound, Mechanism
from secagg.errors import AbortedError
from secagg.primitives.rand import InsecureDeterministicRandom, random_unit_float64
from secagg.runtime import dp_secure_mean

Z = 5.0


def run_rounds(mech: Mechanism, rounds: int, dim: int, seed: int, dropouts=None):
    m = 100
    p = DDPParams(
        mechanism=mech,
        dim=dim,
        l2_clip=1.0,
        bits=20,
        scale=400.0,
        local_stddev=12.0,
        min_survivors=90,
        max_clients=100,
    )
    r = InsecureDeterministicRandom(seed)
    data = r.child("data")
    xs = {}
    for cid in range(1, m + 1):
        v = random_unit_float64(data, dim) - 0.3
        xs[cid] = v / np.linalg.norm(v) * 0.8  # inside the clip ball
    errors = []
    survivors = None
    for t in range(rounds):
        rnd = DDPRound(params=p, rotation_seed=f"round-{t:012d}-rotation".encode())
        agg = dp_secure_mean(
            xs,
            rnd,
            rng=r.child(f"round-{t}"),
            protocol=sim.ProtocolKind.SECAGG_PLUS,
            dropouts=dropouts,
        )
        survivors = agg.survivors
        true = np.mean([xs[c] for c in agg.survivors], axis=0)
        errors.append(agg.mean - true)
    return p, np.asarray(errors), survivors


def check(p: DDPParams, err: np.ndarray, m: int) -> None:
    lo = m * p.local_stddev**2 / (p.scale * m) ** 2
    hi = (m * p.local_stddev**2 + m / 4) / (p.scale * m) ** 2
    n = err.size
    se = hi * math.sqrt(2 / n)
    # variance of the noise in the aggregate (false-failure ≈ 5.7e-7)
    assert lo - Z * se < float(np.mean(err**2)) < hi + Z * se
    # the mean of the decoded aggregate is the true mean (false-failure ≈ 5.7e-7)
    assert abs(float(err.mean())) < Z * math.sqrt(hi / n)


@pytest.mark.parametrize("mech", list(Mechanism))
def test_dp_aggregate_of_100_clients_through_secagg_plus(mech: Mechanism) -> None:
    """2 rounds × 256 coordinates = 512 error samples (SE of the variance ≈ 6 %)."""
    p, err, surv = run_rounds(mech, rounds=2, dim=256, seed=31)
    assert len(surv) == 100
    check(p, err, 100)


def test_dropouts_above_min_survivors_still_decode() -> None:
    drops = {sim.Phase.MASKED_INPUT: [5, 17, 60]}
    p, err, surv = run_rounds(Mechanism.DDGAUSS, rounds=2, dim=128, seed=32, dropouts=drops)
    assert len(surv) == 97 and not {5, 17, 60} & set(surv)
    check(p, err, 97)


def test_too_many_dropouts_abort_and_release_nothing() -> None:
    drops = {sim.Phase.MASKED_INPUT: list(range(2, 14))}  # 88 < n_min = 90
    with pytest.raises(AbortedError):
        run_rounds(Mechanism.SKELLAM, rounds=1, dim=64, seed=33, dropouts=drops)


@pytest.mark.slow
@pytest.mark.parametrize("mech", list(Mechanism))
def test_dp_aggregate_variance_many_rounds(mech: Mechanism) -> None:
    """20 rounds × 1024 coordinates (SE of the variance ≈ 1 %)."""
    p, err, _ = run_rounds(mech, rounds=20, dim=1024, seed=34)
    check(p, err, 100)
