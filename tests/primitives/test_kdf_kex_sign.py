"""KDF domain separation, X25519 pairwise keys, Ed25519 and InsecureDeterministicRandom."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import CryptoError, ParameterError
from secagg.primitives import kdf, kex, rand, sign

FIELD = st.one_of(
    st.integers(0, 2**64 - 1), st.text(max_size=8), st.binary(max_size=8)
)
LABEL = st.tuples(
    st.text(min_size=1, max_size=8), st.binary(max_size=8), st.lists(FIELD, max_size=4)
)


def _norm(label):
    purpose, sid, fields = label
    # the encoding distinguishes types only through bytes: int fields are u64_be,
    # str fields UTF-8; compare the byte content, which is what must be injective
    return purpose, sid, tuple(
        f.to_bytes(8, "big") if isinstance(f, int) else f.encode() if isinstance(f, str) else f
        for f in fields
    )


@given(LABEL, LABEL)
def test_kdf_outputs_differ_when_any_label_field_differs(a, b):
    ikm = b"i" * 32
    oa = kdf.derive(ikm, purpose=a[0], session_id=a[1], fields=a[2])
    ob = kdf.derive(ikm, purpose=b[0], session_id=b[1], fields=b[2])
    if _norm(a) == _norm(b):
        assert oa == ob
    else:
        assert kdf.encode_info(*a) != kdf.encode_info(*b)
        assert oa != ob


@pytest.mark.parametrize(
    "changed",
    [
        dict(purpose="pairwise-mask-seed2"),
        dict(session_id=b"sid2"),
        dict(fields=(1, 3)),
        dict(fields=(1, 2, 0)),
        dict(fields=(2, 1)),
        dict(fields=("1", 2)),
    ],
)
def test_each_label_component_separates(changed):
    base = dict(purpose="pairwise-mask-seed", session_id=b"sid", fields=(1, 2))
    assert kdf.derive(b"k" * 16, **base) != kdf.derive(b"k" * 16, **{**base, **changed})


def test_prefix_ambiguity_is_impossible():
    # without length prefixes these two would concatenate to the same bytes
    assert kdf.encode_info("ab", b"c") != kdf.encode_info("a", b"bc")
    assert kdf.encode_info("p", b"", ("ab", "c")) != kdf.encode_info("p", b"", ("a", "bc"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: kdf.derive(b"k" * 15, purpose="p"),
        lambda: kdf.derive(b"k" * 16, purpose=""),
        lambda: kdf.derive(b"k" * 16, purpose="p", length=15),
        lambda: kdf.derive(b"k" * 16, purpose="p", length=8161),
        lambda: kdf.derive(b"k" * 16, purpose="p", fields=(-1,)),
        lambda: kdf.derive(b"k" * 16, purpose="p", fields=(2**64,)),
        lambda: kdf.derive(b"k" * 16, purpose="p", fields=(True,)),
        lambda: kdf.derive(b"k" * 16, purpose="p", fields=(1.5,)),
        lambda: kex.KeyPair.from_private_bytes(b"x" * 31),
        lambda: kex.check_public_key(b"x" * 33),
        lambda: kex.derive_pairwise(b"x" * 32, b"y" * 32, purpose="p", session_id=b"",
                                    party_a=3, party_b=3),
        lambda: sign.SigningKey.from_private_bytes(b"x" * 31),
        lambda: rand.InsecureDeterministicRandom(b"x" * 15),
        lambda: rand.InsecureDeterministicRandom(-1),
        lambda: rand.InsecureDeterministicRandom(2**256),
        lambda: rand.randbelow(rand.SystemRandom(), 0),
        lambda: rand.SystemRandom().random_bytes(-1),
    ],
)
def test_typed_errors(call):
    with pytest.raises(ParameterError):
        call()


def test_pairwise_is_symmetric_and_bound_to_ids_and_session():
    r = rand.InsecureDeterministicRandom(5, warn=False)
    u, v, w = (kex.KeyPair.generate(r) for _ in range(3))
    kw = dict(purpose="pairwise-mask-seed", session_id=b"s1")
    kuv = kex.derive_pairwise(u.private, v.public, party_a=1, party_b=2, **kw)
    assert kuv == kex.derive_pairwise(v.private, u.public, party_a=2, party_b=1, **kw)
    assert kuv != kex.derive_pairwise(u.private, v.public, party_a=1, party_b=3, **kw)
    assert kuv != kex.derive_pairwise(u.private, w.public, party_a=1, party_b=2, **kw)
    assert kuv != kex.derive_pairwise(u.private, v.public, party_a=1, party_b=2,
                                      purpose="pairwise-mask-seed", session_id=b"s2")
    assert "private" not in repr(u) and u.private_bytes().hex() not in repr(u)


def test_signature_verification_raises_opaquely():
    r = rand.InsecureDeterministicRandom(6, warn=False)
    k = sign.SigningKey.generate(r)
    other = sign.SigningKey.generate(r)
    sig = k.sign(b"m")
    sign.verify(k.public, sig, b"m")
    bad = [
        (other.public, sig, b"m"),
        (k.public, sig, b"n"),
        (k.public, bytes([sig[0] ^ 1]) + sig[1:], b"m"),
        (k.public, sig[:-1], b"m"),
        (k.public[:-1], sig, b"m"),
    ]
    for args in bad:
        with pytest.raises(CryptoError) as ei:
            sign.verify(*args)
        assert str(ei.value) == "cryptographic verification failed"


def test_deterministic_random_is_reproducible_and_separated():
    a = rand.InsecureDeterministicRandom(1, warn=False)
    b = rand.InsecureDeterministicRandom(1, warn=False)
    assert a.random_bytes(10) + a.random_bytes(6) == b.random_bytes(16)
    assert a.child("x").random_bytes(16) != a.child("y").random_bytes(16)
    assert rand.InsecureDeterministicRandom(1, "l1", warn=False).random_bytes(16) != (
        rand.InsecureDeterministicRandom(1, "l2", warn=False).random_bytes(16)
    )
    from secagg.errors import InsecureConfigurationWarning

    with pytest.warns(InsecureConfigurationWarning):
        rand.InsecureDeterministicRandom(1)
