"""t-of-n Shamir secret sharing over :data:`secagg.primitives.field.P`.

A secret ``s`` is the constant term of a random polynomial ``f`` of degree
``t - 1``; the share for the party with x-coordinate ``x`` (a non-zero field
element, in secagg the holder's party id) is ``f(x)``.  Any ``t`` shares give
``s = sum_i y_i * L_i(0)``; any ``t - 1`` are consistent with every secret.

Sharing ``S`` secrets among ``n`` holders costs ``S * n * (t - 1)`` modular
multiplications (Horner); Lagrange coefficients at 0 are cached per x-set, so
reconstructing many secrets from the same holders costs ``O(t)`` each.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from secagg.errors import ParameterError
from secagg.primitives.field import P, check_element, check_prime
from secagg.primitives.rand import RandomSource, SystemRandom, randbelow

__all__ = [
    "check_threshold",
    "evaluate_polynomial",
    "lagrange_at_zero",
    "reconstruct",
    "split",
    "split_many",
]


def check_threshold(t: int, n: int) -> None:
    """Require ``1 <= t <= n``.

    Raises
    ------
    ParameterError
        If ``t`` is not an integer in ``[1, n]``.
    """
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n:
        raise ParameterError(f"threshold must satisfy 1 <= t <= n (t={t}, n={n})")


def _check_xs(xs: Sequence[int], prime: int) -> tuple[int, ...]:
    xt = tuple(xs)
    for x in xt:
        check_element(x, what="x-coordinate", prime=prime)
        if x == 0:
            raise ParameterError("x-coordinate 0 would reveal the secret")
    if len(set(xt)) != len(xt):
        raise ParameterError("duplicate x-coordinates")
    return xt


def evaluate_polynomial(coefficients: Sequence[int], x: int, *, prime: int = P) -> int:
    """``f(x) mod prime`` for ``f(X) = c[0] + c[1]*X + ... + c[k]*X^k``.

    ``coefficients[0]`` is the constant term (the secret).  This is the share a
    holder with x-coordinate ``x`` receives; it exists so that known-answer
    vectors and tests can fix the polynomial instead of drawing it at random.

    Raises
    ------
    ParameterError
        If ``coefficients`` is empty, or a coefficient or ``x`` is not a field element.
    """
    check_prime(prime)
    if len(coefficients) == 0:
        raise ParameterError("a polynomial needs at least one coefficient")
    for c in coefficients:
        check_element(c, what="coefficient", prime=prime)
    check_element(x, what="x-coordinate", prime=prime)
    acc = 0
    for c in reversed(coefficients):
        acc = (acc * x + c) % prime
    return acc


def split_many(
    secrets: Sequence[int],
    t: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
    *,
    prime: int = P,
) -> list[list[int]]:
    """Share several secrets among the same holders.

    Parameters
    ----------
    secrets:
        Field elements to share.
    t:
        Threshold: any ``t`` shares reconstruct, ``t - 1`` reveal nothing.
    xs:
        Distinct, non-zero x-coordinates of the holders.
    rng:
        Source of the polynomial coefficients (``os.urandom`` by default).  For
        each secret in order, the coefficients ``a_{t-1}, ..., a_1`` are drawn
        in that order with :func:`~secagg.primitives.rand.randbelow` (``prime``).
    prime:
        Field modulus; ``P`` unless a test wants a small field.

    Returns
    -------
    ``shares[j][i] = f_j(xs[i])``.

    Raises
    ------
    ParameterError
        On duplicate or zero x-coordinates, out-of-field values or a bad threshold.
    """
    check_prime(prime)
    xt = _check_xs(xs, prime)
    check_threshold(t, len(xt))
    for s in secrets:
        check_element(s, what="secret", prime=prime)
    src = rng if rng is not None else SystemRandom()
    out: list[list[int]] = []
    for s in secrets:
        # coefficients a_{t-1} .. a_1 (highest first for Horner), then the secret.
        coeffs = [randbelow(src, prime) for _ in range(t - 1)]
        row = []
        for x in xt:
            acc = 0
            for a in coeffs:
                acc = (acc + a) * x % prime
            row.append((acc + s) % prime)
        out.append(row)
    return out


def split(
    secret: int,
    t: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
    *,
    prime: int = P,
) -> list[int]:
    """Share one secret; ``result[i]`` is the share for ``xs[i]`` (see :func:`split_many`)."""
    return split_many([secret], t, xs, rng, prime=prime)[0]


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...], *, prime: int = P) -> tuple[int, ...]:
    """``L_i(0)`` for the x-set ``xs`` (cached).  ``xs`` must be distinct and non-zero.

    Raises
    ------
    ParameterError
        On duplicate, zero or out-of-field x-coordinates.
    """
    check_prime(prime)
    xt = _check_xs(xs, prime)
    k = len(xt)
    nums = []
    dens = []
    for i, xi in enumerate(xt):
        num = 1
        den = 1
        for j in range(k):
            if j != i:
                xj = xt[j]
                num = num * xj % prime
                den = den * (xj - xi) % prime
        nums.append(num)
        dens.append(den)
    # batch inversion of the denominators: one pow() for all of them
    prefix = [1] * (k + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % prime
    inv = pow(prefix[k], -1, prime)
    invs = [0] * k
    for i in range(k - 1, -1, -1):
        invs[i] = inv * prefix[i] % prime
        inv = inv * dens[i] % prime
    return tuple(n * d % prime for n, d in zip(nums, invs, strict=True))


def reconstruct(points: Sequence[tuple[int, int]], t: int, *, prime: int = P) -> int:
    """The secret from at least ``t`` shares ``(x, y)``.

    Exactly ``t`` shares are used (the first ``t`` in the given order); pass more
    and the rest are checked to lie on the same polynomial.

    Raises
    ------
    ParameterError
        Too few shares, duplicate or zero x-coordinates, out-of-field values, or
        extra shares that are inconsistent with the first ``t``.
    """
    check_prime(prime)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ParameterError("threshold must be a positive integer")
    if len(points) < t:
        raise ParameterError(f"need at least {t} shares, got {len(points)}")
    xs = _check_xs([x for x, _ in points], prime)
    for _, y in points:
        check_element(y, what="share", prime=prime)
    base = tuple(points[:t])
    coeffs = lagrange_at_zero(xs[:t], prime=prime)
    secret = sum(y * c for (_, y), c in zip(base, coeffs, strict=True)) % prime
    for x, y in points[t:]:
        if _interpolate_at(base, x, prime) != y:
            raise ParameterError("inconsistent shares: extra share does not lie on the polynomial")
    return secret


def _interpolate_at(points: Sequence[tuple[int, int]], x: int, prime: int) -> int:
    acc = 0
    for i, (xi, yi) in enumerate(points):
        num = 1
        den = 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (x - xj) % prime
                den = den * (xi - xj) % prime
        acc = (acc + yi * num * pow(den, -1, prime)) % prime
    return acc
