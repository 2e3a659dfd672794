"""Key generation and versioned context envelopes; the server cannot decrypt."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, LocalProtocolError, SecAggError
from secagg.he import ContextKind, HEContext, HEServer, Preset, generate_keys
from secagg.he.keys import CONTEXT_MAGIC, CONTEXT_VERSION, key_id_for

from ._he_fixtures import make_round

pytest.importorskip("tenseal")


def _wire(envelopes):
    """The wire bytes of the envelopes a party returned (bytes in, messages out)."""
    return [e.to_bytes() for e in envelopes]


def _split(envelope: bytes):
    r = Reader(envelope)
    r.raw(4), r.u8()
    kind = r.u8()
    params, key_id, public = r.blob(), r.raw(16), r.blob()
    secret = r.blob() if kind == 2 else b""
    return kind, params, key_id, public, secret


def _join(kind, params, key_id, public, secret=b""):
    w = Writer().raw(CONTEXT_MAGIC).u8(CONTEXT_VERSION).u8(kind).blob(params).raw(key_id)
    w.blob(public)
    if kind == 2:
        w.blob(secret)
    return w.getvalue()


def test_public_context_holds_no_secret(keys):
    pub = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC)
    assert not pub.can_decrypt and not pub.tenseal_context().has_secret_key()
    sec = HEContext.from_bytes(keys.secret_context, kind=ContextKind.SECRET)
    assert sec.can_decrypt and sec.key_id == pub.key_id == keys.key_id
    assert "secret_context" not in repr(keys)


def test_server_cannot_decrypt(keys):
    rnd = make_round(keys, n=2, length=50)
    x = np.linspace(-1, 1, 50)
    for e in _wire(rnd.clients[1].encrypt(x)) + _wire(rnd.clients[2].encrypt(x)):
        rnd.server.receive(e)
    server_ctx = rnd.server.context
    assert not server_ctx.can_decrypt
    # the running sum, deserialized under the server's own TenSEAL context, cannot be decrypted
    from secagg.he.envelope import decode_envelope

    blob = decode_envelope(_wire(rnd.clients[1].encrypt(x))[0]).payload
    tensor = server_ctx.load(blob, ciphertexts=1)
    with pytest.raises(ValueError, match="secret"):
        tensor.decrypt()
    with pytest.raises(LocalProtocolError):
        server_ctx.decrypt(tensor)
    # the key holder refuses, with a typed error, a tensor linked to the public context
    holder = HEContext.from_bytes(keys.secret_context, kind=ContextKind.SECRET)
    with pytest.raises(LocalProtocolError):
        holder.decrypt(tensor)


def test_secret_context_is_refused_by_the_server(keys):
    rnd = make_round(keys)
    with pytest.raises(LocalProtocolError):
        HEServer(session=rnd.session, public_context=keys.secret_context,
                 signing_key=rnd.server_key)


def test_public_envelope_smuggling_a_secret_key_is_refused(keys):
    _kind, params, _, _, secret = _split(keys.secret_context)
    forged = _join(1, params, key_id_for(secret), secret)  # key id recomputed to match
    with pytest.raises(DecodeError, match="secret"):
        HEContext.from_bytes(forged, kind=ContextKind.PUBLIC)


def test_secret_of_another_key_pair_is_refused(keys):
    other = generate_keys(Preset.CKKS_4096.params)
    _, params, key_id, public, _ = _split(keys.secret_context)
    _, _, _, _, other_secret = _split(other.secret_context)
    with pytest.raises(DecodeError):
        HEContext.from_bytes(_join(2, params, key_id, public, other_secret),
                             kind=ContextKind.SECRET)


def test_key_id_and_params_are_checked(keys, bfv_keys):
    _kind, params, key_id, public, _ = _split(keys.public_context)
    with pytest.raises(DecodeError, match="key id"):
        HEContext.from_bytes(_join(1, params, b"\x00" * 16, public), kind=ContextKind.PUBLIC)
    _, bfv_params, _, _, _ = _split(bfv_keys.public_context)
    with pytest.raises(DecodeError, match="declared parameters"):  # CKKS bytes, BFV params
        HEContext.from_bytes(_join(1, bfv_params, key_id, public), kind=ContextKind.PUBLIC)
    with pytest.raises(DecodeError):
        HEContext.from_bytes(_join(1, params[:-1], key_id, public), kind=ContextKind.PUBLIC)
    with pytest.raises(DecodeError, match="version"):
        HEContext.from_bytes(keys.public_context[:4] + b"\x02" + keys.public_context[5:],
                             kind=ContextKind.PUBLIC)
    with pytest.raises(LocalProtocolError):
        HEContext.from_bytes(keys.public_context, kind=ContextKind.SECRET)


@settings(max_examples=25)
@given(st.data())
def test_mutated_context_envelope_gives_typed_error(keys, data):
    buf = bytearray(keys.public_context)
    # mutate the header/params region (the TenSEAL bytes are bound by the key id)
    i = data.draw(st.integers(0, 120))
    buf[i] ^= data.draw(st.integers(1, 255))
    try:
        ctx = HEContext.from_bytes(bytes(buf), kind=ContextKind.PUBLIC)
    except SecAggError:
        return
    # a mutation that still parses can only have changed max_clients/clip (not the
    # SEAL parameters, which are checked against the TenSEAL bytes): a new param-set id
    assert ctx.key_id == keys.key_id
    assert ctx.params.poly_modulus_degree == 4096
    assert ctx.params.param_set_id != keys.params.param_set_id


@given(st.binary(max_size=200))
def test_arbitrary_context_bytes_give_decode_error(data):
    with pytest.raises(DecodeError):
        HEContext.from_bytes(data, kind=ContextKind.PUBLIC)
