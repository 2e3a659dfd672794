"""Overflow property: inputs within the declared range, from any number of clients
up to the configured maximum, never wrap.

* masking (``QuantizationSpec`` + ``secure_sum_floats``): the largest possible
  modular sum ``max_clients·(2^value_bits − 1)`` is below ``2^bits``, so the
  dequantized secure sum is within ``count·step`` of the true float sum — for every
  spec (arithmetic, exact integers) and end to end through real rounds, with
  dropouts;
* HE BFV: ``max_clients·(2^value_bits − 1) < t/2`` (the non-negative half BFV
  decodes), so the decrypted sum is the exact integer sum — end to end at the
  tightest ``value_bits`` the rule admits, and at the preset's full 1000 clients
  (slow).  One bit more, or one client more, is refused before anything runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import ParameterError
from secagg.he import HEParams, Preset, Scheme, generate_keys
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime import he_sum
from secagg.sim import Phase, ProtocolKind, secure_sum_floats


@st.composite
def specs(draw: st.DrawFn) -> QuantizationSpec:
    value_bits = draw(st.integers(1, 52))
    max_clients = draw(st.integers(1, max(1, min(2**40, (2**64 - 1) // (2**value_bits - 1)))))
    clip = draw(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))
    return QuantizationSpec(clip=clip, value_bits=value_bits, max_clients=max_clients)


@given(specs(), st.integers(0, 2**64))
def test_worst_case_quantized_sum_fits_the_modulus(spec: QuantizationSpec, salt: int) -> None:
    top_level = (1 << spec.value_bits) - 1
    x = np.array([spec.clip, -spec.clip, spec.clip * 1e9, spec.clip * 0.5])
    q = spec.quantize(x, InsecureDeterministicRandom(salt % 2**256, warn=False))
    assert int(q.max()) <= top_level and int(q[0]) == top_level and int(q[1]) == 0
    # every level is <= top_level, so max_clients of them sum below 2^bits: no wrap
    assert spec.max_clients * top_level < 2**spec.bits <= 2**64
    total = np.array([spec.max_clients * top_level], dtype=q.dtype)
    assert int(total[0]) == spec.max_clients * top_level
    np.testing.assert_allclose(
        spec.dequantize_sum(total, spec.max_clients),
        [spec.max_clients * spec.clip],
        rtol=1e-9,
    )


@given(st.integers(1, 52), st.integers(1, 2**30))
def test_a_spec_that_could_wrap_is_refused(value_bits: int, max_clients: int) -> None:
    need = (max_clients * ((1 << value_bits) - 1)).bit_length()
    if need > 64:
        with pytest.raises(ParameterError):
            QuantizationSpec(clip=1.0, value_bits=value_bits, max_clients=max_clients)
        return
    spec = QuantizationSpec(clip=1.0, value_bits=value_bits, max_clients=max_clients)
    assert spec.bits == need
    if need > 1:  # bits=0 means "pick the minimum"
        with pytest.raises(ParameterError):
            QuantizationSpec(
                clip=1.0, value_bits=value_bits, max_clients=max_clients, bits=need - 1
            )


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(3, 8),
    value_bits=st.integers(1, 24),
    extreme=st.sampled_from(["max", "min", "mixed", "random"]),
    dropped=st.integers(0, 2),
    protocol=st.sampled_from(list(ProtocolKind)),
    seed=st.integers(0, 2**32),
)
def test_secure_sum_floats_never_wraps_up_to_max_clients(
    n: int, value_bits: int, extreme: str, dropped: int, protocol: ProtocolKind, seed: int
) -> None:
    spec = QuantizationSpec(clip=0.75, value_bits=value_bits, max_clients=n)
    rng = InsecureDeterministicRandom(seed, warn=False)
    length = 5
    if extreme == "max":
        xs = {u: np.full(length, 0.75) for u in range(1, n + 1)}
    elif extreme == "min":
        xs = {u: np.full(length, -0.75) for u in range(1, n + 1)}
    elif extreme == "mixed":
        xs = {u: np.full(length, 0.75 if u % 2 else -0.75) for u in range(1, n + 1)}
    else:
        xs = {
            u: (np.frombuffer(rng.child(str(u)).random_bytes(8 * length), np.uint64) / 2.0**64)
            * 1.5
            - 0.75
            for u in range(1, n + 1)
        }
    drops = {Phase.MASKED_INPUT: list(range(1, dropped + 1))} if dropped else None
    res = secure_sum_floats(xs, spec=spec, rng=rng, protocol=protocol, dropouts=drops)
    t = int(res.result.stats["threshold"])  # type: ignore[call-overload]
    assert res.result.aborted == (n - dropped < t + 1)
    if res.result.aborted:
        assert res.sum is None
        return
    assert res.count == n - dropped
    want = sum(xs[u] for u in res.result.survivors)
    # each coordinate: one rounding error < step per contributor, never a wrap
    assert np.all(np.abs(res.sum - want) <= res.count * spec.step + 1e-9)


def test_more_clients_than_max_clients_are_refused() -> None:
    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=3)
    with pytest.raises(ParameterError):
        secure_sum_floats({u: np.zeros(2) for u in range(1, 5)}, spec=spec)


@pytest.fixture
def tenseal() -> object:
    """TenSEAL — skips only the tests that encrypt (the parameter rules need none)."""
    return pytest.importorskip("tenseal")


def _tightest_bfv(max_clients: int) -> HEParams:
    base = Preset.BFV_4096.params
    t = base.plain_modulus
    vb = max(v for v in range(1, 59) if max_clients * ((1 << v) - 1) < t // 2)
    return HEParams(
        scheme=Scheme.BFV,
        poly_modulus_degree=base.poly_modulus_degree,
        coeff_mod_bit_sizes=base.coeff_mod_bit_sizes,
        plain_modulus=t,
        max_clients=max_clients,
        clip=1.0,
        value_bits=vb,
    )


@pytest.mark.parametrize("max_clients", [2, 5])
def test_bfv_one_bit_above_the_tightest_width_is_refused(max_clients: int) -> None:
    params = _tightest_bfv(max_clients)
    with pytest.raises(ParameterError):  # one bit more would reach t/2
        HEParams(
            scheme=Scheme.BFV,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=params.coeff_mod_bit_sizes,
            plain_modulus=params.plain_modulus,
            max_clients=max_clients,
            value_bits=params.value_bits + 1,
        )


@pytest.mark.usefixtures("tenseal")
@pytest.mark.parametrize("max_clients", [2, 5])
def test_bfv_sum_at_the_tightest_admitted_width_is_exact(max_clients: int) -> None:
    params = _tightest_bfv(max_clients)
    top = (1 << params.value_bits) - 1
    keys = generate_keys(params)
    inputs = {
        u: np.array([top, top, 0, top - 1], dtype=np.int64) for u in range(1, max_clients + 1)
    }
    res = he_sum(
        inputs,
        scheme=Scheme.BFV,
        preset=params,
        keys=keys,
        rng=InsecureDeterministicRandom(1, warn=False),
    )
    assert not res.aborted and res.total is not None
    assert res.total.tolist() == [max_clients * top, max_clients * top, 0, max_clients * (top - 1)]
    with pytest.raises(ParameterError):  # one client more than the set admits
        he_sum({**inputs, max_clients + 1: inputs[1]}, scheme=Scheme.BFV, preset=params, keys=keys)


@pytest.mark.slow
@pytest.mark.usefixtures("tenseal")
def test_bfv_preset_sum_of_1000_top_values_is_exact() -> None:
    params = Preset.BFV_4096.params
    top = (1 << params.value_bits) - 1
    inputs = {u: np.full(16, top, dtype=np.int64) for u in range(1, params.max_clients + 1)}
    res = he_sum(inputs, scheme=Scheme.BFV, rng=InsecureDeterministicRandom(2, warn=False))
    assert res.total is not None
    assert np.all(res.total == params.max_clients * top)
    assert params.max_clients * top < params.plain_modulus // 2
