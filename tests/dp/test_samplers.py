"""Statistical tests of the CSPRNG integer samplers (protocols/dp.md §2).

All draws come from InsecureDeterministicRandom with fixed seeds, so every test is
reproducible; the false-failure rate stated on each test is the probability that a
*correct* sampler fails it with a fresh seed.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from scipy import stats

from secagg.dp.samplers import discrete_gaussian, discrete_laplace, poisson, skellam
from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom

N = 200_000
Z = 5.0  # two-sided normal tail at 5 SE: false-failure ≈ 5.7e-7 per check


def rng(seed: int) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed)


def dgauss_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    """Exact pmf of N_Z(0, σ²) on ``support`` (normaliser summed over ±60σ)."""
    wide = np.arange(-int(60 * sigma) - 60, int(60 * sigma) + 61)
    norm = np.exp(-(wide.astype(float) ** 2) / (2 * sigma**2)).sum()
    return np.exp(-(support.astype(float) ** 2) / (2 * sigma**2)) / norm


def dlaplace_pmf(t: float, support: np.ndarray) -> np.ndarray:
    c = (math.exp(1 / t) - 1) / (math.exp(1 / t) + 1)
    return c * np.exp(-np.abs(support) / t)


def skellam_pmf(mu: float, support: np.ndarray) -> np.ndarray:
    return stats.skellam.pmf(support, mu / 2, mu / 2)


def poisson_pmf(lam: float, support: np.ndarray) -> np.ndarray:
    return stats.poisson.pmf(support, lam)


def moments(pmf, lo: int, hi: int) -> tuple[float, float, float]:
    k = np.arange(lo, hi + 1)
    p = pmf(k)
    p = p / p.sum()
    mean = float((k * p).sum())
    var = float(((k - mean) ** 2 * p).sum())
    m4 = float(((k - mean) ** 4 * p).sum())
    return mean, var, m4


def check_mean_var(x: np.ndarray, mean: float, var: float, m4: float) -> None:
    n = x.size
    assert abs(x.mean() - mean) < Z * math.sqrt(var / n), (x.mean(), mean)
    se_var = math.sqrt((m4 - var**2) / n)
    assert abs(x.var() - var) < Z * se_var, (x.var(), var)


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_discrete_gaussian_mean_and_variance(sigma: float) -> None:
    """False-failure rate ≈ 1.1e-6 (two 5-SE checks)."""
    x = discrete_gaussian(rng(1), sigma, N)
    r = int(30 * sigma) + 30
    mean, var, m4 = moments(lambda k: dgauss_pmf(sigma, k), -r, r)
    check_mean_var(x, mean, var, m4)


@pytest.mark.parametrize("mu", [2.0, 30.0, 1.0e4])
def test_skellam_mean_and_variance(mu: float) -> None:
    """Skellam(μ): variance μ, central 4th moment 3μ² + μ. False-failure ≈ 1.1e-6."""
    x = skellam(rng(2), mu, N)
    check_mean_var(x, 0.0, mu, 3 * mu**2 + mu)


@pytest.mark.parametrize("lam", [0.3, 4.0, 10.0, 137.5, 1.0e5])
def test_poisson_mean_and_variance(lam: float) -> None:
    """Poisson(λ): mean = variance = λ, central 4th moment λ(1 + 3λ). False-failure ≈ 1.1e-6."""
    x = poisson(rng(3), lam, N)
    check_mean_var(x, lam, lam, lam * (1 + 3 * lam))


def chi_square_p(x: np.ndarray, pmf, lo: int, hi: int) -> float:
    """χ² goodness of fit on the bins lo..hi plus two merged tails."""
    k = np.arange(lo, hi + 1)
    p = pmf(k)
    tail_lo = pmf(np.arange(lo - 400, lo)).sum()
    tail_hi = pmf(np.arange(hi + 1, hi + 401)).sum()
    expected = np.concatenate([[tail_lo], p, [tail_hi]])
    expected = expected / expected.sum() * x.size
    observed = np.concatenate(
        [
            [np.sum(x < lo)],
            np.bincount(np.clip(x, lo, hi) - lo, minlength=hi - lo + 1),
            [np.sum(x > hi)],
        ]
    ).astype(float)
    observed[1] -= np.sum(x < lo)
    observed[-2] -= np.sum(x > hi)
    keep = expected >= 5
    # merge the bins with too-small expectation into one
    e = np.concatenate([expected[keep], [expected[~keep].sum()]])
    o = np.concatenate([observed[keep], [observed[~keep].sum()]])
    if e[-1] < 5:
        e[-2] += e[-1]
        o[-2] += o[-1]
        e, o = e[:-1], o[:-1]
    return float(stats.chisquare(o, e).pvalue)


ALPHA = 1e-4  # χ² tests: false-failure rate 1e-4 each


@pytest.mark.parametrize(
    ("name", "draw", "pmf", "lo", "hi"),
    [
        (
            "dgauss σ=0.8",
            lambda r: discrete_gaussian(r, 0.8, N),
            lambda k: dgauss_pmf(0.8, k),
            -4,
            4,
        ),
        (
            "dgauss σ=2.5",
            lambda r: discrete_gaussian(r, 2.5, N),
            lambda k: dgauss_pmf(2.5, k),
            -12,
            12,
        ),
        (
            "dlaplace t=1.5",
            lambda r: discrete_laplace(r, 1.5, N),
            lambda k: dlaplace_pmf(1.5, k),
            -15,
            15,
        ),
        ("skellam μ=2.5", lambda r: skellam(r, 2.5, N), lambda k: skellam_pmf(2.5, k), -10, 10),
        ("skellam μ=40", lambda r: skellam(r, 40.0, N), lambda k: skellam_pmf(40.0, k), -30, 30),
        (
            "poisson λ=4 (inversion)",
            lambda r: poisson(r, 4.0, N),
            lambda k: poisson_pmf(4.0, k),
            0,
            16,
        ),
        (
            "poisson λ=15 (PTRS)",
            lambda r: poisson(r, 15.0, N),
            lambda k: poisson_pmf(15.0, k),
            1,
            35,
        ),
    ],
)
def test_goodness_of_fit_against_exact_pmf(name, draw, pmf, lo, hi) -> None:
    """χ² test against the exact pmf; false-failure rate 1e-4 per case."""
    x = draw(rng(zlib.crc32(name.encode()) % 1000 + 10))
    assert chi_square_p(x, pmf, lo, hi) > ALPHA, name


@pytest.mark.parametrize("mech", ["dgauss", "skellam"])
def test_sum_of_local_noises_has_central_variance(mech: str) -> None:
    """n = 100 clients with σ_local = σ_c/√n: the per-coordinate sum has variance σ_c².

    The sample variance over 20 000 coordinates is within 5 standard errors
    (SE = σ_c²·sqrt((κ−1)/N), κ ≈ 3): false-failure ≈ 5.7e-7.
    """
    n, coords, sigma_c = 100, 20_000, 30.0
    r = rng(5)
    total = np.zeros(coords, dtype=np.int64)
    for i in range(n):
        c = r.child(f"client-{i}")
        if mech == "dgauss":
            total += discrete_gaussian(c, sigma_c / math.sqrt(n), coords)
        else:
            total += skellam(c, sigma_c**2 / n, coords)
    se = sigma_c**2 * math.sqrt(2.0 / coords)
    assert abs(total.var() - sigma_c**2) < Z * se
    assert abs(total.mean()) < Z * sigma_c / math.sqrt(coords)


def test_reproducible_and_seed_dependent() -> None:
    a = discrete_gaussian(rng(7), 3.0, 1000)
    b = discrete_gaussian(rng(7), 3.0, 1000)
    c = discrete_gaussian(rng(8), 3.0, 1000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.int64


def test_zero_scale_and_empty() -> None:
    assert np.array_equal(discrete_gaussian(rng(1), 0.0, 5), np.zeros(5, dtype=np.int64))
    assert np.array_equal(skellam(rng(1), 0.0, 5), np.zeros(5, dtype=np.int64))
    assert discrete_gaussian(rng(1), 2.0, 0).shape == (0,)


@pytest.mark.parametrize(
    "call",
    [
        lambda: discrete_gaussian(rng(1), -1.0, 3),
        lambda: discrete_gaussian(rng(1), float("nan"), 3),
        lambda: discrete_gaussian(rng(1), 2.0**41, 3),
        lambda: discrete_gaussian(rng(1), 1.0, -1),
        lambda: discrete_laplace(rng(1), 0.0, 3),
        lambda: poisson(rng(1), float("inf"), 3),
        lambda: skellam(rng(1), -2.0, 3),
        lambda: skellam(rng(1), True, 3),
    ],
)
def test_bad_parameters_raise(call) -> None:
    with pytest.raises(ParameterError):
        call()
