"""Server and key holder: every hostile envelope gives a typed error and leaves the
state unchanged; the key holder only ever accepts aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import (
    AbortedError,
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.he import (
    ContextKind,
    Envelope,
    EnvelopeKind,
    HEClient,
    HEContext,
    HEDecryptor,
    HEServer,
    Phase,
    Preset,
    decode_envelope,
    encode_envelope,
    generate_keys,
)

from ._he_fixtures import make_round

pytest.importorskip("tenseal")

def _wire(envelopes):
    """The wire bytes of the envelopes a party returned (bytes in, messages out)."""
    return [e.to_bytes() for e in envelopes]


M = 5000  # 3 CKKS ciphertexts (2048 slots), 2 BFV ciphertexts


def _x(seed, m=M):
    return np.random.default_rng(seed).uniform(-1, 1, m)


def _decrypt(keys, rnd):
    dec = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
    for a in _wire(rnd.server.finalize()):
        dec.receive(a)
    return dec.result()


def _resign(env_bytes: bytes, key, **changes) -> bytes:
    env = decode_envelope(env_bytes)
    fields = {f: getattr(env, f) for f in (
        "kind", "scheme", "param_set_id", "key_id", "session_id", "round", "sender",
        "vector_length", "chunk_index", "chunk_count", "contributors", "payload")}
    fields.update(changes)
    return encode_envelope(Envelope(**fields), key)


def test_hostile_envelopes_leave_the_running_sum_unchanged(keys, bfv_keys):
    rnd = make_round(keys, n=3, length=M, chunk=2)  # 2 chunks per client
    good = _wire(rnd.clients[1].encrypt(_x(1)))
    for e in good:
        rnd.server.receive(e)
    e2 = _wire(rnd.clients[2].encrypt(_x(2)))
    before = rnd.server.state_digest()
    payload_at = len(e2[0]) - 64 - 200
    tampered = bytearray(e2[0])
    tampered[payload_at] ^= 0x01
    other = generate_keys(Preset.CKKS_4096.params)  # same parameters, another key pair
    foreign_round = make_round(other, n=3, length=M, chunk=2)
    foreign_ct = _wire(foreign_round.clients[2].encrypt(_x(2)))[0]
    bfv_round = make_round(bfv_keys, n=3, length=M)
    bad = {
        "tampered payload": (bytes(tampered), CryptoError),
        "truncated": (e2[0][:-100], DecodeError),
        "garbage": (b"\x00" * 40, DecodeError),
        "foreign key (header says so)": (
            _resign(foreign_ct, rnd.signing[2], key_id=other.key_id), RemoteProtocolError),
        "wrong parameter set": (_wire(bfv_round.clients[2].encrypt(np.arange(M) % 7))[0],
                                RemoteProtocolError),
        "other session": (_resign(e2[0], rnd.signing[2], session_id=b"x" * 16),
                          RemoteProtocolError),
        "other round": (_resign(e2[0], rnd.signing[2], round=9), RemoteProtocolError),
        "signed by another client": (_resign(e2[0], rnd.signing[3]), CryptoError),
        "unregistered sender": (_resign(e2[0], rnd.signing[2], sender=99, contributors=(99,)),
                                RemoteProtocolError),
        "aggregate kind": (_resign(e2[0], rnd.signing[2], kind=EnvelopeKind.AGGREGATE_CHUNK,
                                   sender=0), RemoteProtocolError),
        "replay of a committed chunk": (good[0], RemoteProtocolError),
        "validly signed garbage payload": (_resign(e2[0], rnd.signing[2], payload=b"\x01" * 99),
                                           DecodeError),
        "payload with the wrong ciphertext count": (
            _resign(e2[0], rnd.signing[2], payload=decode_envelope(e2[1]).payload),
            DecodeError),
    }
    for name, (blob, err) in bad.items():
        with pytest.raises(err):
            rnd.server.receive(blob)
        assert rnd.server.state_digest() == before, name
        assert rnd.server.contributors == (1,), name
    # a partial upload is pending, a duplicate of it is refused, state kept
    rnd.server.receive(e2[0])
    mid = rnd.server.state_digest()
    with pytest.raises(RemoteProtocolError):
        rnd.server.receive(e2[0])
    assert rnd.server.state_digest() == mid
    rnd.server.receive(e2[1])
    assert rnd.server.contributors == (1, 2)
    agg = _decrypt(keys, rnd)
    assert agg.contributors == (1, 2)
    err = np.max(np.abs(agg.values - (_x(1) + _x(2))))
    assert err <= keys.params.ckks_error_bound(2)


def test_round_is_closed_after_finalize(keys):
    rnd = make_round(keys, n=3, length=100)
    for i in (1, 2):
        for e in _wire(rnd.clients[i].encrypt(_x(i, 100))):
            rnd.server.receive(e)
    late = _wire(rnd.clients[3].encrypt(_x(3, 100)))
    _wire(rnd.server.finalize())
    assert rnd.server.phase is Phase.COMPLETED
    with pytest.raises(RemoteProtocolError):
        rnd.server.receive(late[0])
    with pytest.raises(LocalProtocolError):
        _wire(rnd.server.finalize())


def test_too_few_contributors_aborts_and_releases_nothing(keys):
    rnd = make_round(keys, n=3, length=100, min_contributors=2)
    for e in _wire(rnd.clients[1].encrypt(_x(1, 100))):
        rnd.server.receive(e)
    with pytest.raises(AbortedError):
        _wire(rnd.server.finalize())
    assert rnd.server.phase is Phase.ABORTED


def test_incomplete_upload_is_dropped(keys):
    rnd = make_round(keys, n=3, length=M, chunk=1)  # 3 chunks each
    for i in (1, 2):
        for e in _wire(rnd.clients[i].encrypt(_x(i))):
            rnd.server.receive(e)
    for e in _wire(rnd.clients[3].encrypt(_x(3)))[:2]:
        rnd.server.receive(e)
    assert rnd.server.count == 2
    agg = _decrypt(keys, rnd)
    assert agg.contributors == (1, 2)
    assert np.max(np.abs(agg.values - _x(1) - _x(2))) <= keys.params.ckks_error_bound(2)


def test_key_holder_refuses_individual_ciphertexts(keys):
    rnd = make_round(keys, n=3, length=100)
    dec = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
    own = _wire(rnd.clients[1].encrypt(_x(1, 100)))[0]
    with pytest.raises(RemoteProtocolError, match="never a client chunk"):
        dec.receive(own)
    # the server relabelling one client's ciphertext as an "aggregate" of one is refused
    lone = _resign(own, rnd.server_key, kind=EnvelopeKind.AGGREGATE_CHUNK, sender=0)
    with pytest.raises(RemoteProtocolError, match="min_contributors"):
        dec.receive(lone)
    # an aggregate not signed by the server is refused
    forged = _resign(own, rnd.signing[1], kind=EnvelopeKind.AGGREGATE_CHUNK, sender=0,
                     contributors=(1, 2))
    with pytest.raises(CryptoError):
        dec.receive(forged)
    assert dec.received_kinds == [EnvelopeKind.CLIENT_CHUNK, EnvelopeKind.AGGREGATE_CHUNK,
                                  EnvelopeKind.AGGREGATE_CHUNK]
    assert not dec.complete
    with pytest.raises(LocalProtocolError):
        dec.result()


def test_key_holder_checks_aggregate_consistency(keys):
    rnd = make_round(keys, n=3, length=M, chunk=1)
    for i in (1, 2, 3):
        for e in _wire(rnd.clients[i].encrypt(_x(i))):
            rnd.server.receive(e)
    aggs = _wire(rnd.server.finalize())
    dec = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
    dec.receive(aggs[0])
    with pytest.raises(RemoteProtocolError, match="duplicate"):
        dec.receive(aggs[0])
    with pytest.raises(RemoteProtocolError, match="different contributors"):
        dec.receive(_resign(aggs[1], rnd.server_key, contributors=(1, 2)))
    dec.receive(aggs[1])
    dec.receive(aggs[2])
    assert dec.result().count == 3


def test_decryptor_needs_the_secret_context(keys):
    rnd = make_round(keys)
    with pytest.raises(LocalProtocolError):
        HEDecryptor(session=rnd.session, secret_context=keys.public_context)


def test_bfv_out_of_range_aggregate_is_reported(bfv_keys):
    # a malicious client encrypts values >= t/2 directly (bypassing the range check)
    rnd = make_round(bfv_keys, n=2, length=100)
    ctx = HEContext.from_bytes(bfv_keys.public_context, kind=ContextKind.PUBLIC)
    t = bfv_keys.params.plain_modulus
    block = np.zeros((4096, 1), dtype=np.int64)
    block[0, 0] = t // 2 + 5
    evil = encode_envelope(Envelope(
        kind=EnvelopeKind.CLIENT_CHUNK, scheme=bfv_keys.params.scheme,
        param_set_id=bfv_keys.params.param_set_id, key_id=bfv_keys.key_id,
        session_id=rnd.session.session_id, round=0, sender=1, vector_length=100,
        chunk_index=0, chunk_count=1, contributors=(1,),
        payload=HEContext.serialize(ctx.encrypt_columns(block))), rnd.signing[1])
    rnd.server.receive(evil)
    for e in _wire(rnd.clients[2].encrypt(np.arange(100))):
        rnd.server.receive(e)
    dec = HEDecryptor(session=rnd.session, secret_context=bfv_keys.secret_context)
    for a in _wire(rnd.server.finalize()):
        dec.receive(a)
    with pytest.raises(RemoteProtocolError, match="out of range"):
        dec.result()


def test_client_input_checks(keys, bfv_keys):
    rnd = make_round(keys, n=2, length=10)
    c = rnd.clients[1]
    for bad in (np.ones(9), np.full(10, 1.5), np.array([np.nan] * 10), np.ones((2, 5))):
        with pytest.raises(ParameterError):
            _wire(c.encrypt(bad))
    with pytest.raises(ParameterError):
        _wire(c.encrypt_quantized(np.zeros(10)))  # CKKS has no quantizer
    b = make_round(bfv_keys, n=2, length=10).clients[1]
    for bad in (np.full(10, 1 << 22), np.full(10, -1), np.zeros(10)):
        with pytest.raises(ParameterError):
            _wire(b.encrypt(bad))
    with pytest.raises(ParameterError):
        HEClient(client_id=7, session=rnd.session,
                 context=HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC),
                 signing_key=rnd.signing[1])


def test_every_party_refuses_a_context_of_another_key(keys, bfv_keys):
    rnd = make_round(keys, n=2, length=10)
    foreign = HEContext.from_bytes(bfv_keys.public_context, kind=ContextKind.PUBLIC)
    with pytest.raises(ParameterError, match="does not belong"):
        HEClient(client_id=1, session=rnd.session, context=foreign, signing_key=rnd.signing[1])
    with pytest.raises(ParameterError, match="does not belong"):
        HEServer(session=rnd.session, public_context=bfv_keys.public_context,
                 signing_key=rnd.server_key)
    with pytest.raises(ParameterError, match="does not belong"):
        HEDecryptor(session=rnd.session, secret_context=bfv_keys.secret_context)


def test_an_aggregate_that_does_not_decrypt_is_the_servers_fault(keys, monkeypatch):
    # HEContext.decrypt raises LocalProtocolError for a tensor it cannot decrypt; the
    # decryptor's own context can decrypt, so there the fault lies with the server
    rnd = make_round(keys, n=3, length=100)
    for i in (1, 2):
        for e in _wire(rnd.clients[i].encrypt(_x(i, 100))):
            rnd.server.receive(e)
    dec = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
    for a in _wire(rnd.server.finalize()):
        dec.receive(a)

    def refuse(self, t):
        raise LocalProtocolError("cannot decrypt this tensor here: linked to another context")

    monkeypatch.setattr(HEContext, "decrypt", refuse)
    with pytest.raises(RemoteProtocolError, match="does not decrypt"):
        dec.result()
