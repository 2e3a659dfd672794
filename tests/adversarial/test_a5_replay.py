"""Attack 5: replay of messages from another session, another round, or another client.

Outcomes asserted:
* bytes of another session / addressed to another client: ``DecodeError`` and the
  receiving party's state is unchanged (the round then completes exactly);
* the same content re-headed for this session: AEAD boxes and signatures bind the
  session id, sender and receiver — ``CryptoError`` and abort, nothing revealed;
* a message of another round (phase): the client aborts (``RemoteProtocolError``);
  the server rejects it and changes nothing (duplicates never count twice).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import CryptoError, DecodeError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.phase import Phase
from secagg.sim import SecurityMode

from ._harness import Manual, assert_nothing_secret_left, make_round


def _advance_until(run: Manual, cls: type[m.Message]) -> dict[int, bytes]:
    while not any(isinstance(m.decode(d), cls) for _, d in run.outbox):
        run.deliver()
    return dict(run.outbox)


def _finish(run: Manual) -> np.ndarray:
    while run.outbox:
        run.deliver()
    return run.server.finalize()


@pytest.mark.parametrize("security", [SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS])
@pytest.mark.parametrize("cls", [m.KeysBroadcast, m.MaskedInputRequest, m.UnmaskingRequest])
def test_a5_other_session_bytes_are_refused_and_change_nothing(
    security: SecurityMode, cls: type[m.Message]
) -> None:
    old = Manual(make_round(5, security=security, seed=1))
    old.start()
    stale = _advance_until(old, cls)
    cur = Manual(make_round(5, security=security, seed=2))
    cur.start()
    _advance_until(cur, cls)
    for u, data in stale.items():
        before = cur.clients[u].phase
        assert cur.to_client(u, data) == []
        assert isinstance(cur.client_errors.pop(u), DecodeError)
        assert cur.clients[u].phase is before
    np.testing.assert_array_equal(_finish(cur), cur.round.expected_sum(cur.config.clients))


@pytest.mark.parametrize("security", [SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS])
def test_a5_share_boxes_of_another_session_reheaded_fail_authentication(
    security: SecurityMode,
) -> None:
    old = Manual(make_round(5, security=security, seed=1))
    old.start()
    stale = _advance_until(old, m.MaskedInputRequest)
    cur = Manual(make_round(5, security=security, seed=2))
    cur.start()
    _advance_until(cur, m.MaskedInputRequest)
    u = 2
    msg = m.decode(stale[u])
    forged = dataclasses.replace(msg, session_id=cur.config.session_id)
    assert cur.to_client(u, m.encode(forged)) == []
    assert isinstance(cur.client_errors[u], CryptoError)
    assert cur.clients[u].phase is Phase.ABORTED
    assert_nothing_secret_left(cur.rec, cur.config.clients, t=cur.round.t)


def test_a5_signed_keys_of_another_session_reheaded_fail_verification() -> None:
    old = Manual(make_round(5, security=SecurityMode.MALICIOUS, seed=1))
    old.start()
    stale = _advance_until(old, m.KeysBroadcast)
    # same identity keys in both sessions: only the session id differs
    rnd = make_round(5, security=SecurityMode.MALICIOUS, seed=1)
    rnd.config = dataclasses.replace(rnd.config, session_id=bytes(32))
    cur = Manual(rnd)
    cur.start()
    _advance_until(cur, m.KeysBroadcast)
    u = 1
    forged = dataclasses.replace(m.decode(stale[u]), session_id=cur.config.session_id)
    assert cur.to_client(u, m.encode(forged)) == []
    assert isinstance(cur.client_errors[u], CryptoError)
    assert cur.rec.of_type(u, m.ShareKeys) == []


def test_a5_message_addressed_to_another_client_is_refused_unchanged() -> None:
    run = Manual(make_round(5))
    run.start()
    pending = _advance_until(run, m.MaskedInputRequest)
    assert run.to_client(3, pending[2]) == []
    assert isinstance(run.client_errors.pop(3), DecodeError)
    assert run.clients[3].phase is Phase.SHARE_KEYS
    np.testing.assert_array_equal(_finish(run), run.round.expected_sum(run.config.clients))


def test_a5_boxes_readdressed_to_another_client_fail_authentication() -> None:
    run = Manual(make_round(5))
    run.start()
    pending = _advance_until(run, m.MaskedInputRequest)
    msg = m.decode(pending[2])
    assert isinstance(msg, m.MaskedInputRequest)
    # keep only boxes whose sender is a neighbor of 3, as the header rewrite needs
    forged = dataclasses.replace(
        msg, recipient=3, boxes=tuple((s, b) for s, b in msg.boxes if s != 3)
    )
    assert run.to_client(3, m.encode(forged)) == []
    assert isinstance(run.client_errors[3], CryptoError)
    assert run.clients[3].phase is Phase.ABORTED


@pytest.mark.parametrize("cls", [m.KeysBroadcast, m.MaskedInputRequest])
def test_a5_earlier_round_replayed_to_client_aborts_it(cls: type[m.Message]) -> None:
    run = Manual(make_round(5))
    run.start()
    earlier = _advance_until(run, cls)
    later = m.UnmaskingRequest if cls is m.MaskedInputRequest else m.MaskedInputRequest
    _advance_until(run, later)
    assert run.to_client(1, earlier[1]) == []
    assert isinstance(run.client_errors[1], RemoteProtocolError)
    assert run.clients[1].phase is Phase.ABORTED
    assert run.rec.of_type(1, m.UnmaskingResponse) == []


def test_a5_replay_after_completion_is_refused() -> None:
    run = Manual(make_round(5))
    run.start()
    final = _advance_until(run, m.UnmaskingRequest)
    run.deliver()
    assert run.clients[1].phase is Phase.COMPLETED
    assert run.to_client(1, final[1]) == []
    assert isinstance(run.client_errors[1], RemoteProtocolError)
    assert len(run.rec.of_type(1, m.UnmaskingResponse)) == 1


def test_a5_server_ignores_duplicates_other_sessions_and_impersonation() -> None:
    old = Manual(make_round(5, seed=1))
    old.start()
    _advance_until(old, m.MaskedInputRequest)
    old.deliver()  # masked inputs of the old session recorded
    stale_masked = [
        d
        for dr, _, d in old.rec.log
        if dr == "to_server" and isinstance(m.decode(d), m.MaskedInput)
    ]
    run = Manual(make_round(5, seed=2))
    run.start()
    _advance_until(run, m.MaskedInputRequest)
    box = list(run.outbox)
    run.outbox = []
    first = None
    for u, data in box:
        (reply,) = run.to_client(u, data)
        if first is None:
            first = (u, reply)
            run.to_server(u, reply)
    assert first is not None
    u, reply = first
    before = run.server.sets, run.server.awaiting
    with pytest.raises(RemoteProtocolError):  # duplicate: counted once
        run.server.receive(u, reply)
    with pytest.raises(DecodeError):  # another session
        run.server.receive(2, stale_masked[1])
    with pytest.raises(DecodeError):  # u's bytes presented as another client's
        run.server.receive(u % 5 + 1, reply)
    assert (run.server.sets, run.server.awaiting) == before
