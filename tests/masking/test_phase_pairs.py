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
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.phase import CLIENT_TRANSITIONS as CLIENT_T
from secagg.masking.phase import KINDS, SERVER_CLOSES, TERMINAL, Kind, Phase
from secagg.masking.phase import SERVER_TRANSITIONS as SERVER_T

from .masking_harness import Harness

U = 2  # the client under test
SERVER_TYPES = {
    m.MessageType.SEED_REQUEST,
    m.MessageType.KEYS_BROADCAST,
    m.MessageType.MASKED_INPUT_REQUEST,
    m.MessageType.CONSISTENCY_REQUEST,
    m.MessageType.UNMASKING_REQUEST,
    m.MessageType.ABORT,
}


SH, MAL = SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS
PLUS = ProtocolKind.SECAGG_PLUS


def _transcript(kind: Kind) -> dict[m.MessageType, m.Message]:
    """One valid message of every type, to or from client U, from a complete round."""
    protocol, security = kind
    h = Harness.make(5, protocol=protocol, security=security, threshold=3)
    h.drive()
    assert h.server.phase is Phase.COMPLETED
    msgs: dict[m.MessageType, m.Message] = {}
    for x in h.received[U] + h.sent[U]:
        msgs[x.TYPE] = x
    msgs[m.MessageType.ABORT] = m.Abort(
        session_id=h.config.session_id,
        sender=0,
        recipient=U,
        code=AbortReason.TOO_FEW_SHARES,
        reason="test",
    )
    if security is SecurityMode.SEMI_HONEST:  # borrow shapes for the malicious-only types
        msgs[m.MessageType.CONSISTENCY_REQUEST] = m.ConsistencyRequest(
            session_id=h.config.session_id, sender=0, recipient=U, survivors=h.server.survivors
        )
        msgs[m.MessageType.CONSISTENCY_SIGNATURE] = m.ConsistencySignature(
            session_id=h.config.session_id, sender=U, recipient=0, signature=bytes(64)
        )
    if protocol is not PLUS:  # borrow shapes for the SecAgg+-only types
        msgs[m.MessageType.SEED_REQUEST] = m.SeedRequest(
            session_id=h.config.session_id,
            sender=0,
            recipient=U,
            commitments=tuple((u, bytes(32)) for u in h.config.clients),
        )
        msgs[m.MessageType.SEED_REVEAL] = m.SeedReveal(
            session_id=h.config.session_id, sender=U, recipient=0, reveal=bytes(32)
        )
    assert set(msgs) == set(m.MessageType)
    return msgs


TRANSCRIPTS = {k: _transcript(k) for k in KINDS}

# how to bring client U into each phase: rounds it takes part in before stopping
CLIENT_SETUP = {
    Phase.INIT: 0,
    Phase.ADVERTISE_KEYS: 1,  # SecAgg+: and its SeedRequest withheld
    Phase.GRAPH_SEED: 1,
    Phase.SHARE_KEYS: 2,
    Phase.MASKED_INPUT: 3,
    Phase.CONSISTENCY: 4,
    Phase.COMPLETED: 99,
    Phase.ABORTED: -1,
}


def _withhold_seed_request(u: int, msg: m.Message) -> m.Message | None:
    return None if u == U and isinstance(msg, m.SeedRequest) else msg


def _client_in(phase: Phase, kind: Kind) -> Harness:
    protocol, security = kind
    h = Harness.make(5, protocol=protocol, security=security, threshold=3)
    if phase is Phase.ABORTED:
        h.drive(drops={U: 2})
        h.clients[U].receive(m.encode(TRANSCRIPTS[kind][m.MessageType.ABORT]))
    elif phase is Phase.ADVERTISE_KEYS and protocol is PLUS:
        h.drive(rewrite=_withhold_seed_request)
    else:
        drop = CLIENT_SETUP[phase]
        h.drive(drops={U: drop} if drop != 99 else {})
    assert h.clients[U].phase is phase
    return h


