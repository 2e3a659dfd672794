"""Input checks of the encoding floor and the dtypes it promises.

``check_in_range`` is what every party runs on a vector before it enters a sum;
``flatten``/``unflatten`` promise float64 whatever the input dtype; a wire count
may equal its bound.  Written for mutants that survived ``mutmut`` over
``secagg/encoding`` (benchmarks/mutation/README.md).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from secagg.encoding import modular, tensors
from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, ParameterError


@pytest.mark.parametrize(
    ("vec", "bits", "got"),
    [
        (np.zeros(3, dtype=np.uint64), 16, "a 1-D uint64 array"),
        (np.zeros((2, 2), dtype=np.uint32), 16, "a 2-D uint32 array"),
        (np.zeros(0, dtype=np.int32), 8, "a 1-D int32 array"),
        ([1, 2], 16, "a list"),
        (b"ab", 40, "a bytes"),
        (np.uint32(3), 16, "a numpy.uint32"),
    ],
)
def test_check_in_range_names_what_it_got(vec: object, bits: int, got: str) -> None:
    want = "uint32" if bits <= 32 else "uint64"
    msg = f"expected a 1-D {want} array for b={bits}, got {got}"
    with pytest.raises(ParameterError, match=f"^{re.escape(msg)}$"):
        modular.check_in_range(vec, bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("bits", [1, 7, 31, 32, 33, 63, 64])
def test_check_in_range_bound_is_exact(bits: int) -> None:
    dt = np.uint32 if bits <= 32 else np.uint64
    top = (1 << bits) - 1
    ok = np.array([0, top], dtype=dt)
    assert modular.check_in_range(ok, bits) is ok
    assert modular.check_in_range(np.zeros(0, dtype=dt), bits).size == 0
    if bits < 8 * np.dtype(dt).itemsize:
        for bad in (top + 1, np.iinfo(dt).max):
            with pytest.raises(ParameterError, match=rf"^values must be < 2\^{bits}$"):
                modular.check_in_range(np.array([0, bad], dtype=dt), bits)
    with pytest.raises(ParameterError):
        modular.check_in_range(ok, 0)


def test_flatten_is_float64_whatever_the_input() -> None:
    vec, layout = tensors.flatten({"b": np.array([[1, 2]], dtype=np.int64), "a": [3]})
    assert vec.dtype == np.float64 and vec.tolist() == [3.0, 1.0, 2.0]
    assert layout.names == ("a", "b") and layout.shapes == ((1,), (1, 2))
    empty, lay0 = tensors.flatten({})
    assert empty.dtype == np.float64 and empty.shape == (0,) and lay0.size == 0
    # precision: an int64 above 2^53 is converted, not kept as an integer array
    big, _ = tensors.flatten({"x": np.array([2**60 + 1], dtype=np.int64)})
    assert big.dtype == np.float64
    back = tensors.unflatten(np.array([1, 2, 3], dtype=np.int32), layout)
    assert back["a"].dtype == back["b"].dtype == np.float64
    assert back["b"].tolist() == [[2.0, 3.0]]


def test_unflatten_size_mismatch() -> None:
    _, layout = tensors.flatten({"a": np.zeros(3)})
    with pytest.raises(ParameterError, match=r"^vector of size 2 does not match layout of size 3$"):
        tensors.unflatten(np.zeros(2), layout)


def test_count_may_equal_its_bounds() -> None:
    data = Writer().u32(3).raw(b"xyz").getvalue()
    assert Reader(data).count(3) == 3  # == max_count and == bytes left
    with pytest.raises(DecodeError, match=r"^element count 3 is out of bounds$"):
        Reader(data).count(2)
    with pytest.raises(DecodeError, match=r"^element count 3 is out of bounds$"):
        Reader(data[:-1]).count(10)


def test_unflatten_walks_every_array_in_order() -> None:
    arrays = {"a": np.arange(2.0), "b": np.arange(3.0) + 10, "c": np.arange(4.0).reshape(2, 2) + 20}
    vec, layout = tensors.flatten(arrays)
    back = tensors.unflatten(vec, layout)
    for name, arr in arrays.items():
        assert back[name].tolist() == arr.tolist()


@pytest.mark.parametrize(
    ("names", "shapes", "message"),
    [
        (("a", "b"), ((1,),), "a layout needs exactly one shape per name"),
        (("a", "a"), ((1,), (2,)), "duplicate names in layout"),
        (("a",), ((2.0,),), "shapes hold non-negative integers"),
        (("a",), ((True,),), "shapes hold non-negative integers"),
        (("a",), ((3, -1),), "shapes hold non-negative integers"),
    ],
)
def test_layout_refuses_inconsistent_shapes(
    names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], message: str
) -> None:
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        tensors.Layout(names, shapes)


def test_modular_helpers_refuse_with_a_message() -> None:
    acc = np.zeros(3, dtype=np.uint32)
    for x in (np.zeros(4, dtype=np.uint32), np.zeros(3, dtype=np.uint64)):
        with pytest.raises(ParameterError, match=r"^shape or dtype mismatch$"):
            modular.add_into(acc, x, 16)  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"^wrap_signed takes integer arrays$"):
        modular.wrap_signed(np.zeros(2), 16)  # type: ignore[arg-type]


def test_wrap_signed_is_exact_on_64_bit_values() -> None:
    v = np.array([-1, 2**62 + 1, -(2**63), 2**63 - 1], dtype=np.int64)
    assert modular.wrap_signed(v, 64).tolist() == [2**64 - 1, 2**62 + 1, 2**63, 2**63 - 1]
    assert modular.wrap_signed(v, 63).tolist() == [2**63 - 1, 2**62 + 1, 0, 2**63 - 1]
    u = np.array([2**64 - 1, 2**53 + 1], dtype=np.uint64)
    assert modular.wrap_signed(u, 64).tolist() == [2**64 - 1, 2**53 + 1]


def test_writer_raw_parts_joins_once_and_takes_only_bytes():
    w = Writer().u8(1).raw_parts([b"ab", b"", b"cd"]).raw(b"e")
    assert w.getvalue() == b"\x01abcde"
    for bad in ([bytearray(b"x")], [memoryview(b"x")], [b"a", "b"]):
        with pytest.raises(ParameterError):
            Writer().raw_parts(bad)  # type: ignore[arg-type]
