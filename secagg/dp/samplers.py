"""Exact integer noise samplers driven by a CSPRNG (no numpy RNG, no rounded floats).

* :func:`discrete_laplace` — pmf ∝ ``exp(-|k|/t)`` on the integers.
* :func:`discrete_gaussian` — pmf ∝ ``exp(-k²/(2σ²))`` (Canonne–Kamath–Steinke 2020,
  "The Discrete Gaussian for Differential Privacy", Alg. 3: discrete Laplace proposal
  with scale ``t = floor(σ)+1`` and a rejection step).
* :func:`poisson` — inversion for small λ, Hörmann's PTRS transformed rejection for
  λ ≥ 10.
* :func:`skellam` — ``Poisson(μ/2) − Poisson(μ/2)`` (variance ``μ``).

All are vectorised: a batch of candidates is drawn from CSPRNG bytes, the accepted
ones are kept, and the remainder is drawn again.  See ``protocols/dp.md`` §2.

Security notes
--------------
Randomness comes only from a :class:`~secagg.primitives.rand.RandomSource`.  Each
accept/reject or inversion decision compares a 53-bit uniform with a float64
probability, so each decision is exact up to about 2^-52 relative error in that
probability (stated in the spec).  Sampling time depends on the random draws, not
on any secret input.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.primitives.rand import RandomSource, fill_uint64, random_unit_float64

__all__ = [
    "discrete_gaussian",
    "discrete_laplace",
    "poisson",
    "skellam",
]

IntArray = npt.NDArray[np.int64]

#: λ at and above which :func:`poisson` uses PTRS instead of inversion.
_PTRS_MIN_LAMBDA = 10.0
#: Largest noise scale accepted (keeps every intermediate value well inside int64).
_MAX_SCALE = 2.0**40


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ParameterError("size must be a non-negative integer")
    return int(size)


def _check_scale(name: str, value: float, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ParameterError(f"{name} must be a number")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) or v > _MAX_SCALE:
        raise ParameterError(f"{name} must be finite and in {'[' if allow_zero else '('}0, 2^40]")
    return v


def _sign_bits(rng: RandomSource, n: int) -> npt.NDArray[np.bool_]:
    raw = np.frombuffer(rng.random_bytes((n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:n].astype(bool)


#: Candidates per batch: every pass of a sampler runs over at most this many
#: values, so its temporaries stay in L2 (one pass over a 10^6-long array from
#: memory costs several times the same pass in cache).
BATCH = 1 << 14


def _fill(
    size: int, draw: object, oversample: float
) -> IntArray:
    """Call ``draw(m) -> accepted int64 samples`` until ``size`` samples are collected,
    with batches of at most :data:`BATCH` candidates."""
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        need = size - filled
        m = min(BATCH, int(need * oversample) + 32)
        got = draw(m)  # type: ignore[operator]
        take = min(len(got), need)
        out[filled : filled + take] = got[:take]
        filled += take
    return out


def discrete_laplace(rng: RandomSource, t: float, size: int) -> IntArray:
    """``size`` draws from the discrete Laplace distribution with scale ``t``.

    ``P(X = k) = (e^{1/t} − 1)/(e^{1/t} + 1) · e^{−|k|/t}`` for ``k ∈ Z``.

    The magnitude is an exact geometric variable drawn by inversion,
    ``M = floor(−t·ln(1−u))`` (so ``P(M ≥ m) = e^{−m/t}``), the sign is a fair bit,
    and (negative, 0) is rejected so that 0 is not counted twice.

    Raises
    ------
    ParameterError
        If ``t`` is not a finite positive number ≤ 2^40 or ``size`` is negative.
    """
    t = _check_scale("t", t, allow_zero=False)
    n = _check_size(size)

    def draw(m: int) -> IntArray:
        u = random_unit_float64(rng, m)
        neg = _sign_bits(rng, m)
        mag = np.floor(-t * np.log1p(-u)).astype(np.int64)
        keep = ~(neg & (mag == 0))
        vals: IntArray = np.where(neg, -mag, mag)[keep]
        return vals

    return _fill(n, draw, 1.0 / (1.0 - 0.5 * (1.0 - math.exp(-1.0 / t))) + 0.05)


def discrete_gaussian(rng: RandomSource, sigma: float, size: int) -> IntArray:
    """``size`` draws from the discrete Gaussian ``N_Z(0, σ²)``.

    ``P(X = k) ∝ exp(−k²/(2σ²))``.  Canonne–Kamath–Steinke 2020, Alg. 3: with
    ``t = floor(σ) + 1`` draw ``Y ~ Lap_Z(t)`` and accept with probability
    ``exp(−(|Y| − σ²/t)²/(2σ²))``.  ``σ = 0`` returns zeros.

    Raises
    ------
    ParameterError
        If ``sigma`` is negative, not finite or above 2^40, or ``size`` is negative.
    """
    sigma = _check_scale("sigma", sigma, allow_zero=True)
    n = _check_size(size)
    if sigma == 0.0:
        return np.zeros(n, dtype=np.int64)
    t = float(math.floor(sigma) + 1)
    s2 = sigma * sigma
    shift = s2 / t
    inv_2s2 = 1.0 / (2.0 * s2)

    # Scratch for one batch, reused by every batch (see BATCH).
    cap = min(BATCH, int(n * (2.1 if sigma < 2.0 else 1.4)) + 32)
    w = np.empty(cap + 2, dtype=np.uint64)  # 16 spare bytes: AES writes in place
    a = np.empty(cap + 2, dtype=np.uint64)
    bit = np.empty(cap, dtype=np.uint64)
    mag_buf = np.empty(cap, dtype=np.float64)
    p_buf = np.empty(cap, dtype=np.float64)
    acc_buf = np.empty(cap, dtype=np.bool_)
    rej_buf = np.empty(cap, dtype=np.bool_)
    one, eleven, two53 = np.uint64(1), np.uint64(11), np.uint64(1 << 53)

    def draw(m: int) -> IntArray:
        # One 64-bit word per candidate for the Laplace proposal: its top 53 bits are
        # the uniform of the geometric magnitude, its lowest bit the sign (disjoint
        # bits of a CSPRNG word are independent); a second word per candidate for the
        # acceptance test.  The proposal's own rejection of (negative, 0) and the
        # Gaussian acceptance test are applied together, which accepts exactly the
        # candidates the two-stage algorithm would.  Every step writes into the
        # batch's scratch buffers.
        wv, av, neg = w[:m], a[:m], bit[:m]
        mag, p = mag_buf[:m], p_buf[:m]
        acc, rej = acc_buf[:m], rej_buf[:m]
        fill_uint64(rng, w, m)
        fill_uint64(rng, a, m)
        np.bitwise_and(wv, one, out=neg)
        # 1 - u = (2^53 - k)/2^53 in (0, 1], exact in float64 (k = the top 53 bits).
        np.right_shift(wv, eleven, out=wv)
        np.subtract(two53, wv, out=wv)
        np.multiply(wv, 1.0 / 9007199254740992.0, out=mag)
        np.log(mag, out=mag)  # ln(1 - u) <= 0
        np.multiply(mag, -t, out=mag)
        np.floor(mag, out=mag)  # M = floor(-t ln(1-u)), geometric
        np.subtract(mag, shift, out=p)
        np.square(p, out=p)
        np.multiply(p, -inv_2s2, out=p)
        np.exp(p, out=p)  # acceptance probability exp(-(|Y| - σ²/t)² / (2σ²))
        # u < p with u = k/2^53: compare k < p·2^53 (scaling by 2^53 is exact).
        np.multiply(p, 9007199254740992.0, out=p)
        np.right_shift(av, eleven, out=av)
        np.less(av, p, out=acc)
        np.equal(mag, 0.0, out=rej)
        np.logical_and(rej, neg, out=rej)  # the proposal's (negative, 0)
        np.greater(acc, rej, out=acc)  # acc and not rej
        got: IntArray = mag[acc].astype(np.int64)
        np.negative(got, out=got, where=neg[acc].astype(np.bool_))
        return got

    # Measured acceptance: ≈ 0.52 for σ ≤ 1, ≈ 0.73–0.76 for σ ≥ 2.5; a short batch
    # just triggers one more (smaller) round.
    return _fill(n, draw, 2.1 if sigma < 2.0 else 1.4)


# ln k! for k < 30 exactly (as floats); Stirling's series above.
_LOGFACT_TABLE = np.array([math.lgamma(k + 1.0) for k in range(30)], dtype=np.float64)


def _log_factorial(k: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``ln k!`` for non-negative integer-valued floats (error < 1e-13)."""
    out = np.empty_like(k)
    small = k < 30
    out[small] = _LOGFACT_TABLE[k[small].astype(np.int64)]
    kb = k[~small]
    inv = 1.0 / kb
    inv2 = inv * inv
    out[~small] = (
        kb * np.log(kb)
        - kb
        + 0.5 * np.log(2.0 * math.pi * kb)
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)))
    )
    return out


