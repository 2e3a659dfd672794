"""Accounting: independent computations (Opacus's RDP accountant, closed forms)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from secagg.dp.accounting import (
    DEFAULT_ORDERS,
    Mechanism,
    MechanismSpec,
    calibrate_local_stddev,
    ddgauss_zcdp_epsilon,
    epsilon,
    gaussian_rdp,
    poisson_subsampled_rdp,
    rdp_to_dp,
    sampled_gaussian_rdp,
    skellam_rdp,
)
from secagg.errors import ParameterError

ORDERS = [a for a in DEFAULT_ORDERS if a <= 256]  # Opacus overflows to NaN far above
RTOL = 1e-6


@pytest.fixture
def opacus_rdp() -> Any:
    """Opacus's RDP analysis (the independent reference); skips only the tests using it."""
    return pytest.importorskip("opacus.accountants.analysis.rdp")


@pytest.mark.parametrize(("q", "z", "steps"), [(0.01, 1.1, 1000), (0.1, 0.8, 50), (1.0, 2.0, 10)])
def test_sampled_gaussian_rdp_matches_opacus(
    opacus_rdp: Any, q: float, z: float, steps: int
) -> None:
    ours = steps * sampled_gaussian_rdp(ORDERS, sampling_rate=q, noise_multiplier=z)
    theirs = np.asarray(opacus_rdp.compute_rdp(q=q, noise_multiplier=z, steps=steps, orders=ORDERS))
    assert np.allclose(ours, theirs, rtol=RTOL, atol=0)
    e1, _ = rdp_to_dp(ORDERS, ours, 1e-5)
    e2, _ = opacus_rdp.get_privacy_spent(orders=ORDERS, rdp=theirs, delta=1e-5)
    assert math.isclose(e1, float(e2), rel_tol=RTOL)


def test_ddgauss_equals_gaussian_when_tau_vanishes(opacus_rdp: Any) -> None:
    """σ ≥ 10 makes τ ≈ 10·m·e^{−π²·100} = 0 in float64: the distributed discrete
    Gaussian's ε over T rounds (q = 1) equals the Gaussian mechanism's ε with noise
    multiplier sqrt(m)·σ/Δ₂, computed by Opacus's accountant."""
    m, sigma, d2, dim, rounds = 100, 12.0, 60.0, 4096, 20
    spec = MechanismSpec(
        mechanism=Mechanism.DDGAUSS,
        l2_sensitivity=d2,
        l1_sensitivity=d2 * 64,
        local_stddev=sigma,
        dim=dim,
    )
    ours = epsilon(spec, delta=1e-6, rounds=rounds, clients=m)
    z = math.sqrt(m) * sigma / d2
    rdp = opacus_rdp.compute_rdp(q=1.0, noise_multiplier=z, steps=rounds, orders=ORDERS)
    theirs, _ = opacus_rdp.get_privacy_spent(orders=ORDERS, rdp=rdp, delta=1e-6)
    assert math.isclose(ours, float(theirs), rel_tol=RTOL)


def test_ddgauss_zcdp_closed_form() -> None:
    """KLS Theorem evaluated term by term with math only (small σ: τ matters)."""
    d2, sigma, m, dim = 30.0, 0.6, 7, 64
    tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, m))
    a = math.sqrt(d2**2 / (m * sigma**2) + tau * dim / 2)
    b = d2 / (math.sqrt(m) * sigma) + tau * math.sqrt(dim)
    got = ddgauss_zcdp_epsilon(l2_sensitivity=d2, local_stddev=sigma, clients=m, dim=dim)
    assert math.isclose(got, min(a, b), rel_tol=1e-12)
    # the worst case over a range of survivor counts is the max of the single counts
    worst = max(
        ddgauss_zcdp_epsilon(l2_sensitivity=d2, local_stddev=sigma, clients=k, dim=dim)
        for k in range(3, 12)
    )
    rng_eps = ddgauss_zcdp_epsilon(
        l2_sensitivity=d2, local_stddev=sigma, clients=3, dim=dim, max_clients=11
    )
    assert math.isclose(worst, rng_eps, rel_tol=1e-12)


