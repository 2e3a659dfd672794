"""t-of-n Shamir secret sharing over :data:`secagg.primitives.field.P`.

A secret ``s`` is the constant term of a random polynomial ``f`` of degree
``t - 1``; the share for the party with x-coordinate ``x`` (a non-zero field
element, in secagg the holder's party id) is ``f(x)``.  Any ``t`` shares give
``s = sum_i y_i * L_i(0)``; any ``t - 1`` are consistent with every secret.

Sharing ``S`` secrets among ``n`` holders costs ``S * n * (t - 1)`` modular
multiply-adds (Horner).  Over ``P`` with x-coordinates below ``2^22`` (party ids)
they run vectorized: all ``S * n`` Horner accumulators at once in numpy, as eight
signed 32-bit limbs in ``int64`` with one lazy carry pass per step and
``2^256 = -297 (mod P)`` folding the top carry back (:func:`_horner_limbs`).  The
result is bit-for-bit the reference evaluation (:func:`_split_reference`, kept for
tests): the same coefficients drawn in the same order, the same shares.

Lagrange coefficients at 0 are cached per x-set; :func:`reconstruct_many`
reconstructs many secrets at once and, when their x-sets are ``t``-subsets of one
``(t+1)``-set (the complete graph: every owner's holders are "everyone else"),
derives each subset's coefficients from the big set's in ``O(t)`` instead of
``O(t^2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import repeat
from operator import lt, mul
from typing import Literal

import numpy as np

from secagg.errors import ParameterError
from secagg.primitives.field import P, check_element, check_prime
from secagg.primitives.rand import RandomSource, SystemRandom, randbelow

__all__ = [
    "check_threshold",
    "evaluate_polynomial",
    "lagrange_at_zero",
    "reconstruct",
    "reconstruct_many",
    "reconstruct_rows",
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
    # coefficients a_{t-1} .. a_1 per secret (highest first for Horner), drawn in order.
    coeffs = [[randbelow(src, prime) for _ in range(t - 1)] for _ in secrets]
    if _use_limbs(prime, t, xt, len(secrets)):
        return _horner_limbs(list(secrets), coeffs, xt)
    return _horner_python(list(secrets), coeffs, xt, prime)


def _split_reference(
    secrets: Sequence[int],
    t: int,
    xs: Sequence[int],
    rng: RandomSource | None = None,
    *,
    prime: int = P,
) -> list[list[int]]:
    """The plain per-holder Horner loop :func:`split_many` must equal (tests only)."""
    check_prime(prime)
    xt = _check_xs(xs, prime)
    check_threshold(t, len(xt))
    src = rng if rng is not None else SystemRandom()
    out: list[list[int]] = []
    for s in secrets:
        coeffs = [randbelow(src, prime) for _ in range(t - 1)]
        row = []
        for x in xt:
            acc = 0
            for a in coeffs:
                acc = (acc + a) * x % prime
            row.append((acc + s) % prime)
        out.append(row)
    return out


#: Limb width and count of the vectorized evaluation: 8 x 32 bits = 2^256.
_LIMB_BITS = 32
_LIMBS = 8
_LIMB_MASK = (1 << _LIMB_BITS) - 1
#: ``2^256 = -_FOLD (mod P)``.
_FOLD = P - 2**256
#: Largest x-coordinate (exclusive) the one-carry-pass limb step is proven for (see
#: :func:`_horner_limbs`): the top carry folds back with gain ``297 * x / 2^32 < 0.3``.
_LIMB_X_BOUND = 1 << 22
#: Below this many multiply-adds the numpy call overhead loses to plain Python.
_LIMB_MIN_WORK = 2048


def _use_limbs(prime: int, t: int, xt: tuple[int, ...], n_secrets: int) -> bool:
    return (
        prime == P
        and t > 2
        and n_secrets * len(xt) * (t - 1) >= _LIMB_MIN_WORK
        and max(xt) < _LIMB_X_BOUND
    )


def _horner_python(
    secrets: list[int], coeffs: list[list[int]], xt: tuple[int, ...], prime: int
) -> list[list[int]]:
    out: list[list[int]] = []
    for s, cs in zip(secrets, coeffs, strict=True):
        row = []
        for x in xt:
            acc = 0
            for a in cs:
                acc = acc * x + a  # exact; one reduction at the end
            row.append((acc * x + s) % prime)
        out.append(row)
    return out


def _to_limbs(values: Sequence[int]) -> np.ndarray:
    """``(len(values), 8)`` int64 limbs (little-endian); a value >= 2^256 carries into limb 7."""
    raw = b"".join(v.to_bytes(36, "little") for v in values)
    w = np.frombuffer(raw, dtype="<u4").reshape(len(values), 9).astype(np.int64)
    w[:, 7] += w[:, 8] << _LIMB_BITS
    return w[:, :8]


def _horner_limbs(
    secrets: list[int], coeffs: list[list[int]], xt: tuple[int, ...]
) -> list[list[int]]:
    """All ``f_j(x_i)`` mod ``P`` at once: Horner over an ``(8, S, n)`` int64 limb array.

    One step maps limbs ``l_k`` to ``l_k * x + a_k = lo_k + 2^32 c_k`` (``lo_k`` in
    ``[0, 2^32)``, arithmetic shift), then ``l_k' = lo_k + c_{k-1}`` and
    ``l_0' = lo_0 - 297 c_7`` because ``2^256 = -297 (mod P)``: the limbs keep
    standing for a value congruent to the exact Horner accumulator.  With
    ``x < 2^22`` a carry is at most ``|l| / 2^10 + 3``, so the fold has gain below
    0.3 and every limb stays in ``(-2^31.5, 2^32.2)``: ``l * x + a`` is far inside
    int64.  The last step normalises in Python.
    """
    n_sec, n = len(secrets), len(xt)
    k = len(coeffs[0])
    x = np.asarray(xt, dtype=np.int64)
    # a[j] = the limbs of coefficient j of every secret, shaped to broadcast over holders
    flat = [coeffs[s][j] for j in range(k) for s in range(n_sec)]
    a = _to_limbs(flat).reshape(k, n_sec, _LIMBS).transpose(0, 2, 1)[..., None].copy()
    acc = np.zeros((_LIMBS, n_sec, n), dtype=np.int64)
    carry = np.empty_like(acc)
    for j in range(k):
        np.multiply(acc, x, out=acc)
        np.add(acc, a[j], out=acc)
        np.right_shift(acc, _LIMB_BITS, out=carry)  # arithmetic: floor division
        np.bitwise_and(acc, _LIMB_MASK, out=acc)
        np.add(acc[1:], carry[:-1], out=acc[1:])
        acc[0] -= carry[-1] * _FOLD
    np.multiply(acc, x, out=acc)  # the last Horner step multiplies by x once more
    limbs = acc.reshape(_LIMBS, n_sec * n).T.tolist()
    out: list[list[int]] = []
    for si, s in enumerate(secrets):
        row = []
        for i in range(si * n, (si + 1) * n):
            v = s
            for sh, limb in zip(range(0, 256, 32), limbs[i], strict=True):
                v += limb << sh
            row.append(v % P)
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


#: x-coordinates below this take :func:`lagrange_at_zero`'s exact-product path.
_SMALL_X = 1 << 32


def _lagrange_terms(xt: tuple[int, ...], prime: int) -> tuple[list[int], list[int]]:
    """``(prod_{j!=i} x_j, prod_{j!=i} (x_j - x_i))`` mod ``prime`` for each ``i``."""
    nums = []
    dens = []
    for i, xi in enumerate(xt):
        num = 1
        den = 1
        for j, xj in enumerate(xt):
            if j != i:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        nums.append(num)
        dens.append(den)
    return nums, dens


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
    if k and max(xt) < _SMALL_X:
        # party ids: exact integer products (C-level math.prod over machine-size
        # factors), one reduction each, instead of k^2 modular steps in Python
        total = math.prod(xt)
        nums = [total // xi % prime for xi in xt]
        dens = [
            math.prod([xj - xi for xj in xt[:i]]) * math.prod([xj - xi for xj in xt[i + 1 :]])
            % prime
            for i, xi in enumerate(xt)
        ]
    else:
        nums, dens = _lagrange_terms(xt, prime)
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


#: How one x-set's secret is computed: ``(L, (), 0)`` — its coefficients at 0 — or
#: ``(L_B, M_B, x_k)`` for a ``t``-subset of a ``(t+1)``-set ``B`` without ``x_k``:
#: there ``L'_i = L_i (x_k - x_i) / x_k``, so ``secret = (x_k * sum(y L_B) -
#: sum(y M_B)) / x_k`` with ``M_i = L_i x_i`` (``B``'s coefficients with ``x_k``'s
#: entry removed) — two dot products, no per-subset coefficient vector.
_Recipe = tuple[tuple[int, ...], tuple[int, ...], int]


def _lagrange_family(
    sets: set[tuple[int, ...]], t: int, prime: int
) -> dict[tuple[int, ...], _Recipe]:
    """How to interpolate at 0 for every x-set in ``sets`` (each of size ``t``).

    Sets that are ``t``-subsets of one ``(t+1)``-set ``B`` (the smallest ``t + 1``
    x-coordinates of their union) reuse ``B``'s coefficients; any other set gets
    its own (cached) :func:`lagrange_at_zero`.
    """
    out: dict[tuple[int, ...], _Recipe] = {}
    if len(sets) > 2:
        union = sorted({x for xs in sets for x in xs})
        base = tuple(union[: t + 1])
        if len(base) == t + 1:
            members = set(base)
            derived = [xs for xs in sets if members.issuperset(xs)]
            if len(derived) > 2:
                lam = lagrange_at_zero(base, prime=prime)
                mu = tuple(c * x % prime for c, x in zip(lam, base, strict=True))
                for xs in derived:
                    k = next(i for i, x in enumerate(base) if i >= t or xs[i] != x)
                    out[xs] = (lam[:k] + lam[k + 1 :], mu[:k] + mu[k + 1 :], base[k])
    for xs in sets:
        if xs not in out:
            out[xs] = (lagrange_at_zero(xs, prime=prime), (), 0)
    return out


def reconstruct_many(
    point_lists: Sequence[Sequence[tuple[int, int]]], t: int, *, prime: int = P
) -> list[int]:
    """Reconstruct many secrets at once; ``result[j]`` is the secret of ``point_lists[j]``.

    Each secret is interpolated from its ``t`` shares with the *smallest*
    x-coordinates (the others are not used: check the result against a commitment,
    as the SecAgg server does).  Secrets whose x-sets coincide share one set of
    Lagrange coefficients; x-sets that are ``t``-subsets of one ``(t+1)``-set — the
    complete graph, where each owner's holders are "all survivors but the owner" —
    reuse that set's coefficients (two dot products per secret), so ``S`` secrets
    cost ``O(t^2 + S t)`` multiplications instead of ``O(S t^2)``.  Equal to
    ``[reconstruct(sorted(pts)[:t], t) for pts in point_lists]``.

    Raises
    ------
    ParameterError
        A bad threshold, a list with fewer than ``t`` shares, duplicate, zero or
        out-of-field x-coordinates among the ``t`` used, or an out-of-field share.
    """
    check_prime(prime)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ParameterError("threshold must be a positive integer")
    chosen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    for points in point_lists:
        if len(points) < t:
            raise ParameterError(f"need at least {t} shares, got {len(points)}")
        xs, ys = zip(*sorted(points)[:t], strict=True)
        # C-level checks over the t used points: ints, in range, strictly ascending
        if set(map(type, xs)) != {int} or xs[0] < 1 or xs[-1] >= prime:
            for x in xs:
                check_element(x, what="x-coordinate", prime=prime)
            raise ParameterError("x-coordinate 0 would reveal the secret")
        if not all(map(lt, xs, xs[1:])):
            raise ParameterError("duplicate x-coordinates")
        if set(map(type, ys)) != {int} or min(ys) < 0 or max(ys) >= prime:
            for y in ys:
                check_element(y, what="share", prime=prime)
        chosen.append((xs, ys))
    family = _lagrange_family({xs for xs, _ in chosen}, t, prime)
    out = []
    for xs, ys in chosen:
        lam, mu, xk = family[xs]
        a: int = sum(map(mul, ys, lam))
        if not xk:
            out.append(a % prime)
        else:
            b: int = sum(map(mul, ys, mu))
            out.append((xk * a - b) % prime * pow(xk, -1, prime) % prime)
    return out


_BIG: Literal["big"] = "big"
#: x-coordinates of :func:`reconstruct_rows`' limb path are below this (party ids).
_ROW_X_LIMIT = 1 << 32
_ROW_LIMBS = 17  # 16-bit limbs of 34 bytes (272 bits): a share, a coefficient


def _limbs(be34: np.ndarray) -> np.ndarray:
    """``(..., 34)`` big-endian bytes -> ``(..., 17)`` float64 16-bit limbs, low limb first."""
    return be34.view(">u2")[..., ::-1].astype(np.float64)


def reconstruct_rows(xs: np.ndarray, ys: np.ndarray, t: int, *, prime: int = P) -> list[int]:
    """Secrets from ``S`` rows of exactly ``t`` shares, without a Python int per share.

    ``xs`` is ``(S, t)`` x-coordinates, strictly ascending in each row, in ``[1, 2^32)``;
    ``ys`` is ``(S, t, 33)`` ``uint8``, each share a big-endian field element.  Equal to
    ``reconstruct_many([list(zip(xs[r], y_r)) for r ...], t)``.

    The rows whose x-set is a ``t``-subset of ``B`` — the ``t + 1`` smallest
    x-coordinates of all rows (what the SecAgg server meets: every owner's holders
    are the first survivors but itself) — are interpolated all at once: with ``y``
    zero at the one missing coordinate ``x_k``, ``secret = (x_k a - b) / x_k`` where
    ``a = sum(y L_B)``, ``b = sum(y L_B x)`` (see :data:`_Recipe`); ``a`` and ``b``
    of every row are two matrix products over 16-bit limbs, exact in ``float64``
    (each sum is below ``(t+1) 2^32 < 2^53``), then carried into integers.  Any
    other row goes through :func:`reconstruct_many`.

    Raises
    ------
    ParameterError
        Bad shapes or threshold, x-coordinates not strictly ascending or out of
        range, or a share that is not a field element.
    """
    check_prime(prime)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ParameterError("threshold must be a positive integer")
    xs = np.asarray(xs)
    ys = np.asarray(ys)
    if xs.ndim != 2 or xs.shape[1] != t or xs.dtype.kind not in "ui":
        raise ParameterError("xs must be an (S, t) integer array")
    n_rows = xs.shape[0]
    width = (prime.bit_length() + 7) // 8
    if ys.shape != (n_rows, t, width) or ys.dtype != np.uint8:
        raise ParameterError(f"ys must be an (S, t, {width}) uint8 array")
    if n_rows == 0:
        return []
    x64 = xs.astype(np.int64)
    if int(x64.min()) < 1 or int(x64.max()) >= min(prime, _ROW_X_LIMIT):
        raise ParameterError("x-coordinates must be in [1, 2^32) and below the prime")
    if t > 1 and not bool(np.all(x64[:, 1:] > x64[:, :-1])):
        raise ParameterError("x-coordinates of a row must be strictly ascending")
    # shares < prime: big-endian rows compare like their values; only rows whose top
    # byte reaches the prime's are compared in Python
    p_bytes = prime.to_bytes(width, "big")
    flat = ys.reshape(-1, width)
    suspect = np.flatnonzero(flat[:, 0] >= p_bytes[0])
    for i in suspect.tolist():
        if bytes(flat[i]) >= p_bytes:
            raise ParameterError("share is not a field element")
    if prime != P or width + 1 != 2 * _ROW_LIMBS or t + 1 >= 1 << 21:
        return _rows_by_python(x64, flat, t, prime)
    union = np.sort(x64.ravel())  # distinct values by one sort (np.unique imports numpy.ma)
    union = union[np.concatenate(([True], union[1:] != union[:-1]))]
    base = union[: t + 1]
    if len(base) != t + 1:  # every row has the same x-set: no (t+1)-set to derive from
        return _rows_by_python(x64, flat, t, prime)
    pos = np.searchsorted(base, x64)
    inside = np.all(base[np.minimum(pos, t)] == x64, axis=1)
    out: list[int] = [0] * n_rows
    rest = np.flatnonzero(~inside)
    if len(rest):
        for r, v in zip(
            rest.tolist(),
            _rows_by_python(x64[rest], ys[rest].reshape(-1, width), t, prime),
            strict=True,
        ):
            out[r] = v
    rows = np.flatnonzero(inside)
    if not len(rows):
        return out
    base_t = tuple(base.tolist())
    lam = lagrange_at_zero(base_t, prime=prime)
    mu = [c * x % prime for c, x in zip(lam, base_t, strict=True)]
    coef = np.frombuffer(
        b"".join(c.to_bytes(2 * _ROW_LIMBS, "big") for c in (*lam, *mu)), dtype=np.uint8
    ).reshape(2, t + 1, 2 * _ROW_LIMBS)
    c_limbs = _limbs(coef)  # (2, t+1, 17)
    k = len(rows)
    padded = np.zeros((k, t, 2 * _ROW_LIMBS), dtype=np.uint8)
    padded[:, :, 1:] = ys[rows]
    y_limbs = _limbs(padded)  # (k, t, 17)
    big = np.zeros((k, _ROW_LIMBS, t + 1), dtype=np.float64)  # y by limb, zero at x_k
    big[np.arange(k)[:, None], :, pos[rows]] = y_limbs
    cmat = c_limbs.transpose(1, 0, 2).reshape(t + 1, 2 * _ROW_LIMBS)
    lhs = big.reshape(k * _ROW_LIMBS, t + 1)
    prod = np.empty((len(lhs), 2 * _ROW_LIMBS), dtype=np.float64)
    # in slices of 32 rows: OpenBLAS runs products this small on the calling thread
    # (no worker threads inside the core, whose CPU a thread-time figure would miss);
    # measured as fast as one single-threaded product
    for i in range(0, len(lhs), 32):
        np.matmul(lhs[i : i + 32], cmat, out=prod[i : i + 32])
    z = prod.astype(np.int64).reshape(k, _ROW_LIMBS, 2, _ROW_LIMBS)  # [row, y limb, a|b, coef limb]
    top = 2 * _ROW_LIMBS + 2  # limbs of a sum below (t+1) 2^(2*272) < 2^(16*36)
    acc = np.zeros((k, 2, top), dtype=np.int64)
    for i in range(_ROW_LIMBS):
        acc[:, :, i : i + _ROW_LIMBS] += z[:, i]
    for i in range(top - 1):  # carry: every limb < 2^16
        acc[:, :, i + 1] += acc[:, :, i] >> 16
        acc[:, :, i] &= 0xFFFF
    raw = acc.astype("<u2").tobytes()
    step = 2 * top
    # the missing coordinate of each row: the one position no share landed on
    filled = np.zeros((k, t + 1), dtype=bool)
    filled[np.arange(k)[:, None], pos[rows]] = True
    missing = base[np.argmin(filled, axis=1)]
    inverses: dict[int, int] = {}
    for j, (r, xk) in enumerate(zip(rows.tolist(), missing.tolist(), strict=True)):
        a = int.from_bytes(raw[2 * j * step : (2 * j + 1) * step], "little")
        b = int.from_bytes(raw[(2 * j + 1) * step : (2 * j + 2) * step], "little")
        inv = inverses.get(xk)
        if inv is None:
            inv = inverses[xk] = pow(xk, -1, prime)
        out[r] = (xk * a - b) % prime * inv % prime
    return out


def _rows_by_python(x64: np.ndarray, flat: np.ndarray, t: int, prime: int) -> list[int]:
    """:func:`reconstruct_rows` through :func:`reconstruct_many` (Python ints)."""
    xs = x64.tolist()
    ys = list(map(int.from_bytes, flat.view(f"V{flat.shape[1]}").ravel().tolist(),
                  repeat(_BIG)))
    return reconstruct_many(
        [list(zip(xs[r], ys[r * t : (r + 1) * t], strict=True)) for r in range(len(xs))],
        t,
        prime=prime,
    )
