"""Modular arithmetic in Z_{2^b} on numpy arrays (uint32 for b <= 32, uint64 above)."""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.primitives.prg import UIntArray, dtype_for_bits

__all__ = [
    "UIntArray",
    "add_into",
    "bits_for_sum",
    "check_in_range",
    "dtype_for_bits",
    "reduce",
    "unwrap_signed",
    "wrap_signed",
]


def check_in_range(vec: npt.NDArray[np.generic], bits: int) -> UIntArray:
    """Validate that ``vec`` is a 1-D array of the dtype for ``bits`` with values < 2^bits."""
    dt = dtype_for_bits(bits)
    if not isinstance(vec, np.ndarray) or vec.ndim != 1 or vec.dtype != dt:
        got = (
            f"a {vec.ndim}-D {vec.dtype} array"
            if isinstance(vec, np.ndarray)
            else f"a {type(vec).__module__}.{type(vec).__qualname__}".replace("builtins.", "")
        )
        raise ParameterError(f"expected a 1-D {np.dtype(dt).name} array for b={bits}, got {got}")
    if bits < 8 * np.dtype(dt).itemsize and len(vec) and int(vec.max()) >> bits:
        raise ParameterError(f"values must be < 2^{bits}")
    return vec  # type: ignore[return-value]


def reduce(vec: UIntArray, bits: int) -> UIntArray:
    """Reduce ``vec`` mod ``2^bits`` in place and return it."""
    dt = dtype_for_bits(bits)
    if bits < 8 * np.dtype(dt).itemsize:
        np.bitwise_and(vec, dt((1 << bits) - 1), out=vec)
    return vec


def add_into(acc: UIntArray, x: UIntArray, bits: int) -> None:
    """``acc = (acc + x) mod 2^bits`` in place (both already reduced, same dtype)."""
    if acc.shape != x.shape or acc.dtype != x.dtype:
        raise ParameterError("shape or dtype mismatch")
    np.add(acc, x, out=acc)
    reduce(acc, bits)


def wrap_signed(values: npt.NDArray[np.integer], bits: int) -> UIntArray:
    """Two's-complement wrap of signed integers into Z_{2^bits}."""
    dt = dtype_for_bits(bits)
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer):
        raise ParameterError("wrap_signed takes integer arrays")
    # two's complement: the int64 bits viewed as uint64 (one copy, no second cast)
    out = v.copy() if v.dtype == np.uint64 else v.astype(np.int64).view(np.uint64)
    if bits < 64:
        out &= np.uint64((1 << bits) - 1)
    return cast("UIntArray", out.astype(dt, copy=False))


def unwrap_signed(values: UIntArray, bits: int) -> npt.NDArray[np.int64]:
    """Map Z_{2^bits} back to the signed range ``[-2^(bits-1), 2^(bits-1))``."""
    dtype_for_bits(bits)
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.unsignedinteger):
        raise ParameterError("unwrap_signed takes unsigned integer arrays")
    v = v.astype(np.uint64)
    if bits < 64 and v.size and int(v.max()) >> bits:
        raise ParameterError(f"values must be < 2^{bits}")
    if bits == 64:
        as_signed: npt.NDArray[np.int64] = v.view(np.int64).copy()
        return as_signed
    neg = v >= np.uint64(1 << (bits - 1))
    signed = v.astype(np.int64)
    # 2^bits - v <= 2^(bits-1) fits in int64 for bits <= 63
    signed[neg] = -((np.uint64(1 << bits) - v[neg]).astype(np.int64))
    return signed


def bits_for_sum(value_bits: int, max_summands: int) -> int:
    """Smallest ``b`` with ``max_summands * (2^value_bits - 1) < 2^b``.

    The sum of up to ``max_summands`` values each in ``[0, 2^value_bits)`` then
    never wraps mod ``2^b``.
    """
    if value_bits < 1 or max_summands < 1:
        raise ParameterError("value_bits and max_summands must be positive")
    top = max_summands * ((1 << value_bits) - 1)
    b = max(1, top.bit_length())
    if b > 64:
        raise ParameterError(
            f"sum of {max_summands} values of {value_bits} bits needs {b} > 64 bits"
        )
    return b
