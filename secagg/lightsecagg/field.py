"""Vectorized arithmetic in GF(p), ``p = 2^31 - 1``, and the Lagrange (MDS) codes of
LightSecAgg (``protocols/lightsecagg.md`` §2, §4).

Elements are held in ``uint64`` arrays with values in ``[0, p)``: a product of two
elements is below ``2^62`` and fits.  Matrix products (:func:`matmul`) run as exact
``float64`` BLAS products on 11-bit limbs of the right operand, so no Python
integer object is created per element: every partial sum stays below ``2^53``.

Random elements come only from the AES-CTR PRG of :mod:`secagg.primitives.prg`
(31-bit words, rejecting ``p`` itself): :func:`prg_elements`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.primitives.prg import expand

__all__ = [
    "Elements",
    "P",
    "check_elements",
    "inverse",
    "lagrange_matrix",
    "matmul",
    "prg_elements",
]

#: The field modulus (a Mersenne prime).
P = 2**31 - 1
_P64 = np.uint64(P)
#: Rows of the inner dimension per float64 block (``2^31 * 2^11 * 2^10 < 2^53``).
_BLOCK = 1 << 10
_LIMB = 11

Elements = npt.NDArray[np.uint64]


def check_elements(a: npt.NDArray[Any], *, what: str = "elements") -> Elements:
    """``a`` as a ``uint64`` array of field elements.

    Raises
    ------
    ParameterError
        If ``a`` is not an unsigned/signed integer array with every value in ``[0, p)``.
    """
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "ui":
        raise ParameterError(f"{what} must be an integer numpy array")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= P):
        raise ParameterError(f"{what} must lie in [0, 2^31 - 1)")
    return a.astype(np.uint64, copy=False)


def inverse(a: Elements, *, prime: int = P) -> Elements:
    """Elementwise ``a^(p-2) mod p`` (Fermat), vectorized (``prime < 2^32``: another
    prime only for the small-field tests).

    Raises
    ------
    ParameterError
        If any element is zero (not invertible).
    """
    q = np.uint64(prime)
    a = np.asarray(a, dtype=np.uint64) % q
    if a.size and not a.all():
        raise ParameterError("zero has no inverse (two evaluation points coincide)")
    result = np.ones_like(a)
    base = a.copy()
    e = prime - 2
    while e:
        if e & 1:
            result = result * base % q
        base = base * base % q
        e >>= 1
    out: Elements = result
    return out


def lagrange_matrix(src: Sequence[int], dst: Sequence[int], *, prime: int = P) -> Elements:
    """``M[j, i] = l_i(dst[j])``: the Lagrange basis on the points ``src`` evaluated
    at ``dst`` — so ``M @ values_at_src = values_at_dst`` for every polynomial of
    degree ``< len(src)``.

    Computed in barycentric form: ``l_i(x) = w_i * prod_l (x - src_l) / (x - src_i)``
    with ``w_i = 1 / prod_{l != i} (src_i - src_l)``; ``dst`` and ``src`` must be
    disjoint and each free of repeats.  ``prime`` (``< 2^32``) is ``p`` except in
    the small-field tests.

    Raises
    ------
    ParameterError
        On repeated points, points outside ``[0, p)``, or a point in both lists.
    """
    q = np.uint64(prime)
    s = np.asarray(list(src), dtype=np.int64)
    d = np.asarray(list(dst), dtype=np.int64)
    for name, v in (("src", s), ("dst", d)):
        if v.ndim != 1 or (v.size and (int(v.min()) < 0 or int(v.max()) >= prime)):
            raise ParameterError(f"{name} points must lie in [0, p)")
        if len(set(v.tolist())) != len(v):
            raise ParameterError(f"{name} points repeat")
    if set(s.tolist()) & set(d.tolist()):
        raise ParameterError("src and dst points overlap")
    su = s.astype(np.uint64)
    du = d.astype(np.uint64)
    k = len(su)
    # w_i: prod over l != i of (src_i - src_l)
    w = np.ones(k, dtype=np.uint64)
    for idx in range(k):
        diff = (su[idx] + q - su) % q  # src_i - src_l
        diff[idx] = 1
        w[idx] = _prod(diff, prime)
    winv = inverse(w, prime=prime)
    # full product at every dst point
    full = np.ones(len(du), dtype=np.uint64)
    for idx in range(k):
        full = full * ((du + q - su[idx]) % q) % q
    diffs = (du[:, None] + q - su[None, :]) % q  # (x_j - src_i)
    m: Elements = full[:, None] * inverse(diffs, prime=prime) % q
    m = m * winv[None, :] % q
    return m


def _prod(v: Elements, prime: int) -> int:
    acc = 1
    for x in v.tolist():
        acc = acc * int(x) % prime
    return acc


def matmul(a: Elements, b: Elements) -> Elements:
    """``a @ b mod p`` for ``a`` (r x k), ``b`` (k x L) of field elements, exact.

    ``b`` is split into three 11-bit limbs; each limb product runs in ``float64``
    over blocks of at most 1024 inner rows, where every partial sum is an integer
    below ``2^53`` (exact in any summation order).

    Raises
    ------
    ParameterError
        On shapes that do not match.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ParameterError("matmul: shapes do not match")
    r, k = a.shape
    out = np.zeros((r, b.shape[1]), dtype=np.uint64)
    for start in range(0, k, _BLOCK):
        stop = min(k, start + _BLOCK)
        af = a[:, start:stop].astype(np.float64)
        bb = b[start:stop]
        for limb in range(3):
            part = ((bb >> np.uint64(_LIMB * limb)) & np.uint64((1 << _LIMB) - 1)).astype(
                np.float64)
            prod = (af @ part).astype(np.uint64) % _P64
            if limb:
                prod = (prod << np.uint64(_LIMB * limb)) % _P64
            out += prod
            out %= _P64
    return out


def prg_elements(seed: bytes, count: int) -> Elements:
    """``count`` uniform field elements from the AES-CTR PRG of ``seed``.

    Element ``i`` is the ``i``-th PRG element of ``Z_{2^31}`` (``expand(seed, ., 31)``)
    that is not ``p = 2^31 - 1`` (rejection: exactly uniform on ``[0, p)``).

    Raises
    ------
    ParameterError
        On a short seed or a negative count.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ParameterError("count must be a non-negative integer")
    raw = expand(seed, count, 31).astype(np.uint64)
    good = raw[raw != _P64]
    offset = count
    while len(good) < count:  # probability ~ count * 2^-31 per call
        more = expand(seed, count - len(good), 31, offset=offset).astype(np.uint64)
        offset += len(more)
        good = np.concatenate([good, more[more != _P64]])
    out: Elements = good[:count].copy()
    return out
