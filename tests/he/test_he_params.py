"""Parameter checks: SEAL's 128-bit limits, overflow and noise refusals, presets."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding.modular import bits_for_sum
from secagg.errors import ParameterError
from secagg.he import SEAL_MAX_COEFF_BITS, HEParams, Preset, Scheme, coeff_modulus_primes
from secagg.he.params import _is_prime, laplace_tail, resolve_params

T33 = 8589852673  # 33-bit prime = 1 mod 8192


def ckks(**kw):
    base = dict(scheme=Scheme.CKKS, poly_modulus_degree=4096, coeff_mod_bit_sizes=(42, 20),
                scale_bits=31, max_clients=1000, clip=1.0)
    base.update(kw)
    return HEParams(**base)


def bfv(**kw):
    base = dict(scheme=Scheme.BFV, poly_modulus_degree=4096, coeff_mod_bit_sizes=(48, 20),
                plain_modulus=T33, max_clients=1000, value_bits=22)
    base.update(kw)
    return HEParams(**base)


def test_presets_are_within_seal_limits_and_distinct():
    ids = set()
    for p in Preset:
        params = p.params
        assert sum(params.coeff_mod_bit_sizes) <= SEAL_MAX_COEFF_BITS[params.poly_modulus_degree]
        ids.add(params.param_set_id)
    assert len(ids) == len(Preset)
    flare = Preset.CKKS_8192_FLARE.params
    assert (flare.poly_modulus_degree, flare.coeff_mod_bit_sizes, flare.scale_bits) == (
        8192, (60, 40, 40), 40)


@pytest.mark.parametrize("n,limit", sorted(SEAL_MAX_COEFF_BITS.items()))
def test_security_limit_is_enforced_per_degree(n, limit):
    # split `limit` and `limit + 1` bits into primes of <= 60 bits, >= 17 bits
    def split(total):
        k = max(2, math.ceil(total / 60))
        q, r = divmod(total, k)
        return tuple([q + 1] * r + [q] * (k - r))

    if limit >= 2 * 17:
        bits = split(limit)
        try:
            HEParams(scheme=Scheme.CKKS, poly_modulus_degree=n, coeff_mod_bit_sizes=bits,
                     scale_bits=20, max_clients=1, clip=1.0)
        except ParameterError as exc:  # only a non-security reason may refuse it
            assert "insecure" not in str(exc)
    with pytest.raises(ParameterError, match="insecure"):
        HEParams(scheme=Scheme.CKKS, poly_modulus_degree=n,
                 coeff_mod_bit_sizes=split(limit + 1) if limit + 1 >= 34 else (17, 17),
                 scale_bits=20, max_clients=1, clip=1.0)


def test_ckks_scale_overflow_refused_with_reason():
    with pytest.raises(ParameterError, match="overflow"):
        ckks(scale_bits=32)  # 1000 * 2^32 > q/2 ~ 2^41
    with pytest.raises(ParameterError, match="overflow"):
        ckks(clip=2.0)
    ckks(max_clients=1023)  # 1023 * 2^31 still < q/2
    with pytest.raises(ParameterError, match="overflow"):
        ckks(max_clients=1024)


@pytest.mark.parametrize("clip", [1e300, 1.7976931348623157e308])
def test_ckks_huge_clip_is_an_overflow_not_a_crash(clip):
    # clip * max_clients * 2^scale is inf as a float: it was an OverflowError from
    # math.ceil (found by the long decoder fuzz on a decoded parameter set)
    with pytest.raises(ParameterError, match="overflow"):
        ckks(clip=clip)


def test_bfv_overflow_rule_matches_bits_for_sum():
    # 1000 * (2^22 - 1) needs 32 bits and stays below t/2 for a 33-bit t
    assert bits_for_sum(22, 1000) == 32
    bfv()
    with pytest.raises(ParameterError, match="overflow"):
        bfv(value_bits=23)
    top = 1000 * ((1 << 22) - 1)
    assert top < T33 // 2
    with pytest.raises(ParameterError, match="overflow"):
        bfv(max_clients=(T33 // 2) // ((1 << 22) - 1) + 1)


def test_bfv_noise_rule_rejects_thin_headroom():
    # [45, 20] leaves 12 bits above a 33-bit t; 1000 summands need ~14 (measured 0 headroom)
    with pytest.raises(ParameterError, match="noise"):
        bfv(coeff_mod_bit_sizes=(45, 20))
    bfv(coeff_mod_bit_sizes=(45, 20), max_clients=16)


@pytest.mark.parametrize("t", [T33 + 2, 8589844481 + 8192 * 3, 2**33 + 1])
def test_bfv_plain_modulus_must_be_batching_prime(t):
    with pytest.raises(ParameterError):
        bfv(plain_modulus=t)


@pytest.mark.parametrize("bad", [
    dict(poly_modulus_degree=3000),
    dict(coeff_mod_bit_sizes=(42,)),
    dict(coeff_mod_bit_sizes=(61, 20)),
    dict(scale_bits=0),
    dict(plain_modulus=T33),
    dict(clip=float("nan")),
    dict(max_clients=0),
    dict(poly_modulus_degree=True),
])
def test_ckks_rejects_malformed(bad):
    with pytest.raises(ParameterError):
        ckks(**bad)


def test_replace_revalidates():
    with pytest.raises(ParameterError):
        dataclasses.replace(Preset.BFV_4096.params, value_bits=40)


def test_primes_match_seal_rule():
    primes = coeff_modulus_primes(8192, (60, 40, 40))
    assert primes[1] < primes[2]  # SEAL hands out equal sizes smallest first
    for p, b in zip(primes, (60, 40, 40), strict=True):
        assert p.bit_length() == b and p % (2 * 8192) == 1 and _is_prime(p)
        # no larger prime of that size = 1 mod 2N was skipped (except the one used twice)
    assert not any(_is_prime(c) for c in range(primes[0] + 2 * 8192, 1 << 60, 2 * 8192))
    assert _is_prime(T33) and not _is_prime(T33 + 8192)


@given(st.integers(3, 10**6))
def test_is_prime_matches_trial_division(n):
    def slow(k):
        return k >= 2 and all(k % d for d in range(2, math.isqrt(k) + 1))

    assert _is_prime(n) == slow(n)


def test_error_bound_is_laplace_tail_and_grows_like_sqrt_n():
    p = Preset.CKKS_4096.params
    sigma1 = 0.17 * 4096 / 2.0**31
    t = laplace_tail(2.0**-40)
    assert math.isclose(math.exp(-math.sqrt(2) * t), 2.0**-40)
    for n in (1, 10, 1000):
        assert math.isclose(p.ckks_error_bound(n), t * math.sqrt(n) * sigma1)
    assert 1.9e-4 < p.ckks_error_bound(1000) < 2.1e-4
    with pytest.raises(ParameterError):
        Preset.BFV_4096.params.ckks_error_bound(1)
    with pytest.raises(ParameterError):
        p.ckks_error_bound(1001)


def test_resolve_params():
    assert resolve_params(Scheme.CKKS, None) is Preset.CKKS_4096.params
    assert resolve_params(Scheme.BFV, None) is Preset.BFV_4096.params
    with pytest.raises(ParameterError):
        resolve_params(Scheme.BFV, Preset.CKKS_4096)
    with pytest.raises(ParameterError):
        resolve_params(Scheme.BFV, "bfv-4096")  # type: ignore[arg-type]
