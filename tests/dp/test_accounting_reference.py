"""The accountant against independent references and exact refusals.

Each reference below is written from the formula in the paper (and in the function's
docstring) with ``math`` only, so a change to a constant, a sign or an argument that the
property tests in ``test_accounting.py`` tolerate fails here (issue #20: mutation
testing of ``secagg/dp/accounting.py`` found them).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from secagg.dp.accounting import (
    DEFAULT_ORDERS,
    Mechanism,
    MechanismSpec,
    _logsumexp,
    calibrate_local_stddev,
    ddgauss_rdp,
    ddgauss_zcdp_epsilon,
    epsilon,
    gaussian_rdp,
    poisson_subsampled_rdp,
    rdp_to_dp,
    sampled_gaussian_rdp,
    skellam_rdp,
)
from secagg.errors import ParameterError


def _zhu_wang(alpha: int, q: float, eps) -> float:  # type: ignore[no-untyped-def]
    """Zhu & Wang 2019, Thm. 6, for integer ``alpha >= 2``, capped at ``eps(alpha)``."""
    s = (1 - q) ** (alpha - 1) * (alpha * q - q + 1)
    s += math.comb(alpha, 2) * q**2 * (1 - q) ** (alpha - 2) * math.exp(eps(2))
    s += 3 * sum(
        math.comb(alpha, ell) * (1 - q) ** (alpha - ell) * q**ell * math.exp((ell - 1) * eps(ell))
        for ell in range(3, alpha + 1)
    )
    return min(math.log(s) / (alpha - 1), eps(alpha))


@pytest.mark.parametrize("q", [0.01, 0.1])
def test_poisson_subsampling_matches_zhu_wang(q: float) -> None:
    orders = [2, 3, 4, 6, 10, 16]

    def eps(a: int) -> float:
        return a / 8.0  # Gaussian, z = 2

    got = poisson_subsampled_rdp(orders, sampling_rate=q, base_rdp=lambda o: gaussian_rdp(
        o, noise_multiplier=2.0))
    want = [_zhu_wang(a, q, eps) for a in orders]
    assert np.allclose(got, want, rtol=1e-9, atol=0)
    assert all(w < eps(a) for a, w in zip(orders, want, strict=True))  # the cap is not hiding it


def _kls(delta2: float, sigma: float, m: int, d: int) -> float:
    """Kairouz–Liu–Steinke 2021: ε of the sum of m discrete Gaussians (ε²/2-zCDP)."""
    tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, m))
    return min(
        math.sqrt(delta2**2 / (m * sigma**2) + tau * d / 2),
        delta2 / (math.sqrt(m) * sigma) + tau * math.sqrt(d),
    )


@pytest.mark.parametrize(
    ("delta2", "sigma", "m", "d"),
    [(2.0, 0.6, 5, 50), (1.0, 0.5, 40, 100), (30.0, 4.0, 3, 1000), (1.0, 1.0, 10, 10**4)],
)
def test_ddgauss_epsilon_matches_kls(delta2: float, sigma: float, m: int, d: int) -> None:
    got = ddgauss_zcdp_epsilon(l2_sensitivity=delta2, local_stddev=sigma, clients=m, dim=d)
    assert math.isclose(got, _kls(delta2, sigma, m, d), rel_tol=1e-12)


def test_ddgauss_second_bound_is_the_smaller_when_tau_is_tiny() -> None:
    # the reference cases above must exercise both arms of the min
    tau = 10 * sum(math.exp(-2 * math.pi**2 * k / (k + 1)) for k in range(1, 10))
    first = math.sqrt(1 / 10 + tau * 10**4 / 2)
    second = 1 / math.sqrt(10) + tau * 100
    assert second < first and math.isclose(_kls(1.0, 1.0, 10, 10**4), second)


def test_max_clients_is_the_worst_survivor_count_at_every_layer() -> None:
    # at small sigma tau grows with m: more survivors cost more, so max_clients matters
    kw = dict(l2_sensitivity=1.0, local_stddev=0.5, dim=100)
    worst = max(_kls(1.0, 0.5, m, 100) for m in range(10, 1001))
    assert worst > 2 * _kls(1.0, 0.5, 10, 100)
    got = ddgauss_zcdp_epsilon(clients=10, max_clients=1000, **kw)  # type: ignore[arg-type]
    assert math.isclose(got, worst, rel_tol=1e-12)
    orders = [2, 3, 8]
    want = np.array(orders) * worst * worst / 2
    assert np.allclose(ddgauss_rdp(orders, clients=10, max_clients=1000, **kw), want, rtol=1e-12)
    spec = MechanismSpec(mechanism=Mechanism.DDGAUSS, l2_sensitivity=1.0, l1_sensitivity=10.0,
                         local_stddev=0.5, dim=100)
    assert np.allclose(spec.rdp(orders, 10, 1000), want, rtol=1e-12)
    acc = dict(delta=1e-5, rounds=1, sampling_rate=1.0, clients=10)
    assert epsilon(spec, max_clients=1000, **acc) > epsilon(spec, **acc)  # type: ignore[arg-type]


def test_calibration_covers_max_clients_and_is_minimal() -> None:
    kw = dict(delta=1e-5, rounds=1, sampling_rate=1.0, clients=10)
    mech = dict(mechanism=Mechanism.DDGAUSS, l2_sensitivity=1.0, l1_sensitivity=10.0, dim=100)
    sigma = calibrate_local_stddev(target_epsilon=20.0, max_clients=1000, **kw, **mech)

    def eps_at(s: float) -> float:
        return epsilon(MechanismSpec(local_stddev=s, **mech), max_clients=1000, **kw)

    assert eps_at(sigma) <= 20.0 < eps_at(sigma * (1 - 1e-4))


def test_calibration_uses_the_orders_it_is_given() -> None:
    kw = dict(delta=1e-5, rounds=3, sampling_rate=0.5, clients=20)
    mech = dict(mechanism=Mechanism.SKELLAM, l2_sensitivity=10.0, l1_sensitivity=100.0, dim=50)
    orders = [5, 40]
    sigma = calibrate_local_stddev(target_epsilon=4.0, orders=orders, **kw, **mech)

    def eps_at(s: float, o) -> float:  # type: ignore[no-untyped-def]
        return epsilon(MechanismSpec(local_stddev=s, **mech), orders=o, **kw)

    assert eps_at(sigma, orders) <= 4.0 < eps_at(sigma * (1 - 1e-4), orders)
    assert eps_at(sigma, DEFAULT_ORDERS) < 4.0 - 1e-3  # the default orders would differ


@pytest.mark.parametrize(("target", "lo", "hi"), [(0.03, 80.0, 2.0**40), (100.0, 0.0, 0.25)])
def test_calibration_far_from_the_starting_point(target: float, lo: float, hi: float) -> None:
    # the search starts at max(1, l2): these answers need many doublings or halvings
    kw = dict(delta=1e-5, rounds=1, sampling_rate=1.0, l2_sensitivity=1.0, l1_sensitivity=1.0,
              dim=4, clients=1)
    mech = Mechanism.DDGAUSS if target < 1 else Mechanism.SKELLAM
    sigma = calibrate_local_stddev(target_epsilon=target, mechanism=mech, **kw)  # type: ignore[arg-type]
    assert lo < sigma < hi

    def eps_at(s: float) -> float:
        spec = MechanismSpec(mechanism=mech, l2_sensitivity=1.0, l1_sensitivity=1.0,
                             local_stddev=s, dim=4)
        return epsilon(spec, delta=1e-5, rounds=1, sampling_rate=1.0, clients=1)

    # the returned sigma is minimal to the default rtol = 1e-6 (relative), also below 1
    assert eps_at(sigma) <= target < eps_at(sigma * (1 - 1.01e-6))


@pytest.mark.parametrize(("scale", "reachable"), [(0.75, True), (1.5, False)])
def test_calibration_searches_up_to_exactly_2_to_the_40(scale: float, reachable: bool) -> None:
    """The limit is sigma <= 2^40: a target that needs 0.75 * 2^40 is found, one that
    needs 1.5 * 2^40 is refused (the sensitivity is large so the search starts at 2^38)."""
    l2 = 2.0**38
    mech = dict(mechanism=Mechanism.DDGAUSS, l2_sensitivity=l2, l1_sensitivity=l2, dim=4)
    acc = dict(delta=1e-5, rounds=1, sampling_rate=1.0, clients=1)
    target = epsilon(MechanismSpec(local_stddev=scale * 2.0**40, **mech), **acc)
    if reachable:
        sigma = calibrate_local_stddev(target_epsilon=target, **mech, **acc)
        assert math.isclose(sigma, scale * 2.0**40, rel_tol=1e-5)
    else:
        with pytest.raises(ParameterError, match="cannot be reached with noise up to 2\\^40"):
            calibrate_local_stddev(target_epsilon=target, **mech, **acc)


def test_skellam_second_term_wins_at_high_orders() -> None:
    d1, d2, mu = 3.0, 2.0, 8.0
    for a in (2, 20, 60):
        first = ((2 * a - 1) * d2**2 + 6 * d1) / (4 * mu**2)
        second = 3 * d1 / (2 * mu)
        want = a * d2**2 / (2 * mu) + min(first, second)
        got = skellam_rdp([a], l1_sensitivity=d1, l2_sensitivity=d2, variance=mu)
        assert math.isclose(float(got[0]), want, rel_tol=1e-15)
    assert ((2 * 20 - 1) * d2**2 + 6 * d1) / (4 * mu**2) > 3 * d1 / (2 * mu)  # 20: second wins


def test_skellam_spec_uses_the_total_variance() -> None:
    spec = MechanismSpec(mechanism=Mechanism.SKELLAM, l2_sensitivity=2.0, l1_sensitivity=3.0,
                         local_stddev=3.0, dim=4)
    want = skellam_rdp([2, 5], l1_sensitivity=3.0, l2_sensitivity=2.0, variance=7 * 9.0)
    assert np.array_equal(spec.rdp([2, 5], 7), want)


def test_rdp_to_dp_skips_an_order_whose_bound_is_nan() -> None:
    eps, order = rdp_to_dp([2, 3], [math.nan, 1.0], 1e-5)
    want = 1.0 - (math.log(1e-5) + math.log(3)) / 2 + math.log(2 / 3)
    assert order == 3 and math.isclose(eps, want, rel_tol=1e-12)


def test_logsumexp_of_nothing_but_minus_infinity() -> None:
    assert _logsumexp(np.array([-math.inf, -math.inf])) == -math.inf
    assert math.isclose(_logsumexp(np.array([0.0, 0.0])), math.log(2.0), rel_tol=1e-15)


@pytest.mark.parametrize(("call", "msg"), [
    (lambda: sampled_gaussian_rdp([2], sampling_rate=0.5, noise_multiplier=0.0),
     "noise_multiplier must be finite and > 0"),
    (lambda: poisson_subsampled_rdp([2], sampling_rate=0.0, base_rdp=lambda o: np.ones(len(o))),
     "sampling_rate must be finite and > 0"),
    (lambda: MechanismSpec(mechanism=Mechanism.SKELLAM, l2_sensitivity=-1.0, l1_sensitivity=1.0,
                           local_stddev=1.0, dim=4),
     "l2_sensitivity must be finite and > 0"),
])
def test_refusals_name_the_parameter_exactly(call, msg: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=f"^{re.escape(msg)}$"):
        call()
