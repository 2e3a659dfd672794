"""PRG / mask properties and typed errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.primitives import prg

BITS = st.sampled_from([1, 7, 8, 16, 20, 31, 32, 33, 48, 63, 64])
SEEDS = st.binary(min_size=16, max_size=64)


def _vec(bits: int, n: int, fill: int) -> np.ndarray:
    dt = prg.dtype_for_bits(bits)
    v = (np.arange(n, dtype=np.uint64) * np.uint64(fill | 1)) & np.uint64((1 << bits) - 1)
    return v.astype(dt)


@given(BITS, st.lists(SEEDS, min_size=1, max_size=4), st.integers(0, 300), st.integers(0, 10**6),
       st.integers(0, 2**32))
def test_mask_added_then_subtracted_restores(bits, seeds, n, offset, fill):
    x = _vec(bits, n, fill)
    y = x.copy()
    prg.apply_masks(y, [(s, 1) for s in seeds], bits, offset=offset)
    if n >= 8 and bits >= 8:
        assert not np.array_equal(x, y)
    prg.apply_masks(y, [(s, -1) for s in reversed(seeds)], bits, offset=offset)
    assert np.array_equal(x, y)


@given(BITS, SEEDS, st.integers(0, 400), st.integers(0, 5000), st.data())
def test_chunked_expansion_equals_whole(bits, seed, n, offset, data):
    whole = prg.expand(seed, n, bits, offset=offset)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=6)))
    parts = []
    prev = 0
    for c in [*cuts, n]:
        parts.append(prg.expand(seed, c - prev, bits, offset=offset + prev))
        prev = c
    assert np.array_equal(np.concatenate(parts), whole)
    # apply_masks with any chunk size (multiple of 4) gives the same result too
    chunk = 4 * data.draw(st.integers(1, 40))
    v = np.zeros(n, dtype=prg.dtype_for_bits(bits))
    prg.apply_masks(v, [(seed, 1)], bits, offset=offset, chunk_elements=chunk)
    assert np.array_equal(v, whole)


@given(BITS, SEEDS, SEEDS)
def test_pairwise_masks_cancel(bits, s1, s2):
    n = 37
    a = _vec(bits, n, 3)
    b = _vec(bits, n, 5)
    prg.add_mask(a, s1, bits, sign=1)
    prg.add_mask(b, s1, bits, sign=-1)
    total = (a.astype(object) + b.astype(object)) % (1 << bits)
    want = (_vec(bits, n, 3).astype(object) + _vec(bits, n, 5).astype(object)) % (1 << bits)
    assert list(total) == list(want)


def test_elements_are_reduced_and_look_uniform():
    for bits in (1, 7, 20, 33, 64):
        v = prg.expand(b"k" * 16, 4000, bits)
        assert int(v.max()) < (1 << bits)
        if bits == 1:
            # 4000 fair bits: |mean - 0.5| < 0.05 fails with probability < 1e-9
            assert abs(float(v.mean()) - 0.5) < 0.05


def test_different_seeds_give_different_masks():
    assert not np.array_equal(prg.expand(b"a" * 16, 16, 32), prg.expand(b"b" * 16, 16, 32))


@pytest.mark.parametrize(
    "call",
    [
        lambda: prg.expand(b"s" * 15, 4, 16),  # short seed
        lambda: prg.expand(b"s" * 65, 4, 16),  # long seed
        lambda: prg.expand("s" * 16, 4, 16),  # not bytes
        lambda: prg.expand(b"s" * 16, 4, 0),  # bad bits
        lambda: prg.expand(b"s" * 16, 4, 65),
        lambda: prg.expand(b"s" * 16, 4, True),
        lambda: prg.expand(b"s" * 16, -1, 16),
        lambda: prg.expand(b"s" * 16, 4, 16, offset=-1),
        lambda: prg.apply_masks(np.zeros(4, np.uint64), [(b"s" * 16, 1)], 16),  # dtype
        lambda: prg.apply_masks(np.zeros((2, 2), np.uint32), [(b"s" * 16, 1)], 16),
        lambda: prg.apply_masks(np.full(4, 1 << 16, np.uint32), [(b"s" * 16, 1)], 16),
        lambda: prg.apply_masks(np.zeros(4, np.uint32), [(b"s" * 16, 2)], 16),  # sign
        lambda: prg.apply_masks(np.zeros(4, np.uint32), [(b"s" * 16, 1)], 16, chunk_elements=6),
        lambda: prg.add_mask(np.zeros(8, np.uint32)[::2], b"s" * 16, 16),  # not contiguous
    ],
)
def test_typed_errors(call):
    with pytest.raises(ParameterError):
        call()


def test_failed_apply_changes_nothing():
    v = np.arange(8, dtype=np.uint32)
    with pytest.raises(ParameterError):
        prg.apply_masks(v, [(b"s" * 16, 1), (b"short", 1)], 16)
    assert np.array_equal(v, np.arange(8, dtype=np.uint32))
    ro = np.arange(8, dtype=np.uint32)
    ro.flags.writeable = False
    with pytest.raises(ParameterError):
        prg.add_mask(ro, b"s" * 16, 16)