def _reachable(kind: Kind, phase: Phase) -> bool:
    protocol, security = kind
    if phase is Phase.CONSISTENCY and security is SH:
        return False  # no consistency round
    return not (phase is Phase.GRAPH_SEED and protocol is not PLUS)  # no graph-seed step


def _client_cases() -> list[tuple[Kind, Phase, m.MessageType]]:
    return [
        (k, ph, t) for k in KINDS for ph in CLIENT_SETUP if _reachable(k, ph) for t in m.MessageType
    ]


def _kid(x: object) -> str:
    if isinstance(x, tuple):
        return f"{x[0].value}-{x[1].value}"
    return str(getattr(x, "name", x))


@pytest.mark.parametrize(("kind", "phase", "mtype"), _client_cases(), ids=_kid)
def test_client_phase_message_pair(kind: Kind, phase: Phase, mtype: m.MessageType) -> None:
    h = _client_in(phase, kind)
    c = h.clients[U]
    msg = TRANSCRIPTS[kind][mtype]
    data = m.encode(msg)
    if mtype not in SERVER_TYPES:
        with pytest.raises(DecodeError):
            c.receive(data)
        assert c.phase is phase
        return
    step = CLIENT_T[kind].get((phase, mtype))
    if step is not None:
        replies = c.receive(data)
        assert c.phase is step.next  # the table says where the client goes
        if mtype is m.MessageType.ABORT:
            assert replies == [] and c.abort_code is AbortReason.SERVER_ABORTED
        else:
            assert len(replies) == 1 and c.phase is not phase
        return
    with pytest.raises(RemoteProtocolError):
        c.receive(data)
    if phase in TERMINAL:
        assert c.phase is phase
    else:
        assert c.phase is Phase.ABORTED and c.abort_code is AbortReason.UNEXPECTED_MESSAGE


def _server_snapshot(h: Harness) -> tuple[object, ...]:
    s = h.server
    run = s._sum.copy() if s._sum is not None else None
    return (s.phase, s.sets, s.awaiting, s.abort_reason, None if run is None else run.tobytes())


def _server_in(phase: Phase, kind: Kind) -> tuple[Harness, m.Message | None]:
    protocol, security = kind
    h = Harness.make(5, protocol=protocol, security=security, threshold=3)
    if phase is Phase.ABORTED:
        h.drive(drops={1: 2, 3: 2, 4: 2})
        held = None
    elif phase is Phase.COMPLETED:
        h.drive()
        held = None
    elif phase is Phase.FINALIZING:
        h.drive(finalize=False)
        held = None
    else:
        held = h.drive(stop=phase, hold=U)
        assert held is not None
    assert h.server.phase is phase
    return h, held


SERVER_PHASES = [p for p in Phase if p is not Phase.INIT]


def _server_cases() -> list[tuple[Kind, Phase, m.MessageType]]:
    return [
        (k, ph, t)
        for k in KINDS
        for ph in SERVER_PHASES
        if _reachable(k, ph)
        for t in m.MessageType
    ]


@pytest.mark.parametrize(("kind", "phase", "mtype"), _server_cases(), ids=_kid)
def test_server_phase_message_pair(kind: Kind, phase: Phase, mtype: m.MessageType) -> None:
    h, held = _server_in(phase, kind)
    before = _server_snapshot(h)
    if (phase, mtype) in SERVER_T[kind]:
        assert held is not None and held.TYPE is mtype
        h.server.receive(U, m.encode(held))
        assert U not in h.server.awaiting or h.server.phase is not phase
        return
    msg = TRANSCRIPTS[kind][mtype]
    with pytest.raises((RemoteProtocolError, DecodeError)):
        h.server.receive(U, m.encode(msg))
    assert _server_snapshot(h) == before


