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
from secagg.primitives.rand import RandomSource, SystemRandom, random_unit_float64

__all__ = ["QuantizationSpec", "stochastic_round"]


def stochastic_round(
    z: npt.NDArray[np.float64], rng: RandomSource | None = None
) -> npt.NDArray[np.float64]:
    """Unbiased randomized rounding: ``floor(z) + Bernoulli(z - floor(z))``."""
    src = rng if rng is not None else SystemRandom()
    lo = np.floor(z)
    u = random_unit_float64(src, z.size).reshape(z.shape)
    return lo + (u < (z - lo))


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
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 1:
            raise ParameterError("quantize takes a 1-D vector")
        if not np.all(np.isfinite(arr)):
            raise ParameterError("input holds NaN or infinity")
        # (x + clip) / (2 clip) is exactly 0.0 at -clip and 1.0 at +clip, so the ends of
        # the range land exactly on levels 0 and 2^value_bits - 1 even at 52 value bits
        # (multiplying by a precomputed scale can miss the top level by one).
        top = float((1 << self.value_bits) - 1)
        z = (np.clip(arr, -self.clip, self.clip) + self.clip) / (2.0 * self.clip) * top
        q = stochastic_round(z, rng)
        np.clip(q, 0, (1 << self.value_bits) - 1, out=q)
        return cast("UIntArray", q.astype(dtype_for_bits(self.bits)))

    def dequantize_sum(self, total: UIntArray, count: int) -> npt.NDArray[np.float64]:
        """The float sum of ``count`` quantized vectors whose modular sum is ``total``."""
        if isinstance(count, bool) or not 0 <= count <= self.max_clients:
            raise ParameterError(f"count must be in [0, {self.max_clients}]")
        return np.asarray(total, dtype=np.float64) / self.scale - count * self.clip

    def dequantize(self, q: UIntArray) -> npt.NDArray[np.float64]:
        """One quantized vector back to floats."""
        return self.dequantize_sum(q, 1)
