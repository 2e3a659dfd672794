"""Shamir sharing: properties (hypothesis) and typed errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.primitives import field, shamir
from secagg.primitives.rand import InsecureDeterministicRandom

SMALL_PRIMES = (5, 7, 11, 13)


@st.composite
def sharing(draw):
    n = draw(st.integers(1, 8))
    t = draw(st.integers(1, n))
    xs = draw(st.lists(st.integers(1, 2**40), min_size=n, max_size=n, unique=True))
    secret = draw(st.integers(0, field.P - 1))
    seed = draw(st.integers(0, 2**64))
    return t, xs, secret, seed


@given(sharing(), st.data())
def test_any_t_of_n_reconstruct(case, data):
    t, xs, secret, seed = case
    shares = shamir.split(secret, t, xs, InsecureDeterministicRandom(seed, warn=False))
    idx = data.draw(st.permutations(range(len(xs))))
    k = data.draw(st.integers(t, len(xs)))
    pts = [(xs[i], shares[i]) for i in idx[:k]]
    assert shamir.reconstruct(pts, t) == secret


@given(sharing())
def test_split_many_rows_reconstruct_each_secret(case):
    t, xs, secret, seed = case
    secrets = [secret, (secret + 1) % field.P, 0]
    rows = shamir.split_many(secrets, t, xs, InsecureDeterministicRandom(seed, warn=False))
    for s, row in zip(secrets, rows):
        assert shamir.reconstruct(list(zip(xs, row))[-t:], t) == s


@given(
    st.sampled_from(SMALL_PRIMES),
    st.integers(2, 3),
    st.data(),
)
def test_t_minus_1_shares_are_consistent_with_every_secret(prime, t, data):
    """Perfect secrecy by enumeration over a small field.

    For every secret, the t-1 shares (over all uniformly random coefficient
    choices) are uniformly distributed: each tuple of t-1 share values occurs for
    exactly one coefficient vector.  So the shares say nothing about the secret.
    """
    xs = data.draw(st.lists(st.integers(1, prime - 1), min_size=t - 1, max_size=t - 1,
                            unique=True))
    for secret in range(prime):
        seen: dict[tuple[int, ...], int] = {}
        for rest in itertools.product(range(prime), repeat=t - 1):
            coeffs = [secret, *rest]
            key = tuple(shamir.evaluate_polynomial(coeffs, x, prime=prime) for x in xs)
            seen[key] = seen.get(key, 0) + 1
        # every possible tuple of t-1 shares is reachable, each exactly once
        assert len(seen) == prime ** (t - 1)
        assert set(seen.values()) == {1}


@given(st.sampled_from(SMALL_PRIMES), st.integers(1, 4), st.integers(0, 2**32))
def test_small_field_split_reconstruct(prime, t, seed):
    n = prime - 1
    t = min(t, n)
    xs = list(range(1, n + 1))
    for secret in range(prime):
        sh = shamir.split(secret, t, xs, InsecureDeterministicRandom(seed, warn=False),
                          prime=prime)
        assert all(0 <= y < prime for y in sh)
        assert shamir.reconstruct(list(zip(xs, sh))[:t], t, prime=prime) == secret


def test_split_is_driven_by_the_rng_only():
    a = shamir.split(5, 3, [1, 2, 3], InsecureDeterministicRandom(1, warn=False))
    b = shamir.split(5, 3, [1, 2, 3], InsecureDeterministicRandom(1, warn=False))
    c = shamir.split(5, 3, [1, 2, 3], InsecureDeterministicRandom(2, warn=False))
    assert a == b and a != c


def test_evaluate_polynomial_matches_split_draws():
    """split() is evaluate_polynomial with coefficients drawn highest-first."""
    from secagg.primitives.rand import randbelow

    rng = InsecureDeterministicRandom(9, warn=False)
    high_first = [randbelow(rng, field.P) for _ in range(2)]
    coeffs = [42, *reversed(high_first)]
    want = [shamir.evaluate_polynomial(coeffs, x) for x in (1, 2, 3)]
    assert shamir.split(42, 3, [1, 2, 3], InsecureDeterministicRandom(9, warn=False)) == want


def test_extra_inconsistent_share_is_rejected():
    sh = shamir.split(7, 2, [1, 2, 3], InsecureDeterministicRandom(3, warn=False))
    pts = list(zip([1, 2, 3], sh))
    assert shamir.reconstruct(pts, 2) == 7
    pts[2] = (3, (sh[2] + 1) % field.P)
    with pytest.raises(ParameterError):
        shamir.reconstruct(pts, 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda: shamir.split(1, 2, [1, 1, 2]),  # duplicate x
        lambda: shamir.reconstruct([(1, 5), (1, 6)], 2),  # duplicate x
        lambda: shamir.split(1, 2, [0, 1]),  # x = 0
        lambda: shamir.reconstruct([(1, 5)], 2),  # too few shares
        lambda: shamir.reconstruct([], 1),
        lambda: shamir.split(1, 4, [1, 2, 3]),  # t > n
        lambda: shamir.split(1, 0, [1, 2, 3]),  # t < 1
        lambda: shamir.split(field.P, 2, [1, 2]),  # secret out of field
        lambda: shamir.split(-1, 2, [1, 2]),
        lambda: shamir.split(1, 2, [1, field.P]),  # x out of field
        lambda: shamir.reconstruct([(1, field.P), (2, 0)], 2),  # share out of field
        lambda: shamir.split(5, 2, [1, 2], prime=5),  # secret >= small prime
        lambda: shamir.split(1, 2, [1, 2], prime=1),  # bad modulus
        lambda: shamir.reconstruct([(1, 1), (2, 2)], True),
        lambda: shamir.evaluate_polynomial([], 1),
        lambda: shamir.evaluate_polynomial([field.P], 1),
        lambda: field.inverse(0),
        lambda: field.check_element(True),
        lambda: field.encode_element(field.P),
        lambda: field.secret_to_element(b"\x00" * 31),
        lambda: field.element_to_secret(2**256),
    ],
)
def test_typed_errors(call):
    with pytest.raises(ParameterError):
        call()


def test_decode_element_rejects_hostile_bytes():
    from secagg.errors import DecodeError

    with pytest.raises(DecodeError):
        field.decode_element(b"\x00" * 32)
    with pytest.raises(DecodeError):
        field.decode_element(field.P.to_bytes(33, "big"))
    assert field.decode_element((field.P - 1).to_bytes(33, "big")) == field.P - 1


def test_existing_api_still_works_positionally():
    sh = shamir.split_many([3, 4], 2, [5, 6], None)
    assert shamir.reconstruct([(5, sh[1][0]), (6, sh[1][1])], 2) == 4
    assert len(shamir.lagrange_at_zero((1, 2, 3))) == 3
    assert field.inverse(2) * 2 % field.P == 1
