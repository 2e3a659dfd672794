"""Pack elements of Z_{2^b} at exactly ``b`` bits each (wire format of MaskedInput v2).

Layout (``protocols/wire/secagg.md``, "Packed vectors"): element ``i`` occupies bits
``[i·b, (i+1)·b)`` of one little-endian bit stream — stream bit ``p`` is bit
``p mod 8`` (least significant first) of byte ``floor(p/8)`` — and the stream is
cut to ``ceil(m·b/8)`` bytes; the unused high bits of the last byte are zero.  So
``m`` elements take ``packed_size(m, b) = ceil(m·b/8)`` bytes, and a range of
elements that starts at a multiple of 8 starts on a byte boundary: chunks of a
multiple of 8 elements pack and unpack independently (streaming).

Implementation: ``W`` elements (``W = 32`` for ``b <= 32``, else 64) pack into
exactly ``b`` words of ``W`` bits; each of the ``W`` element columns is shifted into
the one or two words it touches — about ``W + b`` vector operations per ``W``
elements, data-independent, no per-element Python loop.  :func:`pack` runs over
chunks of 2^15 elements (whole words, byte-aligned), so each chunk's columns and
transposes stay in cache; the bytes are the same as packing the vector at once.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt

from secagg.errors import DecodeError, ParameterError
from secagg.primitives.prg import UIntArray, dtype_for_bits

__all__ = ["pack", "packed_size", "unpack"]


def packed_size(length: int, bits: int) -> int:
    """``ceil(length·bits/8)``: the bytes of ``length`` packed elements."""
    dtype_for_bits(bits)
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ParameterError("length must be a non-negative integer")
    return (length * bits + 7) // 8


def _word(bits: int) -> tuple[int, type[np.unsignedinteger]]:
    return (32, np.uint32) if bits <= 32 else (64, np.uint64)


def pack(values: UIntArray, bits: int) -> bytes:
    """The packed bytes of ``values`` (each ``< 2^bits``; checked by the caller).

    Raises
    ------
    ParameterError
        On ``bits`` outside 1..64 or a non-1-D array.
    """
    dtype_for_bits(bits)
    v: npt.NDArray[np.unsignedinteger[Any]] = np.asarray(values)
    if v.ndim != 1 or v.dtype.kind != "u":
        raise ParameterError("values must be a 1-D unsigned integer array")
    n = len(v)
    size = (n * bits + 7) // 8
    if bits in (8, 16, 32, 64):
        return v.astype(f"<u{bits // 8}", copy=False).tobytes()
    out = np.empty(size, dtype=np.uint8)
    for start in range(0, n, _PACK_CHUNK):  # chunks of whole words: byte-aligned
        stop = min(start + _PACK_CHUNK, n)
        _pack_into(v[start:stop], bits, out[start * bits // 8 :])
    return out[:size].tobytes()


#: Elements per pass of :func:`pack` (a multiple of 64, so every chunk but the last
#: fills whole words and starts on a byte boundary): the chunk's columns stay in cache.
_PACK_CHUNK = 1 << 15


def _pack_into(
    v: npt.NDArray[np.unsignedinteger[Any]], bits: int, dest: npt.NDArray[np.uint8]
) -> None:
    """Pack ``v`` into the front of ``dest`` (whole words; bytes past ``dest`` dropped,
    and every bit past the last element is zero)."""
    n = len(v)
    w, wt = _word(bits)
    groups = -(-n // w)
    cols = np.zeros((groups, w), dtype=wt)
    cols.reshape(-1)[:n] = v
    cols_t = np.ascontiguousarray(cols.T)  # cols_t[j] = element j of every group
    out = np.zeros((bits, groups), dtype=wt)
    tmp = np.empty(groups, dtype=wt)
    for j in range(w):
        k, s = divmod(j * bits, w)
        np.left_shift(cols_t[j], wt(s), out=tmp)
        np.bitwise_or(out[k], tmp, out=out[k])
        if s + bits > w:
            np.right_shift(cols_t[j], wt(w - s), out=tmp)
            np.bitwise_or(out[k + 1], tmp, out=out[k + 1])
    le = np.dtype(wt).newbyteorder("<")
    words = np.ascontiguousarray(out.T).astype(le, copy=False).reshape(-1).view(np.uint8)
    take = min(words.shape[0], dest.shape[0])
    dest[:take] = words[:take]


def unpack(data: bytes | bytearray | memoryview, bits: int, length: int) -> UIntArray:
    """Inverse of :func:`pack`: ``length`` elements (uint32 for ``bits <= 32``, else uint64).

    Raises
    ------
    DecodeError
        If ``data`` is not exactly ``packed_size(length, bits)`` bytes or a padding
        bit of the last byte is set (the encoding is canonical).
    """
    dt = dtype_for_bits(bits)
    buf = memoryview(data).cast("B")
    size = packed_size(length, bits)
    if len(buf) != size:
        raise DecodeError(f"packed vector must be {size} bytes, got {len(buf)}")
    pad = 8 * size - length * bits
    if pad and buf[size - 1] >> (8 - pad):
        raise DecodeError("padding bits of a packed vector must be zero")
    if bits in (8, 16, 32, 64):
        raw = np.frombuffer(buf, dtype=f"<u{bits // 8}")
        return cast(UIntArray, raw.astype(dt))
    w, wt = _word(bits)
    groups = -(-length // w)
    wb = w // 8
    words = np.zeros(groups * bits * wb, dtype=np.uint8)
    words[:size] = np.frombuffer(buf, dtype=np.uint8)
    le = np.dtype(wt).newbyteorder("<")
    packed_t = np.ascontiguousarray(words.view(le).astype(wt).reshape(groups, bits).T)
    cols_t = np.empty((w, groups), dtype=wt)
    tmp = np.empty(groups, dtype=wt)
    mask = wt((1 << bits) - 1)
    for j in range(w):
        k, s = divmod(j * bits, w)
        col = cols_t[j]
        np.right_shift(packed_t[k], wt(s), out=col)
        if s + bits > w:
            np.left_shift(packed_t[k + 1], wt(w - s), out=tmp)
            np.bitwise_or(col, tmp, out=col)
        np.bitwise_and(col, mask, out=col)
    out = np.ascontiguousarray(cols_t.T).reshape(-1)[:length]
    return cast(UIntArray, out.astype(dt, copy=False))
