"""The envelope codec: round trip, and hostile bytes always give a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import CryptoError, DecodeError, ParameterError, SecAggError
from secagg.he import Envelope, EnvelopeKind, Scheme, decode_envelope, encode_envelope
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey

KEY = SigningKey.generate(InsecureDeterministicRandom(7, warn=False))
OTHER = SigningKey.generate(InsecureDeterministicRandom(8, warn=False))


def make(**kw):
    base = dict(
        kind=EnvelopeKind.CLIENT_CHUNK, scheme=Scheme.CKKS, param_set_id=b"p" * 16,
        key_id=b"k" * 16, session_id=b"s" * 16, round=3, sender=5, vector_length=5000,
        chunk_index=1, chunk_count=2, contributors=(5,), payload=b"ciphertext bytes",
    )
    base.update(kw)
    return Envelope(**base)


VALID = encode_envelope(make(), KEY)


def test_round_trip_and_signature():
    env = decode_envelope(VALID)
    assert (env.kind, env.sender, env.chunk_index, env.contributors, env.payload) == (
        EnvelopeKind.CLIENT_CHUNK, 5, 1, (5,), b"ciphertext bytes")
    env.verify(KEY.public)
    with pytest.raises(CryptoError):
        env.verify(OTHER.public)
    agg = encode_envelope(make(kind=EnvelopeKind.AGGREGATE_CHUNK, sender=0,
                               contributors=(1, 5, 9)), KEY)
    assert decode_envelope(agg).contributors == (1, 5, 9)


@pytest.mark.parametrize("bad", [
    dict(contributors=(5, 6)),                      # client chunk lists others
    dict(sender=0),                                 # client chunk from the server
    dict(chunk_index=2),                            # index >= count
    dict(chunk_count=0),
    dict(payload=b""),
    dict(param_set_id=b"short"),
    dict(kind=EnvelopeKind.AGGREGATE_CHUNK),        # aggregate from a client id
    dict(kind=EnvelopeKind.AGGREGATE_CHUNK, sender=0, contributors=(3, 3)),
    dict(kind=EnvelopeKind.AGGREGATE_CHUNK, sender=0, contributors=(0,)),
    dict(round=-1),
])
def test_constructor_rejects(bad):
    with pytest.raises(ParameterError):
        make(**bad)


def test_every_truncation_is_a_decode_error():
    for cut in range(len(VALID)):
        with pytest.raises(DecodeError):
            decode_envelope(VALID[:cut])
    with pytest.raises(DecodeError):
        decode_envelope(VALID + b"\x00")


@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_decode_error(data):
    with pytest.raises(DecodeError):
        decode_envelope(data)


@given(st.binary(max_size=300).map(lambda b: b"SHE1\x01" + b))
def test_arbitrary_bytes_after_valid_magic_give_decode_error(data):
    with pytest.raises(DecodeError):
        decode_envelope(data)


@given(st.data())
def test_mutated_envelope_never_verifies(data):
    buf = bytearray(VALID)
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    if bytes(buf) == VALID:  # the flips cancelled out
        return
    try:
        env = decode_envelope(bytes(buf))
    except DecodeError:
        return
    with pytest.raises(CryptoError):
        env.verify(KEY.public)


@given(st.data())
def test_inserted_or_deleted_bytes_give_typed_errors(data):
    buf = bytearray(VALID)
    i = data.draw(st.integers(0, len(buf) - 1))
    if data.draw(st.booleans()):
        buf[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        del buf[i:i + data.draw(st.integers(1, 8))]
    with pytest.raises(SecAggError):
        decode_envelope(bytes(buf)).verify(KEY.public)


def test_hostile_contributor_count_does_not_allocate():
    body = bytearray(VALID)
    # contributor count sits after magic(4)+ver/kind/scheme(3)+3 ids(48)+6 u32 (24) = 79
    body[79:83] = (2**32 - 1).to_bytes(4, "big")
    with pytest.raises(DecodeError):
        decode_envelope(bytes(body))
