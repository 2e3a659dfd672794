"""Every (phase, message type) pair on both sides.

A pair in the transition table with a valid message advances the party; any
other pair raises and either changes nothing (server; client for bytes that are
not from its server) or moves the client to ABORTED (a server message that does
not fit the client's phase).
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import DecodeError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.client import TRANSITIONS as CLIENT_T
from secagg.masking.client import ClientPhase
from secagg.masking.config import SecurityMode
from secagg.masking.server import TRANSITIONS as SERVER_T
from secagg.masking.server import ServerPhase

from .masking_harness import Harness

U = 2  # the client under test
SERVER_TYPES = {
    m.MessageType.KEYS_BROADCAST,
    m.MessageType.MASKED_INPUT_REQUEST,
    m.MessageType.CONSISTENCY_REQUEST,
    m.MessageType.UNMASKING_REQUEST,
    m.MessageType.ABORT,
}


def _transcript(security: SecurityMode) -> dict[m.MessageType, m.Message]:
    """One valid message of every type, to or from client U, from a complete round."""
    h = Harness.make(5, security=security, threshold=3)
    h.drive()
    assert h.server.phase is ServerPhase.COMPLETED
    msgs: dict[m.MessageType, m.Message] = {}
    for x in h.received[U] + h.sent[U]:
        msgs[x.TYPE] = x
    msgs[m.MessageType.ABORT] = m.Abort(
        session_id=h.config.session_id, sender=0, recipient=U, reason="test"
    )
    if security is SecurityMode.SEMI_HONEST:  # borrow shapes for the malicious-only types
        msgs[m.MessageType.CONSISTENCY_REQUEST] = m.ConsistencyRequest(
            session_id=h.config.session_id, sender=0, recipient=U, survivors=h.server.survivors
        )
        msgs[m.MessageType.CONSISTENCY_SIGNATURE] = m.ConsistencySignature(
            session_id=h.config.session_id, sender=U, recipient=0, signature=bytes(64)
        )
    assert set(msgs) == set(m.MessageType)
    return msgs


TRANSCRIPTS = {s: _transcript(s) for s in SecurityMode}

# how to bring client U into each phase: rounds it takes part in before stopping
CLIENT_SETUP = {
    ClientPhase.INIT: 0,
    ClientPhase.AWAIT_KEYS: 1,
    ClientPhase.AWAIT_BOXES: 2,
    ClientPhase.AWAIT_CONSISTENCY: 3,
    ClientPhase.AWAIT_UNMASKING: 4,
    ClientPhase.COMPLETED: 99,
    ClientPhase.ABORTED: -1,
}


def _client_in(phase: ClientPhase, security: SecurityMode) -> Harness:
    h = Harness.make(5, security=security, threshold=3)
    if phase is ClientPhase.ABORTED:
        h.drive(drops={U: 2})
        h.clients[U].receive(m.encode(TRANSCRIPTS[security][m.MessageType.ABORT]))
    else:
        drop = CLIENT_SETUP[phase]
        h.drive(drops={U: drop} if drop != 99 else {})
    assert h.clients[U].phase is phase
    return h


def _client_cases() -> list[tuple[SecurityMode, ClientPhase, m.MessageType]]:
    out = []
    for sec in SecurityMode:
        for ph in ClientPhase:
            if sec is SecurityMode.SEMI_HONEST and ph is ClientPhase.AWAIT_CONSISTENCY:
                continue  # not reachable without the consistency round
            for t in m.MessageType:
                out.append((sec, ph, t))
    return out


@pytest.mark.parametrize(("security", "phase", "mtype"), _client_cases())
def test_client_phase_message_pair(
    security: SecurityMode, phase: ClientPhase, mtype: m.MessageType
) -> None:
    h = _client_in(phase, security)
    c = h.clients[U]
    msg = TRANSCRIPTS[security][mtype]
    data = m.encode(msg)
    if mtype not in SERVER_TYPES:
        with pytest.raises(DecodeError):
            c.receive(data)
        assert c.phase is phase
        return
    if (phase, mtype) in CLIENT_T:
        replies = c.receive(data)
        if mtype is m.MessageType.ABORT:
            assert c.phase is ClientPhase.ABORTED and replies == []
        else:
            assert len(replies) == 1 and c.phase is not phase
            assert c.phase is not ClientPhase.ABORTED
        return
    with pytest.raises(RemoteProtocolError):
        c.receive(data)
    if phase in (ClientPhase.COMPLETED, ClientPhase.ABORTED):
        assert c.phase is phase
    else:
        assert c.phase is ClientPhase.ABORTED


def _server_snapshot(h: Harness) -> tuple[object, ...]:
    s = h.server
    run = s._sum.copy() if s._sum is not None else None
    return (s.phase, s.sets, s.expected, s.abort_reason, None if run is None else run.tobytes())


def _server_in(phase: ServerPhase, security: SecurityMode) -> tuple[Harness, m.Message | None]:
    h = Harness.make(5, security=security, threshold=3)
    if phase is ServerPhase.ABORTED:
        h.drive(drops={1: 2, 3: 2, 4: 2})
        held = None
    elif phase is ServerPhase.COMPLETED:
        h.drive()
        held = None
    elif phase is ServerPhase.FINALIZING:
        h.drive(finalize=False)
        held = None
    else:
        held = h.drive(stop=phase, hold=U)
        assert held is not None
    assert h.server.phase is phase
    return h, held


def _server_cases() -> list[tuple[SecurityMode, ServerPhase, m.MessageType]]:
    out = []
    for sec in SecurityMode:
        for ph in ServerPhase:
            if sec is SecurityMode.SEMI_HONEST and ph is ServerPhase.COLLECT_SIGNATURES:
                continue
            for t in m.MessageType:
                out.append((sec, ph, t))
    return out


@pytest.mark.parametrize(("security", "phase", "mtype"), _server_cases())
def test_server_phase_message_pair(
    security: SecurityMode, phase: ServerPhase, mtype: m.MessageType
) -> None:
    h, held = _server_in(phase, security)
    before = _server_snapshot(h)
    if (phase, mtype) in SERVER_T:
        assert held is not None and held.TYPE is mtype
        h.server.receive(U, m.encode(held))
        assert U not in h.server.expected or h.server.phase is not phase
        return
    msg = TRANSCRIPTS[security][mtype]
    with pytest.raises((RemoteProtocolError, DecodeError)):
        h.server.receive(U, m.encode(msg))
    assert _server_snapshot(h) == before


def test_server_rejects_duplicate_and_unexpected_sender() -> None:
    h, held = _server_in(ServerPhase.COLLECT_MASKED, SecurityMode.SEMI_HONEST)
    assert held is not None
    other = next(x for x in h.sent[1] if isinstance(x, m.MaskedInput))
    before = _server_snapshot(h)
    with pytest.raises(RemoteProtocolError):  # client 1 already delivered
        h.server.receive(1, m.encode(other))
    with pytest.raises(DecodeError):  # header sender 1 over client 2's transport
        h.server.receive(U, m.encode(other))
    assert _server_snapshot(h) == before
    h.server.receive(U, m.encode(held))


def test_server_rejects_bad_masked_vector_without_adding_it() -> None:
    h, held = _server_in(ServerPhase.COLLECT_MASKED, SecurityMode.SEMI_HONEST)
    assert isinstance(held, m.MaskedInput)
    before = _server_snapshot(h)
    short = m.MaskedInput(
        session_id=held.session_id, sender=U, recipient=0, bits=held.bits, vector=held.vector[:-1]
    )
    wrong_bits = m.MaskedInput(
        session_id=held.session_id,
        sender=U,
        recipient=0,
        bits=20,
        vector=held.vector,
    )
    for bad in (short, wrong_bits):
        with pytest.raises(RemoteProtocolError):
            h.server.receive(U, m.encode(bad))
    out_of_range = bytearray(m.encode(held))
    out_of_range[-2:] = b"\xff\xff"  # last element >= 2^16
    with pytest.raises(DecodeError):
        h.server.receive(U, bytes(out_of_range))
    assert _server_snapshot(h) == before


def test_deadline_outside_collecting_phase_is_local_error() -> None:
    from secagg.errors import LocalProtocolError

    h, _ = _server_in(ServerPhase.FINALIZING, SecurityMode.SEMI_HONEST)
    with pytest.raises(LocalProtocolError):
        h.server.deadline_passed()
    total = h.server.finalize()
    np.testing.assert_array_equal(total, h.expected_sum(h.server.survivors))
    with pytest.raises(LocalProtocolError):
        h.server.finalize()