def test_skellam_rdp_closed_form() -> None:
    d1, d2, mu = 900.0, 40.0, 5000.0
    for a in (2, 7, 64):
        want = a * d2**2 / (2 * mu) + min(
            ((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2), 3 * d1 / (2 * mu)
        )
        got = skellam_rdp([a], l1_sensitivity=d1, l2_sensitivity=d2, variance=mu)[0]
        assert math.isclose(got, want, rel_tol=1e-12)


def test_zhu_wang_bound_is_an_upper_bound_and_exact_at_q1() -> None:
    base = lambda o: gaussian_rdp(o, noise_multiplier=1.3)  # noqa: E731
    exact = sampled_gaussian_rdp(ORDERS, sampling_rate=0.05, noise_multiplier=1.3)
    zw = poisson_subsampled_rdp(ORDERS, sampling_rate=0.05, base_rdp=base)
    assert np.all(zw >= exact * (1 - 1e-12))
    assert np.all(zw <= base(ORDERS) * (1 + 1e-12))
    assert np.allclose(
        poisson_subsampled_rdp(ORDERS, sampling_rate=1.0, base_rdp=base), base(ORDERS)
    )
    # α = 2: ln((1 − q)(1 + q) + q² e^{ε(2)}), capped at ε(2)
    q, e2 = 0.05, float(base([2])[0])
    direct = math.log((1 - q) * (1 + q) + q * q * math.exp(e2))
    assert math.isclose(float(zw[0]), min(direct, e2), rel_tol=1e-12)


@pytest.mark.parametrize("mech", list(Mechanism))
def test_calibration_meets_target(mech: Mechanism) -> None:
    kw = dict(delta=1e-5, rounds=50, sampling_rate=0.02)
    sigma = calibrate_local_stddev(
        target_epsilon=2.0,
        mechanism=mech,
        l2_sensitivity=300.0,
        l1_sensitivity=300.0 * 32,
        dim=1024,
        clients=50,
        max_clients=60,
        **kw,
    )
    spec = MechanismSpec(
        mechanism=mech, l2_sensitivity=300.0, l1_sensitivity=9600.0, local_stddev=sigma, dim=1024
    )
    eps = epsilon(spec, clients=50, max_clients=60, **kw)
    assert eps <= 2.0
    spec_less = MechanismSpec(
        mechanism=mech,
        l2_sensitivity=300.0,
        l1_sensitivity=9600.0,
        local_stddev=sigma * (1 - 1e-5),
        dim=1024,
    )
    assert epsilon(spec_less, clients=50, max_clients=60, **kw) > 2.0 - 1e-3


def test_more_rounds_and_fewer_clients_cost_more() -> None:
    spec = MechanismSpec(
        mechanism=Mechanism.SKELLAM,
        l2_sensitivity=100.0,
        l1_sensitivity=3200.0,
        local_stddev=20.0,
        dim=1024,
    )
    e = lambda **k: epsilon(spec, delta=1e-5, **k)  # noqa: E731
    assert e(rounds=10, clients=50) > e(rounds=1, clients=50)
    assert e(rounds=1, clients=20) > e(rounds=1, clients=50)
    assert e(rounds=10, clients=50, sampling_rate=0.1) < e(rounds=10, clients=50)


@pytest.mark.parametrize(
    "call",
    [
        lambda: rdp_to_dp([2, 3], [0.1, 0.2], 0.0),
        lambda: rdp_to_dp([2, 3], [0.1], 1e-5),
        lambda: rdp_to_dp([1, 3], [0.1, 0.2], 1e-5),
        lambda: sampled_gaussian_rdp([2], sampling_rate=1.5, noise_multiplier=1.0),
        lambda: ddgauss_zcdp_epsilon(l2_sensitivity=1.0, local_stddev=0.0, clients=2, dim=4),
        lambda: ddgauss_zcdp_epsilon(
            l2_sensitivity=1.0, local_stddev=1.0, clients=5, dim=4, max_clients=3
        ),
        lambda: MechanismSpec(
            mechanism="ddgauss", l2_sensitivity=1.0, l1_sensitivity=1.0, local_stddev=1.0, dim=4
        ),
    ],
)
def test_bad_parameters_raise(call) -> None:
    with pytest.raises(ParameterError):
        call()
