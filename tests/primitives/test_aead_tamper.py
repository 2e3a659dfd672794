"""AEAD: any change of key, nonce, ciphertext, tag or binding gives one opaque CryptoError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import CryptoError, ParameterError
from secagg.primitives import aead
from secagg.primitives.rand import InsecureDeterministicRandom

KEY = bytes(range(32))
BIND = dict(session_id=b"session-1", round_=2, sender=5, receiver=9, context="share-keys")


def _box(pt: bytes = b"a secret share") -> bytes:
    return aead.seal(KEY, pt, rng=InsecureDeterministicRandom(1, warn=False), **BIND)


def _rejects(key: bytes, box: bytes, **bind: object) -> None:
    with pytest.raises(CryptoError) as ei:
        aead.open_(key, box, **bind)
    assert str(ei.value) == "cryptographic verification failed"


def test_round_trip():
    assert aead.open_(KEY, _box(), **BIND) == b"a secret share"
    assert len(_box()) == len(b"a secret share") + aead.OVERHEAD


@given(st.binary(max_size=64), st.data())
def test_any_flipped_bit_is_rejected(pt, data):
    box = _box(pt)
    i = data.draw(st.integers(0, len(box) - 1))  # nonce, ciphertext or tag
    bit = data.draw(st.integers(0, 7))
    bad = box[:i] + bytes([box[i] ^ (1 << bit)]) + box[i + 1 :]
    _rejects(KEY, bad, **BIND)


@pytest.mark.parametrize(
    "field,value",
    [
        ("session_id", b"session-2"),
        ("session_id", b"session-1\x00"),
        ("round_", 3),
        ("sender", 9),
        ("receiver", 5),
        ("context", "unmasking"),
    ],
)
def test_any_change_of_binding_is_rejected(field, value):
    _rejects(KEY, _box(), **{**BIND, field: value})


def test_wrong_key_truncation_and_extension_are_rejected():
    box = _box()
    _rejects(bytes(32), box, **BIND)
    _rejects(KEY, box[:-1], **BIND)
    _rejects(KEY, box + b"\x00", **BIND)
    _rejects(KEY, box[: aead.OVERHEAD - 1], **BIND)
    _rejects(KEY, b"", **BIND)
    # swapping in another box's nonce
    other = aead.seal(KEY, b"a secret share", rng=InsecureDeterministicRandom(2, warn=False),
                      **BIND)
    _rejects(KEY, other[: aead.NONCE_BYTES] + box[aead.NONCE_BYTES :], **BIND)


def test_bad_key_length_is_api_misuse():
    with pytest.raises(ParameterError):
        aead.seal(b"k" * 16, b"x", **BIND)
    with pytest.raises(ParameterError):
        aead.open_(b"k" * 16, _box(), **BIND)


def test_fresh_nonces_by_default():
    a = aead.seal(KEY, b"x", **BIND)
    b = aead.seal(KEY, b"x", **BIND)
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES]
