"""Packed vectors (``protocols/wire/secagg.md``, "Packed vectors") against the spec.

The reference below is written from the layout paragraph alone, with Python
integers: element ``i`` is bits ``[i*b, (i+1)*b)`` of one little-endian bit
stream cut to ``ceil(m*b/8)`` bytes.  ``secagg.encoding.bitpack`` packs word
columns with numpy; the two must agree bit for bit for every ``b`` in 1..64.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding import bitpack
from secagg.encoding.codec import Reader
from secagg.errors import DecodeError, ParameterError
from secagg.primitives.prg import expand

LENGTHS = (0, 1, 7, 8, 9, 31, 32, 33, 64, 65, 100)


def _reference_pack(values: list[int], bits: int) -> bytes:
    stream = 0
    for i, v in enumerate(values):
        stream |= v << (i * bits)
    return stream.to_bytes((len(values) * bits + 7) // 8, "little")


def _values(bits: int, length: int) -> np.ndarray:
    return expand(bits.to_bytes(1, "big") * 16, length, bits)  # uniform in [0, 2^bits)


@pytest.mark.parametrize("bits", range(1, 65))
def test_pack_is_the_little_endian_bit_stream(bits: int) -> None:
    dt = np.uint32 if bits <= 32 else np.uint64
    top = (1 << bits) - 1
    for length in LENGTHS:
        v = _values(bits, length)
        packed = bitpack.pack(v, bits)
        assert packed == _reference_pack([int(x) for x in v], bits), (bits, length)
        assert len(packed) == bitpack.packed_size(length, bits) == (length * bits + 7) // 8
        back = bitpack.unpack(packed, bits, length)
        assert back.dtype == dt and back.tolist() == v.tolist()
    # extremes: all ones and a lone top bit at the end of each word
    ones = np.full(67, top, dtype=dt)
    assert bitpack.pack(ones, bits) == _reference_pack([top] * 67, bits)
    assert bitpack.unpack(bitpack.pack(ones, bits), bits, 67).tolist() == [top] * 67


def test_chunks_of_eight_elements_pack_independently() -> None:
    for bits in (3, 13, 20, 37):
        v = _values(bits, 48)
        whole = bitpack.pack(v, bits)
        parts = b"".join(bitpack.pack(v[i : i + 16], bits) for i in range(0, 48, 16))
        assert whole == parts


@pytest.mark.parametrize("bits", [1, 5, 12, 31, 33, 63])
def test_unpack_is_canonical(bits: int) -> None:
    length = 5
    packed = bitpack.pack(_values(bits, length), bits)
    pad = 8 * len(packed) - length * bits
    if pad:
        bad = packed[:-1] + bytes([packed[-1] | (1 << (8 - pad))])  # lowest padding bit
        with pytest.raises(DecodeError, match=r"^padding bits of a packed vector must be zero$"):
            bitpack.unpack(bad, bits, length)
    else:
        assert bitpack.unpack(packed, bits, length).tolist() == _values(bits, length).tolist()
    for wrong in (packed[:-1], packed + b"\x00"):
        with pytest.raises(DecodeError, match=f"^packed vector must be {len(packed)} bytes"):
            bitpack.unpack(wrong, bits, length)


def test_unpack_accepts_views_and_full_width_bytes() -> None:
    v = _values(16, 9)
    packed = bitpack.pack(v, 16)
    assert packed == v.astype("<u2").tobytes()
    assert bitpack.unpack(memoryview(packed), 16, 9).tolist() == v.tolist()
    assert bitpack.unpack(bytearray(packed), 16, 9).dtype == np.uint32


def test_argument_errors() -> None:
    with pytest.raises(ParameterError, match=r"^length must be a non-negative integer$"):
        bitpack.packed_size(-1, 8)
    for bad in (True, 1.0):
        with pytest.raises(ParameterError):
            bitpack.packed_size(bad, 8)  # type: ignore[arg-type]
    assert bitpack.packed_size(0, 64) == 0
    with pytest.raises(ParameterError):
        bitpack.packed_size(1, 65)
    for values in (np.zeros((2, 2), dtype=np.uint32), np.zeros(3, dtype=np.int32)):
        with pytest.raises(ParameterError, match=r"^values must be a 1-D unsigned integer array$"):
            bitpack.pack(values, 12)
    with pytest.raises(ParameterError):
        bitpack.pack(np.zeros(3, dtype=np.uint32), 0)


def test_reader_rewind() -> None:
    r = Reader(b"\x01\x02\x03")
    assert r.u16() == 0x0102
    r.rewind(1)
    assert r.u16() == 0x0203
    r.rewind(3)
    assert r.u8() == 1
    with pytest.raises(ParameterError, match=r"^cannot rewind past the start$"):
        r.rewind(2)
    with pytest.raises(ParameterError):
        r.rewind(-1)
    r.rewind(0)
    assert r.remaining == 2
