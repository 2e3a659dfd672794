"""bitpack.pack works chunk by chunk; its bytes are still the one bit stream the wire
format defines (element i at stream bits [i·b, (i+1)·b), least significant first)."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding import bitpack


def _reference(v: np.ndarray, bits: int) -> bytes:
    shifts = np.arange(bits, dtype=np.uint64)
    stream = ((v.astype(np.uint64)[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(stream.reshape(-1), bitorder="little").tobytes()


@pytest.mark.parametrize("bits", [1, 7, 29, 31, 33, 63])
@pytest.mark.parametrize("extra", [0, 1, 63, 64 + 5])
def test_chunked_pack_is_the_wire_bit_stream(bits: int, extra: int) -> None:
    n = 2 * bitpack._PACK_CHUNK + extra
    gen = np.random.default_rng(bits * 1000 + extra)  # test data, not secret
    dt = np.uint32 if bits <= 32 else np.uint64
    v = (gen.integers(0, 1 << bits, size=n, dtype=np.uint64)).astype(dt)
    data = bitpack.pack(v, bits)
    assert len(data) == bitpack.packed_size(n, bits)
    assert data == _reference(v, bits)
    assert np.array_equal(bitpack.unpack(data, bits, n), v)