def _poisson_inversion(rng: RandomSource, lam: float, n: int) -> IntArray:
    # CDF table out to where the tail mass is below 2^-60.
    kmax = int(lam + 12.0 * math.sqrt(lam) + 40.0)
    ks = np.arange(kmax + 1, dtype=np.float64)
    logpmf = -lam + ks * math.log(lam) - _log_factorial(ks)
    cdf = np.cumsum(np.exp(logpmf))
    out = np.empty(n, dtype=np.int64)
    for start in range(0, n, BATCH):  # one uniform per sample, in order, batch by batch
        stop = min(start + BATCH, n)
        u = random_unit_float64(rng, stop - start)
        np.minimum(np.searchsorted(cdf, u, side="right"), kmax, out=out[start:stop])
    return out


def _poisson_ptrs(rng: RandomSource, lam: float, n: int) -> IntArray:
    """Hörmann 1993, "The transformed rejection method for generating Poisson random
    variables" (PTRS), vectorised."""
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)

    def draw(m: int) -> IntArray:
        uu = random_unit_float64(rng, m) - 0.5
        v = random_unit_float64(rng, m)
        us = 0.5 - np.abs(uu)
        valid = us > 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor((2.0 * a / us + b) * uu + lam + 0.43)
        fast = valid & (us >= 0.07) & (v <= vr)
        reject = ~valid | (k < 0) | ((us < 0.013) & (v > us))
        slow = ~fast & ~reject
        acc = fast.copy()
        if slow.any():
            ks = k[slow]
            uss = us[slow]
            with np.errstate(divide="ignore"):
                lhs = np.log(v[slow]) + log_invalpha - np.log(a / (uss * uss) + b)
            rhs = -lam + ks * loglam - _log_factorial(ks)
            acc[slow] = lhs <= rhs
        got: IntArray = k[acc].astype(np.int64)
        return got

    return _fill(n, draw, 1.25)


def poisson(rng: RandomSource, lam: float, size: int) -> IntArray:
    """``size`` draws from ``Poisson(λ)``; ``λ = 0`` gives zeros.

    Raises
    ------
    ParameterError
        If ``lam`` is negative, not finite or above 2^40, or ``size`` is negative.
    """
    lam = _check_scale("lam", lam, allow_zero=True)
    n = _check_size(size)
    if lam == 0.0 or n == 0:
        return np.zeros(n, dtype=np.int64)
    if lam < _PTRS_MIN_LAMBDA:
        return _poisson_inversion(rng, lam, n)
    return _poisson_ptrs(rng, lam, n)


def skellam(rng: RandomSource, mu: float, size: int) -> IntArray:
    """``size`` draws from the symmetric Skellam distribution with variance ``mu``.

    ``X = P1 − P2`` with ``P1, P2 ~ Poisson(mu/2)`` independent.

    Raises
    ------
    ParameterError
        If ``mu`` is negative, not finite or above 2^40, or ``size`` is negative.
    """
    mu = _check_scale("mu", mu, allow_zero=True)
    n = _check_size(size)
    out: IntArray = poisson(rng, mu / 2.0, n) - poisson(rng, mu / 2.0, n)
    return out
