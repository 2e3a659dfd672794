"""Randomised Walsh–Hadamard rotation (``protocols/dp.md`` §1 step 1).

``R(x) = H · Diag(ε) · pad(x) / sqrt(D)`` with ``D = 2^ceil(log2 d)``, ``H`` the
Sylvester–Hadamard matrix and ``ε ∈ {±1}^D`` expanded from a per-round seed.  ``R`` is
orthogonal (``R⁻¹ = Rᵀ = Diag(ε) · H / sqrt(D)``), so norms are preserved; after it
every coordinate of a vector of norm ``c`` is sub-Gaussian with proxy ``c²/D``, which
is what keeps modular wrap-around rare.

Security notes
--------------
The rotation seed is public (all clients and the server use it); it must be fixed for
the round *before* clients compute their updates.  The signs come from the AES-CTR
PRG of :mod:`secagg.primitives.prg`, never from numpy's RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.primitives.kdf import derive
from secagg.primitives.prg import MAX_SEED_BYTES, MIN_SEED_BYTES, expand

__all__ = ["RandomizedHadamard", "fwht", "padded_dim"]

FloatArray = npt.NDArray[np.float64]

#: Largest padded dimension accepted (2^30 float64 = 8 GiB; larger is certainly a bug).
MAX_PADDED_DIM = 1 << 30


def padded_dim(dim: int) -> int:
    """The smallest power of two ``≥ dim`` (``dim ≥ 1``).

    Raises
    ------
    ParameterError
        If ``dim`` is not a positive integer or the padded size exceeds 2^30.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ParameterError("dim must be a positive integer")
    p = 1 << (int(dim) - 1).bit_length()
    if p > MAX_PADDED_DIM:
        raise ParameterError(f"padded dimension {p} exceeds 2^30")
    return p


def fwht(x: npt.ArrayLike) -> FloatArray:
    """Unnormalised fast Walsh–Hadamard transform ``H·x`` (a new array), ``O(D log D)``.

    Raises
    ------
    ParameterError
        If ``x`` is not 1-D with a power-of-two length.
    """
    a = np.array(x, dtype=np.float64, copy=True)
    n = a.shape[0] if a.ndim == 1 else 0
    if a.ndim != 1 or n < 1 or n & (n - 1):
        raise ParameterError("fwht takes a 1-D vector whose length is a power of two")
    return _fwht_blocks(a)


#: Bits of the index handled by one dense Hadamard block (a 2^5 x 2^5 matrix product).
#: Measured at D = 2^19 with one BLAS thread (process CPU, best of 9): 4 bits ≈ 8–9 ms,
#: 5 bits ≈ 7–9 ms, 7 bits ≈ 15 ms, 10 bits ≈ 48 ms (the flops grow as 2^bits per pass,
#: the passes shrink only as 1/bits).
_BLOCK_BITS = 5
_HADAMARD: dict[int, FloatArray] = {}


def _hadamard(m: int) -> FloatArray:
    """The ``m x m`` Sylvester–Hadamard matrix (entries ±1, exact in float64)."""
    h = _HADAMARD.get(m)
    if h is None:
        h = np.ones((1, 1), dtype=np.float64)
        while h.shape[0] < m:
            h = np.block([[h, h], [h, -h]])
        _HADAMARD[m] = h
    return h


def _fwht_blocks(a: FloatArray, scratch: FloatArray | None = None) -> FloatArray:
    """``H·a`` for a power-of-two length, via ``H_{2^k} = ⊗ H_{2^{k_i}}``.

    Index bit-group by bit-group (low bits first), the vector viewed as
    ``(rest, m, s)`` is multiplied by the dense ``H_m`` along the middle axis: the
    same transform as the radix-2 butterflies (entries ±1, only the order of the
    float additions differs), but as ``ceil(log2(n)/5)`` matrix products instead of
    ``log2 n`` passes over memory: ``O(n log n)`` work (``32/5 ≈ 6`` multiply-adds
    per element and level).  The products alternate between ``a`` and ``scratch``
    (same length; allocated if not given), so nothing else is allocated; the result
    is whichever of the two the last product wrote (``a`` is overwritten).
    """
    n = a.shape[0]
    k = n.bit_length() - 1
    if scratch is None:
        scratch = np.empty_like(a)
    src, dst = a, scratch
    done = 0
    while done < k:
        p = min(_BLOCK_BITS, k - done)
        m, s = 1 << p, 1 << done
        h = _hadamard(m)
        if s == 1:  # one matrix product over rows of m (H is symmetric)
            np.matmul(src.reshape(-1, m), h, out=dst.reshape(-1, m))
        else:
            np.matmul(h, src.reshape(-1, m, s), out=dst.reshape(-1, m, s))
        src, dst = dst, src
        done += p
    return src


@dataclass(frozen=True, slots=True, kw_only=True)
class RandomizedHadamard:
    """The rotation for one round.

    Parameters
    ----------
    seed:
        The round's public rotation seed, 16..64 bytes.
    dim:
        Length ``d`` of the vectors to rotate (padded to ``D``).

    Raises
    ------
    ParameterError
        On a bad seed or dimension.
    """

    seed: bytes
    dim: int
    _signs: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ok = isinstance(self.seed, bytes) and MIN_SEED_BYTES <= len(self.seed) <= MAX_SEED_BYTES
        if not ok:
            raise ParameterError(f"rotation seed must be {MIN_SEED_BYTES}..{MAX_SEED_BYTES} bytes")
        big = padded_dim(self.dim)
        key = derive(self.seed, purpose="dp/rotation-signs", fields=(big,), length=32)
        bits = expand(key, big, 1)
        signs = 1.0 - 2.0 * bits.astype(np.float64)
        object.__setattr__(self, "_signs", signs)

    @property
    def padded_dim(self) -> int:
        return int(self._signs.shape[0])

    def forward(self, x: npt.ArrayLike) -> FloatArray:
        """``R(x)``: pad to ``D``, flip signs, transform, divide by ``sqrt(D)``.

        Raises
        ------
        ParameterError
            If ``x`` is not a finite 1-D vector of length ``dim``.
        """
        v = np.asarray(x, dtype=np.float64)
        if v.ndim != 1 or v.shape[0] != self.dim:
            raise ParameterError(f"expected a 1-D vector of length {self.dim}")
        if not np.all(np.isfinite(v)):
            raise ParameterError("input holds NaN or infinity")
        big = self.padded_dim
        padded = np.empty(big, dtype=np.float64)
        np.multiply(v, self._signs[: self.dim], out=padded[: self.dim])
        padded[self.dim :] = 0.0
        out = _fwht_blocks(padded)  # in place up to one scratch vector
        out /= np.sqrt(big)
        return out

    def inverse(self, y: npt.ArrayLike) -> FloatArray:
        """``R⁻¹(y)`` truncated to the first ``dim`` coordinates.

        Raises
        ------
        ParameterError
            If ``y`` is not a 1-D vector of length ``padded_dim``.
        """
        v = np.asarray(y, dtype=np.float64)
        if v.ndim != 1 or v.shape[0] != self.padded_dim:
            raise ParameterError(f"expected a 1-D vector of length {self.padded_dim}")
        out = _fwht_blocks(np.array(v, dtype=np.float64, copy=True))
        out /= np.sqrt(self.padded_dim)
        result: FloatArray = out[: self.dim] * self._signs[: self.dim]
        return result
