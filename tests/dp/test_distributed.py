"""Distributed-DP encoding: clip bound, unbiased rounding, bit-width rule, decoding,
noise variance of the aggregate and the n_min abort (protocols/dp.md §1, §3–§5).

The modular sum here is computed directly with ``add_into`` (exactly what any secure
sum returns); the end-to-end run through SecAgg+ is in test_end_to_end.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.dp.distributed import (
    DDPParams,
    DDPRound,
    Mechanism,
    heuristic_scale,
    inflated_l2_bound,
    mod_clip_stddevs,
    plan,
)
from secagg.encoding.modular import add_into, dtype_for_bits
from secagg.errors import AbortedError, ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom, random_unit_float64

SEED = b"rotation-seed-for-round-0001"
Z = 5.0  # 5 standard errors: false-failure ≈ 5.7e-7 per check


def params(**kw) -> DDPParams:
    base = dict(
        mechanism=Mechanism.DDGAUSS,
        dim=300,
        l2_clip=1.0,
        bits=20,
        scale=500.0,
        local_stddev=40.0,
        min_survivors=8,
        max_clients=10,
    )
    base.update(kw)
    return DDPParams(**base)


def unit_vectors(n: int, dim: int, seed: int, norm: float) -> list[np.ndarray]:
    r = InsecureDeterministicRandom(seed)
    out = []
    for _ in range(n):
        v = random_unit_float64(r, dim) - 0.5
        out.append(v / np.linalg.norm(v) * norm)
    return out


def modular_sum(vectors, bits: int) -> np.ndarray:
    acc = np.zeros_like(vectors[0])
    for v in vectors:
        add_into(acc, v, bits)
    return acc


@pytest.mark.parametrize("mech", list(Mechanism))
def test_plan_meets_epsilon_and_the_bit_width_rule(mech: Mechanism) -> None:
    p = plan(
        mechanism=mech,
        epsilon=4.0,
        delta=1e-5,
        dim=1000,
        l2_clip=0.5,
        bits=18,
        min_survivors=80,
        max_clients=100,
        rounds=5,
        sampling_rate=0.2,
    )
    assert p.epsilon(delta=1e-5, rounds=5, sampling_rate=0.2) <= 4.0
    assert p.epsilon(delta=1e-5, rounds=5, sampling_rate=0.2) > 4.0 * 0.99
    assert p.wrap_probability_bound <= 1e-4
    k = mod_clip_stddevs(1e-4)
    assert 2 * k * math.sqrt(p.wrap_variance_proxy) <= 2.0**18
    # a realised survivor count above n_min has at most the calibrated ε
    assert p.epsilon(delta=1e-5, rounds=5, sampling_rate=0.2, survivors=95) <= 4.0


def test_bit_width_rule_refuses_too_few_bits() -> None:
    # 2^(2b) = 256 < n k² = 100 · 19.8
    with pytest.raises(ParameterError):
        plan(
            mechanism=Mechanism.DDGAUSS,
            epsilon=1.0,
            delta=1e-5,
            dim=100,
            l2_clip=1.0,
            bits=4,
            min_survivors=90,
            max_clients=100,
        )
    with pytest.raises(ParameterError):
        heuristic_scale(local_stddev=1.0, l2_clip=1.0, bits=4, clients=100, dim=128, k=4.45)
    # a scale that makes the aggregate overflow 2^b is refused
    with pytest.raises(ParameterError):
        params(scale=1e6)
    with pytest.raises(ParameterError):
        params(local_stddev=1e5)
    assert params().wrap_probability_bound < 1e-4


@pytest.mark.parametrize(
    "kw",
    [
        dict(mechanism="ddgauss"),
        dict(dim=0),
        dict(l2_clip=-1.0),
        dict(bits=63),
        dict(bits=1),
        dict(scale=float("nan")),
        dict(min_survivors=0),
        dict(max_clients=5),
        dict(beta=1.0),
        dict(modclip_prob=0.0),
        dict(local_stddev=True),
    ],
)
def test_bad_params_raise(kw) -> None:
    with pytest.raises(ParameterError):
        params(**kw)


def test_clip_bound_holds_after_rotation_and_rounding() -> None:
    """Every rounded vector has ‖r‖₂ ≤ Δ₂ (deterministic, by the conditional rounding);
    the rotated, clipped vector has norm ≤ c."""
    p = params(dim=257, scale=300.0)
    rnd = DDPRound(params=p, rotation_seed=SEED)
    r = InsecureDeterministicRandom(11)
    for i, norm in enumerate([0.01, 0.9, 1.0, 3.0, 1e4]):
        for x in unit_vectors(20, p.dim, 100 + i, norm):
            y = rnd.rotation.forward(x)
            clipped = y * min(1.0, p.l2_clip / np.linalg.norm(y))
            assert np.linalg.norm(clipped) <= p.l2_clip * (1 + 1e-12)
            rounded = rnd.rotate_clip_round(x, r)
            assert rounded.dtype == np.int64
            assert np.linalg.norm(rounded) <= p.l2_sensitivity
    # Δ₂ is the smaller of the two KLS bounds
    cs, dd = p.l2_clip * p.scale, p.padded_dim
    beta = p.beta
    assert math.isclose(
        p.l2_sensitivity,
        math.sqrt(
            min(
                cs**2 + dd / 4 + math.sqrt(2 * math.log(1 / beta)) * (cs + math.sqrt(dd) / 2),
                (cs + math.sqrt(dd)) ** 2,
            )
        ),
    )
    assert inflated_l2_bound(scaled_l2_clip=cs, dim=dd, beta=0.0) == cs + math.sqrt(dd)


def test_rounding_is_unbiased() -> None:
    """Mean of 4000 conditional roundings of one vector vs s·clip(R x), per coordinate.

    Each coordinate's rounding is Bernoulli(frac) so its SE is sqrt(frac(1−frac)/N);
    all 64 coordinates within 5 SE: false-failure ≈ 64 · 5.7e-7 ≈ 4e-5.
    """
    p = params(dim=64, scale=37.3, max_clients=10)
    rnd = DDPRound(params=p, rotation_seed=SEED)
    x = unit_vectors(1, 64, 5, 0.8)[0]
    target = rnd.rotation.forward(x) * p.scale
    reps = 4000
    r = InsecureDeterministicRandom(12)
    acc = np.zeros(64)
    for _ in range(reps):
        acc += rnd.rotate_clip_round(x, r)
    mean = acc / reps
    frac = target - np.floor(target)
    se = np.sqrt(np.maximum(frac * (1 - frac), 1e-12) / reps)
    assert np.all(np.abs(mean - target) <= Z * se + 1e-12)


@pytest.mark.parametrize("mech", list(Mechanism))
def test_aggregate_decodes_to_the_mean_with_the_expected_noise(mech: Mechanism) -> None:
    """100 clients, D = 4096 coordinates: the decoded sum minus the true sum has
    per-coordinate variance between mσ²/s² and (mσ² + m/4)/s² (rounding adds ≤ 1/4
    per client); checked with a 5-SE margin on the sample variance (SE ≈ v·sqrt(2/D)):
    false-failure ≈ 1e-6."""
    m, dim = 100, 4096
    p = params(
        mechanism=mech,
        dim=dim,
        scale=2000.0,
        local_stddev=30.0,
        bits=24,
        min_survivors=90,
        max_clients=100,
    )
    rnd = DDPRound(params=p, rotation_seed=SEED)
    xs = unit_vectors(m, dim, 21, 0.7)
    # make the true mean far from zero in one coordinate, and all-negative elsewhere
    for x in xs:
        x[:] = -np.abs(x)
    r = InsecureDeterministicRandom(22)
    enc = [rnd.encode(x, r.child(str(i))) for i, x in enumerate(xs)]
    assert all(e.dtype == dtype_for_bits(24) and e.shape == (p.padded_dim,) for e in enc)
    total = modular_sum(enc, p.bits)
    got = rnd.decode_sum(total, m)
    err = got - np.sum(xs, axis=0)
    lo = m * p.local_stddev**2 / p.scale**2
    hi = (m * p.local_stddev**2 + m / 4) / p.scale**2
    se = hi * math.sqrt(2 / dim)
    assert lo - Z * se < err.var() < hi + Z * se
    assert abs(err.mean()) < Z * math.sqrt(hi / dim)
    mean = rnd.decode_mean(total, m)
    assert np.allclose(mean, got / m)


def test_decoder_aborts_below_min_survivors_and_rejects_hostile_totals() -> None:
    p = params()
    rnd = DDPRound(params=p, rotation_seed=SEED)
    ok = np.zeros(p.padded_dim, dtype=np.uint32)
    with pytest.raises(AbortedError):
        rnd.decode_sum(ok, p.min_survivors - 1)
    with pytest.raises(AbortedError):
        rnd.decode_mean(ok, 0)
    for bad in (
        np.zeros(p.padded_dim - 1, dtype=np.uint32),
        np.zeros(p.padded_dim, dtype=np.uint64),
        np.full(p.padded_dim, 1 << 20, dtype=np.uint32),
        np.zeros((2, p.padded_dim), dtype=np.uint32),
    ):
        with pytest.raises(ParameterError):
            rnd.decode_sum(bad, p.min_survivors)
    with pytest.raises(ParameterError):
        rnd.decode_sum(ok, True)
    assert np.array_equal(rnd.decode_sum(ok, p.min_survivors), np.zeros(p.dim))


def test_encode_rejects_malformed_updates() -> None:
    rnd = DDPRound(params=params(), rotation_seed=SEED)
    r = InsecureDeterministicRandom(1)
    for bad in (np.ones(299), np.ones((300, 1)), np.full(300, np.inf)):
        with pytest.raises(ParameterError):
            rnd.encode(bad, r)
    with pytest.raises(ParameterError):
        DDPRound(params=params(), rotation_seed=b"short")


def test_epsilon_refuses_survivors_below_min() -> None:
    p = params()
    with pytest.raises(ParameterError):
        p.epsilon(delta=1e-5, survivors=p.min_survivors - 1)
    assert p.epsilon(delta=1e-5, survivors=p.max_clients) <= p.epsilon(delta=1e-5) * (1 + 1e-12)