def test_server_rejects_duplicate_and_unexpected_sender() -> None:
    h, held = _server_in(Phase.MASKED_INPUT, (ProtocolKind.SECAGG, SH))
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
    h, held = _server_in(Phase.MASKED_INPUT, (ProtocolKind.SECAGG, SH))
    assert isinstance(held, m.MaskedInput)
    before = _server_snapshot(h)
    short = m.MaskedInput(
        session_id=held.session_id,
        sender=U,
        recipient=0,
        bits=held.bits,
        vector=held.vector[:-1],
        view=held.view,
    )
    wrong_bits = m.MaskedInput(
        session_id=held.session_id,
        sender=U,
        recipient=0,
        bits=20,
        vector=held.vector,
        view=held.view,
    )
    wrong_view = m.MaskedInput(
        session_id=held.session_id,
        sender=U,
        recipient=0,
        bits=held.bits,
        vector=held.vector,
        view=bytes(32),
    )
    for bad in (short, wrong_bits, wrong_view):
        with pytest.raises(RemoteProtocolError):
            h.server.receive(U, m.encode(bad))
        with pytest.raises(RemoteProtocolError):
            h.server.handle(U, bad)
    padding = bytearray(m.encode(held))
    padding.append(0)  # one byte more than ceil(m*b/8)
    with pytest.raises(DecodeError):
        h.server.receive(U, bytes(padding))
    assert _server_snapshot(h) == before


def test_deadline_outside_collecting_phase_is_local_error() -> None:
    from secagg.errors import LocalProtocolError

    h, _ = _server_in(Phase.FINALIZING, (ProtocolKind.SECAGG, SH))
    with pytest.raises(LocalProtocolError):
        h.server.deadline_passed()
    total = h.server.finalize()
    np.testing.assert_array_equal(total, h.expected_sum(h.server.survivors))
    with pytest.raises(LocalProtocolError):
        h.server.finalize()


@pytest.mark.parametrize("kind", KINDS, ids=_kid)
def test_state_graph_is_data_and_every_phase_is_reachable(kind: Kind) -> None:
    """The tables alone describe a path INIT -> COMPLETED for the client and
    ADVERTISE_KEYS -> FINALIZING for the server, in round order."""
    client = CLIENT_T[kind]
    phase, seen = Phase.ADVERTISE_KEYS, []
    while phase is not Phase.COMPLETED:
        nxt = [
            s.next for (p, t), s in client.items() if p is phase and t is not m.MessageType.ABORT
        ]
        assert len(nxt) == 1, (phase, nxt)
        seen.append(phase)
        phase = nxt[0]
    rounds = [p.round for p in seen]
    assert rounds == sorted(rounds) and rounds[0] == 0
    closes = SERVER_CLOSES[kind]
    phase, server_seen = Phase.ADVERTISE_KEYS, []
    while phase is not Phase.FINALIZING:
        server_seen.append(phase)
        phase = closes[phase].next
    assert server_seen == seen + ([Phase.UNMASKING] if Phase.UNMASKING not in seen else [])
    # every server phase that collects has exactly one client message type
    for p in server_seen:
        assert len([t for (q, t) in SERVER_T[kind] if q is p]) == 1
    assert (Phase.GRAPH_SEED in seen) is (kind[0] is PLUS)


def test_collecting_names_who_the_server_still_waits_for() -> None:
    h, held = _server_in(Phase.MASKED_INPUT, (ProtocolKind.SECAGG, SH))
    assert held is not None
    assert h.server.awaiting == frozenset({U})
    h.server.receive(U, m.encode(held))
    assert h.server.phase is Phase.UNMASKING
    assert h.server.awaiting == frozenset(h.server.survivors)


def test_parties_report_the_one_phase_enum() -> None:
    """Both parties report :class:`secagg.phase.Phase` members; the server's
    ``collecting`` is its phase while a round is open, ``None`` after."""
    h = Harness.make(4, threshold=2)
    assert isinstance(h.server.phase, Phase)
    assert h.server.collecting is Phase.ADVERTISE_KEYS
    assert all(isinstance(c.phase, Phase) for c in h.clients.values())
    h.drive(finalize=False)
    assert h.server.phase is Phase.FINALIZING and h.server.collecting is None
