"""Quantization (unbiased, within one step), modular helpers, wrap/unwrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding import modular
from secagg.encoding.quantize import QuantizationSpec, stochastic_round
from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom


def _rng(seed: int = 0) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed, warn=False)


def test_quantization_is_unbiased():
    """The mean of N independent quantizations of x is x (to within Hoeffding's bound).

    Each dequantized value lies in ``[lo, lo + step]`` for the two neighboring levels,
    so by Hoeffding ``P(|mean - x| >= a) <= 2 exp(-2 N a^2 / step^2)``.  With
    ``a = 3 step / sqrt(N)`` that is ``2 e^-18 ~ 3e-8`` per value; over the 6 values
    here the false-failure rate for a random seed is below 2e-7.  The seed is fixed,
    so the test is deterministic; a rounding rule with bias >= 0.03 step (e.g.
    round-to-nearest on these fractional positions) fails it.
    """
    spec = QuantizationSpec(clip=1.0, value_bits=4, max_clients=10)
    n = 20_000
    bound = 3 * spec.step / math.sqrt(n)
    values = [-0.97, -0.31, 0.0, 0.123, 0.5, 0.9]
    for i, x in enumerate(values):
        q = spec.quantize(np.full(n, x), _rng(i))
        mean = float(np.mean(spec.dequantize(q)))
        assert abs(mean - x) < bound, (x, mean, bound)


def test_round_to_nearest_would_fail_the_bias_bound():
    """Sanity check that the bound above is tight enough to catch a biased rounding."""
    spec = QuantizationSpec(clip=1.0, value_bits=4, max_clients=10)
    z = (0.123 + spec.clip) * spec.scale
    biased = (np.round(z) / spec.scale) - spec.clip
    assert abs(biased - 0.123) > 3 * spec.step / math.sqrt(20_000)


@given(
    st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=50),
    st.floats(0.01, 5),
    st.integers(1, 24),
    st.integers(0, 2**32),
)
def test_quantization_error_is_within_one_step(xs, clip, value_bits, seed):
    spec = QuantizationSpec(clip=clip, value_bits=value_bits, max_clients=7)
    x = np.array(xs)
    q = spec.quantize(x, _rng(seed))
    assert q.dtype == modular.dtype_for_bits(spec.bits)
    assert int(q.max()) <= (1 << value_bits) - 1
    err = np.abs(spec.dequantize(q) - np.clip(x, -clip, clip))
    assert float(err.max()) <= spec.step * (1 + 1e-9)


@given(st.integers(1, 8), st.integers(0, 2**32))
def test_sum_of_quantized_inputs_dequantizes(k, seed):
    spec = QuantizationSpec(clip=2.0, value_bits=8, max_clients=8)
    r = _rng(seed)
    xs = [np.linspace(-2.5, 2.5, 9) * (i + 1) / 8 for i in range(k)]
    acc = np.zeros(9, dtype=modular.dtype_for_bits(spec.bits))
    for x in xs:
        modular.add_into(acc, spec.quantize(x, r), spec.bits)
    got = spec.dequantize_sum(acc, k)
    want = sum(np.clip(x, -2.0, 2.0) for x in xs)
    assert np.all(np.abs(got - want) <= k * spec.step * (1 + 1e-9))


def test_stochastic_round_only_picks_neighbors():
    z = np.array([0.0, 0.5, 1.25, 7.999, 3.0])
    for s in range(20):
        r = stochastic_round(z, _rng(s))
        assert np.all((r == np.floor(z)) | (r == np.floor(z) + 1))
        assert r[0] == 0.0 and r[4] == 3.0


@pytest.mark.parametrize(
    "kw",
    [
        dict(clip=0.0, value_bits=8, max_clients=2),
        dict(clip=float("inf"), value_bits=8, max_clients=2),
        dict(clip=1.0, value_bits=0, max_clients=2),
        dict(clip=1.0, value_bits=53, max_clients=2),
        dict(clip=1.0, value_bits=8, max_clients=0),
        dict(clip=1.0, value_bits=16, max_clients=4, bits=17),  # would wrap
        dict(clip=1.0, value_bits=16, max_clients=4, bits=65),
    ],
)
def test_bad_specs(kw):
    with pytest.raises(ParameterError):
        QuantizationSpec(**kw)


def test_bad_quantize_inputs():
    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=2)
    for bad in (np.zeros((2, 2)), np.array([np.nan]), np.array([np.inf])):
        with pytest.raises(ParameterError):
            spec.quantize(bad)
    with pytest.raises(ParameterError):
        spec.dequantize_sum(np.zeros(2, np.uint32), 3)


@given(st.integers(1, 64), st.data())
def test_wrap_unwrap_signed_round_trip(bits, data):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    vals = data.draw(st.lists(st.integers(lo, hi), min_size=0, max_size=20))
    arr = np.array(vals, dtype=np.int64)
    w = modular.wrap_signed(arr, bits)
    assert w.dtype == modular.dtype_for_bits(bits)
    assert all(int(v) < (1 << bits) for v in w)
    assert [int(v) for v in w] == [v % (1 << bits) for v in vals]
    assert modular.unwrap_signed(w, bits).tolist() == vals


@given(st.integers(1, 64), st.data())
def test_signed_sums_survive_the_modular_sum(bits, data):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    a = data.draw(st.integers(-((-lo) // 2), hi // 2))
    b = data.draw(st.integers(-((-lo) // 2), hi // 2))
    acc = modular.wrap_signed(np.array([a]), bits)
    modular.add_into(acc, modular.wrap_signed(np.array([b]), bits), bits)
    assert modular.unwrap_signed(acc, bits).tolist() == [a + b]


def test_modular_errors():
    with pytest.raises(ParameterError):
        modular.wrap_signed(np.array([0.5]), 8)
    with pytest.raises(ParameterError):
        modular.unwrap_signed(np.array([256], dtype=np.uint32), 8)
    with pytest.raises(ParameterError):
        modular.unwrap_signed(np.array([-1]), 8)
    with pytest.raises(ParameterError):
        modular.check_in_range(np.array([1 << 20], dtype=np.uint32), 20)
    with pytest.raises(ParameterError):
        modular.check_in_range(np.array([1], dtype=np.uint64), 20)
    with pytest.raises(ParameterError):
        modular.add_into(np.zeros(3, np.uint32), np.zeros(4, np.uint32), 8)
    with pytest.raises(ParameterError):
        modular.bits_for_sum(40, 2**30)
    with pytest.raises(ParameterError):
        modular.dtype_for_bits(0)


@given(st.integers(1, 40), st.integers(1, 10**6))
def test_bits_for_sum_is_minimal(value_bits, n):
    b = modular.bits_for_sum(value_bits, n)
    top = n * ((1 << value_bits) - 1)
    assert top < (1 << b)
    assert b == 1 or top >= (1 << (b - 1))


def test_reduce_and_add_into_wrap():
    acc = np.array([250, 3], dtype=np.uint32)
    modular.add_into(acc, np.array([10, 4], dtype=np.uint32), 8)
    assert acc.tolist() == [4, 7]
    big = np.array([2**64 - 1], dtype=np.uint64)
    modular.add_into(big, np.array([2], dtype=np.uint64), 64)
    assert big.tolist() == [1]
