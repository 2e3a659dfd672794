"""Floats -> Z_{2^b} with unbiased stochastic rounding, and back.

A :class:`QuantizationSpec` fixes a clipping range ``[-clip, clip]`` and
``value_bits`` levels: ``x`` is clipped, mapped to
``z = (x + clip) / (2 * clip) * (2^value_bits - 1)`` (``= (x + clip) * scale`` with
``scale = (2^value_bits - 1) / (2 * clip)``), and rounded to ``floor(z)`` or
``floor(z) + 1`` with probability ``z - floor(z)`` (so ``E[round(z)] = z``).
The randomness comes from a CSPRNG.  The sum of up to ``max_clients`` quantized
vectors is at most ``max_clients * (2^value_bits - 1)``, so with
``bits = bits_for_sum(value_bits, max_clients)`` the modular sum never wraps and
equals the integer sum; :meth:`QuantizationSpec.dequantize_sum` inverts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import numpy.typing as npt

from secagg.encoding.modular import UIntArray, bits_for_sum, dtype_for_bits
from secagg.errors import ParameterError
from secagg.primitives.rand import RandomSource, SystemRandom, fill_uint64

__all__ = ["QuantizationSpec", "stochastic_round"]

#: Coordinates per pass of the fused rounding loop: its four scratch buffers
#: (≈ 800 KiB) stay in L2 while every step runs over the chunk.
ROUND_CHUNK = 1 << 15
_TWO53 = 9007199254740992.0  # 2^53


class _Rounder:
    """Scratch buffers for :func:`_round_into` (allocated once per call, reused per chunk)."""

    __slots__ = ("flags", "lo", "words", "z")

    def __init__(self, n: int) -> None:
        k = min(ROUND_CHUNK, max(n, 1))
        self.z = np.empty(k, dtype=np.float64)
        self.lo = np.empty(k, dtype=np.float64)
        self.words = np.empty(k + 2, dtype=np.uint64)  # 16 spare bytes: AES writes in place
        self.flags = np.empty(k, dtype=np.bool_)


def _round_chunk(sc: _Rounder, k: int, rng: RandomSource) -> npt.NDArray[np.float64]:
    """Round ``sc.z[:k]`` stochastically; returns the view of ``sc.lo`` holding the result.

    ``floor(z) + [u < z - floor(z)]`` with ``u = (w >> 11)·2^-53`` for the next 64-bit
    CSPRNG word ``w`` of each coordinate, evaluated as ``(w >> 11) < (z - floor(z))·2^53``
    (scaling by 2^53 is exact, so the decisions are those of the float comparison).
    """
    z, lo, w, flags = sc.z[:k], sc.lo[:k], sc.words[:k], sc.flags[:k]
    fill_uint64(rng, sc.words, k)
    np.right_shift(w, np.uint64(11), out=w)
    np.floor(z, out=lo)
    np.subtract(z, lo, out=z)
    np.multiply(z, _TWO53, out=z)
    np.less(w, z, out=flags)  # uint64 < 2^53 converts to float64 exactly
    np.add(lo, flags, out=lo)
    return lo


def stochastic_round(
    z: npt.NDArray[np.float64], rng: RandomSource | None = None
) -> npt.NDArray[np.float64]:
    """Unbiased randomized rounding: ``floor(z) + Bernoulli(z - floor(z))``.

    One 64-bit CSPRNG word per coordinate, in order: ``u = (w >> 11)·2^-53`` and the
    coordinate rounds up iff ``u < z - floor(z)``.  Runs in cache-sized chunks; ``z``
    is not modified.
    """
    src = rng if rng is not None else SystemRandom()
    flat = np.ascontiguousarray(z, dtype=np.float64).reshape(-1)
    out = np.empty(flat.shape[0], dtype=np.float64)
    sc = _Rounder(flat.shape[0])
    for start in range(0, flat.shape[0], ROUND_CHUNK):
        stop = min(start + ROUND_CHUNK, flat.shape[0])
        k = stop - start
        sc.z[:k] = flat[start:stop]
        out[start:stop] = _round_chunk(sc, k, src)
    return out.reshape(np.shape(z))


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizationSpec:
    """How float updates become elements of Z_{2^bits}.

    Parameters
    ----------
    clip:
        Values are clipped to ``[-clip, clip]`` (coordinate-wise).
    value_bits:
        Bits per quantized value (levels ``0 .. 2^value_bits - 1``).
    max_clients:
        Largest number of clients whose inputs are ever summed.
    bits:
        Modulus exponent.  Must be at least ``bits_for_sum(value_bits, max_clients)``
        and at most 64; ``0`` (the default) picks that minimum.
    """

    clip: float
    value_bits: int
    max_clients: int
    bits: int = field(default=0)

    def __post_init__(self) -> None:
        if not (isinstance(self.clip, (int, float)) and math.isfinite(self.clip) and self.clip > 0):
            raise ParameterError("clip must be a positive finite number")
        if isinstance(self.value_bits, bool) or not 1 <= self.value_bits <= 52:
            raise ParameterError("value_bits must be in [1, 52]")
        if isinstance(self.max_clients, bool) or self.max_clients < 1:
            raise ParameterError("max_clients must be >= 1")
        need = bits_for_sum(self.value_bits, self.max_clients)
        if self.bits == 0:
            object.__setattr__(self, "bits", need)
        elif not need <= self.bits <= 64:
            raise ParameterError(
                f"bits={self.bits} cannot hold the sum of {self.max_clients} values of "
                f"{self.value_bits} bits without wrapping (need >= {need})"
            )

    @property
    def scale(self) -> float:
        return ((1 << self.value_bits) - 1) / (2.0 * self.clip)

    @property
    def step(self) -> float:
        """Quantization step (the largest rounding error per coordinate)."""
        return 1.0 / self.scale

    def quantize(
        self, x: npt.ArrayLike, rng: RandomSource | None = None
    ) -> UIntArray:
        """Clip, scale and stochastically round a float vector into Z_{2^bits}.

        Raises
        ------
        ParameterError
            If ``x`` is not 1-D or holds NaN/inf.
        """
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise ParameterError("quantize takes a 1-D vector")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            arr = np.asarray(arr, dtype=np.float64)  # bool, object, ...: converted (or refused)
        # NaN propagates through min/max and ±inf shows in them: two cheap reductions
        # instead of a temporary mask.  Checked before any randomness is drawn.
        if arr.size and not (
            math.isfinite(float(np.min(arr))) and math.isfinite(float(np.max(arr)))
        ):
            raise ParameterError("input holds NaN or infinity")
        src = rng if rng is not None else SystemRandom()
        n = arr.shape[0]
        out = np.empty(n, dtype=dtype_for_bits(self.bits))
        # (x + clip) / (2 clip) is exactly 0.0 at -clip and 1.0 at +clip, so the ends of
        # the range land exactly on levels 0 and 2^value_bits - 1 even at 52 value bits
        # (multiplying by a precomputed scale can miss the top level by one).  The same
        # float operations, in the same order, as the one-pass formula
        # ``(clip(x, -c, c) + c) / (2c) * top``, one cache-sized chunk at a time.
        top = float((1 << self.value_bits) - 1)
        c = float(self.clip)
        two_c = 2.0 * c
        sc = _Rounder(n)
        for start in range(0, n, ROUND_CHUNK):
            stop = min(start + ROUND_CHUNK, n)
            k = stop - start
            z = sc.z[:k]
            z[...] = arr[start:stop]  # float64 (exact for float32 and small integers)
            np.clip(z, -c, c, out=z)
            np.add(z, c, out=z)
            np.divide(z, two_c, out=z)
            np.multiply(z, top, out=z)
            q = _round_chunk(sc, k, src)
            np.minimum(q, top, out=q)  # z <= top, so never binding: a guard, not a step
            out[start:stop] = q
        return cast("UIntArray", out)

    def dequantize_sum(self, total: UIntArray, count: int) -> npt.NDArray[np.float64]:
        """The float sum of ``count`` quantized vectors whose modular sum is ``total``."""
        if isinstance(count, bool) or not 0 <= count <= self.max_clients:
            raise ParameterError(f"count must be in [0, {self.max_clients}]")
        return np.asarray(total, dtype=np.float64) / self.scale - count * self.clip

    def dequantize(self, q: UIntArray) -> npt.NDArray[np.float64]:
        """One quantized vector back to floats."""
        return self.dequantize_sum(q, 1)
