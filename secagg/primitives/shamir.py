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
from secagg.primitives.field import P, check_element
from secagg.primitives.rand import RandomSource, SystemRandom, randbelow

__all__ = ["split", "split_many", "reconstruct", "lagrange_at_zero", "check_threshold"]


def check_threshold(t: int, n: int) -> None:
    """Require ``1 <= t <= n``."""
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= n:
        raise ParameterError(f"threshold must satisfy 1 <= t <= n (t={t}, n={n})")


def _check_xs(xs: Sequence[int]) -> tuple[int, ...]:
    xt = tuple(xs)
    for x in xt:
        check_element(x, what="x-coordinate")
        if x == 0:
            raise ParameterError("x-coordinate 0 would reveal the secret")
    if len(set(xt)) != len(xt):
        raise ParameterError("duplicate x-coordinates")
    return xt


def split_many(
    secrets: Sequence[int],
    t: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
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
        Source of the polynomial coefficients (``os.urandom`` by default).

    Returns
    -------
    ``shares[j][i] = f_j(xs[i])``.

    Raises
    ------
    ParameterError
        On duplicate or zero x-coordinates, out-of-field values or a bad threshold.
    """
    xt = _check_xs(xs)
    check_threshold(t, len(xt))
    for s in secrets:
        check_element(s, what="secret")
    src = rng if rng is not None else SystemRandom()
    out: list[list[int]] = []
    for s in secrets:
        # coefficients a_{t-1} .. a_1 (highest first for Horner), then the secret.
        coeffs = [randbelow(src, P) for _ in range(t - 1)]
        row = []
        for x in xt:
            acc = 0
            for a in coeffs:
                acc = (acc + a) * x % P
            row.append((acc + s) % P)
        out.append(row)
    return out


def split(secret: int, t: int, xs: Sequence[int], rng: RandomSource | None = None) -> list[int]:
    """Share one secret; ``result[i]`` is the share for ``xs[i]``."""
    return split_many([secret], t, xs, rng)[0]


@lru_cache(maxsize=4096)
def lagrange_at_zero(xs: tuple[int, ...]) -> tuple[int, ...]:
    """``L_i(0)`` for the x-set ``xs`` (cached).  ``xs`` must be distinct and non-zero."""
    xt = _check_xs(xs)
    k = len(xt)
    nums = []
    dens = []
    for i, xi in enumerate(xt):
        num = 1
        den = 1
        for j in range(k):
            if j != i:
                xj = xt[j]
                num = num * xj % P
                den = den * (xj - xi) % P
        nums.append(num)
        dens.append(den)
    # batch inversion of the denominators: one pow() for all of them
    prefix = [1] * (k + 1)
    for i, d in enumerate(dens):
        prefix[i + 1] = prefix[i] * d % P
    inv = pow(prefix[k], -1, P)
    invs = [0] * k
    for i in range(k - 1, -1, -1):
        invs[i] = inv * prefix[i] % P
        inv = inv * dens[i] % P
    return tuple(n * d % P for n, d in zip(nums, invs))


def reconstruct(points: Sequence[tuple[int, int]], t: int) -> int:
    """The secret from at least ``t`` shares ``(x, y)``.

    Exactly ``t`` shares are used (the first ``t`` in the given order); pass more
    and the rest are checked to lie on the same polynomial.

    Raises
    ------
    ParameterError
        Too few shares, duplicate or zero x-coordinates, out-of-field values, or
        extra shares that are inconsistent with the first ``t``.
    """
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ParameterError("threshold must be a positive integer")
    if len(points) < t:
        raise ParameterError(f"need at least {t} shares, got {len(points)}")
    xs = _check_xs([x for x, _ in points])
    for _, y in points:
        check_element(y, what="share")
    base = tuple(points[:t])
    coeffs = lagrange_at_zero(xs[:t])
    secret = sum(y * c for (_, y), c in zip(base, coeffs)) % P
    for x, y in points[t:]:
        if _interpolate_at(base, x) != y:
            raise ParameterError("inconsistent shares: extra share does not lie on the polynomial")
    return secret


def _interpolate_at(points: Sequence[tuple[int, int]], x: int) -> int:
    acc = 0
    for i, (xi, yi) in enumerate(points):
        num = 1
        den = 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (x - xj) % P
                den = den * (xi - xj) % P
        acc = (acc + yi * num * pow(den, -1, P)) % P
    return acc
