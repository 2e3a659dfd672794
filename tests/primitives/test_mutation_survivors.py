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


def test_defaults_are_the_documented_ones() -> None:
    import numpy as np

    from secagg.primitives import aead, kex

    seed = b"d" * 16
    # expand and add_mask start at element 0 and add (+1) unless told otherwise
    assert (prg.expand(seed, 8, 32)[3:] == prg.expand(seed, 5, 32, offset=3)).all()
    vec = np.zeros(5, dtype=np.uint32)
    prg.add_mask(vec, seed, 32)
    assert (vec == prg.expand(seed, 5, 32)).all()
    tail = np.zeros(5, dtype=np.uint32)
    prg.add_mask(tail, seed, 32, offset=3)
    assert (tail == prg.expand(seed, 8, 32)[3:]).all()
    # the AEAD context defaults to the empty string, on both sides
    bind = dict(session_id=b"sid", round_=1, sender=2, receiver=3)
    assert aead.associated_data(**bind) == aead.associated_data(**bind, context="")
    key = bytes(32)
    box = aead.seal(key, b"p", **bind, context="")
    assert aead.open_(key, box, **bind) == b"p"
    assert aead.open_(key, aead.seal(key, b"q", **bind), **bind, context="") == b"q"
    # a pairwise key has the length asked for
    a, b = KeyPair.generate(), KeyPair.generate()
    k16 = kex.derive_pairwise(
        a.private, b.public, purpose="p", session_id=b"", party_a=1, party_b=2, length=16
    )
    assert len(k16) == 16


def test_small_prime_fields_are_honoured() -> None:
    assert field.inverse(3, prime=7) == 5
    assert field.inverse(6, prime=7) == 6
    with pytest.raises(ParameterError):
        field.inverse(7, prime=7)  # not an element of GF(7), though one of GF(P)
    # reconstruct_many over GF(101): four 3-subsets of one 4-set (the derived path)
    # and one unrelated set (its own coefficients), every secret exact
    prime, t = 101, 3
    rng = InsecureDeterministicRandom(7, warn=False)
    xs = [1, 2, 3, 4, 9]
    secrets = [11, 22, 33, 44, 55]
    rows = [shamir.split(s, t, xs, rng, prime=prime) for s in secrets]
    subsets = [(1, 2, 3), (1, 2, 4), (1, 3, 4), (2, 3, 4), (2, 4, 9)]
    lists = [
        [(x, y) for x, y in zip(xs, row, strict=True) if x in sub]
        for row, sub in zip(rows, subsets, strict=True)
    ]
    assert shamir.reconstruct_many(lists, t, prime=prime) == secrets


def test_reference_split_draws_from_the_os_by_default() -> None:
    shares = shamir._split_reference([42], 2, [1, 2, 3])[0]
    assert shamir.reconstruct(list(zip([1, 2, 3], shares, strict=True)), 2) == 42
    assert shamir._split_reference([42], 2, [1, 2, 3])[0] != shares


def test_kdf_integer_fields_and_defaults() -> None:
    import enum

    from secagg.primitives import kdf

    class Round(enum.IntEnum):  # an int subclass takes the general path
        FIRST = 0
        LATE = 200

    assert kdf.encode_info("p", b"", (Round.FIRST, Round.LATE)) == kdf.encode_info(
        "p", b"", (0, 200)
    )
    assert kdf.encode_info("p") == kdf.encode_info("p", b"", ())
    assert len(kdf.derive(b"k" * 16, purpose="p")) == 32
