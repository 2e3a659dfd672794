"""The strict binary codec and tensor flattening."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding.codec import MAX_BLOB, Reader, Writer
from secagg.encoding.tensors import Layout, flatten, unflatten
from secagg.errors import DecodeError, ParameterError


def _msg() -> bytes:
    return Writer().u8(1).u16(513).u32(7).u64(2**64 - 1).blob(b"hello").raw(b"xyz").getvalue()


def _parse(data: bytes, max_len: int = MAX_BLOB) -> tuple[object, ...]:
    r = Reader(data)
    out = (r.u8(), r.u16(), r.u32(), r.u64(), r.blob(max_len), r.raw(3))
    r.finish()
    return out


def test_round_trip_and_layout():
    data = _msg()
    assert data[:3] == b"\x01\x02\x01"  # big-endian
    assert _parse(data) == (1, 513, 7, 2**64 - 1, b"hello", b"xyz")


def test_every_truncation_is_rejected():
    data = _msg()
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            _parse(data[:cut])


@given(st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_rejected(extra):
    with pytest.raises(DecodeError):
        _parse(_msg() + extra)


def test_oversized_lengths_are_rejected_before_allocation():
    with pytest.raises(DecodeError):
        _parse(_msg(), max_len=4)  # "hello" is 5 bytes
    hostile = Writer().u32(0xFFFFFFFF).getvalue()
    with pytest.raises(DecodeError):
        Reader(hostile).blob()
    r = Reader(Writer().u32(3).u8(1).getvalue())
    with pytest.raises(DecodeError):
        r.count(10)  # 3 elements claimed, 1 byte left
    with pytest.raises(DecodeError):
        Reader(Writer().u32(11).raw(bytes(20)).getvalue()).count(10)
    assert Reader(Writer().u32(2).raw(bytes(2)).getvalue()).count(10) == 2


@given(st.binary(max_size=64))
def test_reader_never_raises_anything_but_decode_error(data):
    r = Reader(data)
    try:
        r.u16()
        r.blob(16)
        r.u64()
        r.finish()
    except DecodeError:
        pass


def test_writer_rejects_values_that_do_not_fit():
    for call in (lambda: Writer().u8(256), lambda: Writer().u16(-1), lambda: Writer().u32(True),
                 lambda: Writer().u64(2**64)):
        with pytest.raises(ParameterError):
            call()
    with pytest.raises(DecodeError):
        Reader("not bytes")  # type: ignore[arg-type]


def test_raw_view_is_zero_copy_and_bounded():
    r = Reader(bytes(range(10)))
    assert bytes(r.raw_view(4)) == bytes(range(4))
    assert r.remaining == 6
    with pytest.raises(DecodeError):
        r.raw_view(7)
    assert r.remaining == 6


def test_flatten_unflatten_round_trip():
    arrays = {"b": np.arange(6.0).reshape(2, 3), "a": np.array([1.5]), "c": np.zeros((0, 4))}
    vec, layout = flatten(arrays)
    assert layout.names == ("a", "b", "c") and layout.size == 7
    assert vec.tolist() == [1.5, 0, 1, 2, 3, 4, 5]
    back = unflatten(vec, layout)
    for k, v in arrays.items():
        assert np.array_equal(back[k], v) and back[k].shape == v.shape
    with pytest.raises(ParameterError):
        unflatten(vec[:-1], layout)
    with pytest.raises(ParameterError):
        unflatten(vec.reshape(1, 7), layout)


def test_layout_is_validated():
    with pytest.raises(ParameterError):
        Layout(("a", "b"), ((1,),))
    with pytest.raises(ParameterError):
        Layout(("a", "a"), ((1,), (2,)))
    with pytest.raises(ParameterError):
        Layout(("a",), ((-1,),))
