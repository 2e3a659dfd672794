"""HE parties follow the I/O convention of every party (issue #18 item 5): bytes
in, message objects out — signed :class:`~secagg.he.Envelope` objects with
``sender``, ``recipient`` and ``to_bytes()`` (byte-identical to
:func:`~secagg.he.encode_envelope`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import LocalProtocolError
from secagg.he import (
    EnvelopeKind,
    HEDecryptor,
    decode_envelope,
    encode_envelope,
    sign_envelope,
)

from ._he_fixtures import make_round

pytest.importorskip("tenseal")


def test_he_round_moves_bytes_and_returns_envelopes(keys) -> None:  # type: ignore[no-untyped-def]
    rnd = make_round(keys, n=3, length=100, chunk=1)
    xs = {i: np.linspace(-1, 1, 100) * i / 4 for i in rnd.clients}
    for i, client in rnd.clients.items():
        envelopes = client.encrypt(xs[i])
        assert len(envelopes) == rnd.session.chunk_count
        for env in envelopes:
            assert (env.kind, env.sender, env.recipient) == (EnvelopeKind.CLIENT_CHUNK, i, 0)
            wire = env.to_bytes()
            assert decode_envelope(wire).to_bytes() == wire
            env.verify(rnd.signing[i].public)  # a locally signed envelope verifies too
            assert rnd.server.receive(wire) == []  # an upload is answered by nothing
    aggregate = rnd.server.finalize()
    decryptor = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
    for env in aggregate:
        assert (env.kind, env.sender, env.recipient) == (EnvelopeKind.AGGREGATE_CHUNK, 0, 0)
        assert decryptor.receive(env.to_bytes()) == []
    res = decryptor.result()
    np.testing.assert_allclose(res.values, sum(xs.values()), atol=1e-3)


def test_sign_envelope_gives_the_bytes_of_encode_envelope(keys) -> None:  # type: ignore[no-untyped-def]
    rnd = make_round(keys, n=2, length=10)
    (env,) = rnd.clients[1].encrypt(np.zeros(10))
    bare = dataclasses.replace(env, signature=b"")
    with pytest.raises(LocalProtocolError, match="not signed"):
        bare.to_bytes()
    key = rnd.signing[1]
    assert sign_envelope(bare, key).to_bytes() == encode_envelope(bare, key) == env.to_bytes()
