"""Tests written for mutants that survived ``mutmut`` over secagg/primitives (README
"Testing"): exact boundaries of argument checks, ``bool`` refused where an ``int``
is expected, and key generation drawing from the injected randomness source."""

from __future__ import annotations

import pytest

from secagg.errors import ParameterError
from secagg.primitives import field, prg, shamir
from secagg.primitives.kex import KeyPair
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey


def test_rng_seed_boundary_is_16_bytes() -> None:
    InsecureDeterministicRandom(b"\x01" * 16, warn=False)  # the minimum is accepted
    with pytest.raises(ParameterError):
        InsecureDeterministicRandom(b"\x01" * 15, warn=False)
    with pytest.raises(ParameterError):
        InsecureDeterministicRandom("a string seed of many bytes", warn=False)  # type: ignore[arg-type]


def test_field_modulus_boundary_and_type() -> None:
    assert field.check_prime(2) == 2
    for bad in (1, 0, -7, True, 2.0, "5"):
        with pytest.raises(ParameterError):
            field.check_prime(bad)  # type: ignore[arg-type]
    for bad in (True, False, 1.0, -1, field.P):
        with pytest.raises(ParameterError):
            field.check_element(bad)  # type: ignore[arg-type]


def test_key_generation_uses_the_injected_source() -> None:
    def rng() -> InsecureDeterministicRandom:
        return InsecureDeterministicRandom(b"k" * 32, warn=False)

    assert KeyPair.generate(rng()).public == KeyPair.generate(rng()).public
    assert SigningKey.generate(rng()).public == SigningKey.generate(rng()).public
    # and without one, the OS source: two keys differ
    assert KeyPair.generate().public != KeyPair.generate().public
    assert SigningKey.generate().public != SigningKey.generate().public


def test_bool_is_not_an_integer_argument() -> None:
    seed = b"s" * 16
    for kw in ({"offset": True}, {"offset": -1}, {"offset": 1.0}):
        with pytest.raises(ParameterError):
            prg.expand(seed, 4, 16, **kw)  # type: ignore[arg-type]
    for length in (True, -1, 2.0):
        with pytest.raises(ParameterError):
            prg.expand(seed, length, 16)  # type: ignore[arg-type]
    rng = InsecureDeterministicRandom(1, warn=False)
    for t in (True, 0, 4, 1.0):
        with pytest.raises(ParameterError):
            shamir.split(5, t, [1, 2, 3], rng=rng)  # type: ignore[arg-type]
