"""What the stateful machines know about the protocol, in one place.

The machines (``tests/masking/test_stateful.py``,
``tests/properties/test_stateful_rounds.py``,
``tests/properties/test_stateful_malicious_server.py``) drive real clients and a
real server; everything they need to *predict* — which round a message belongs
to, how a round is driven to its end, and the outcome model of
``protocols/secagg.md`` §4 — lives here, so a protocol change (e.g. v2) is adapted
in this file rather than in every machine.

``leave[u]`` is the round before which client ``u`` stops replying: 0 never
advertises keys, 1..4 before ShareKeys / MaskedInput / ConsistencySignature /
UnmaskingResponse, :data:`NEVER` answers everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from secagg.masking import messages as m
from secagg.masking.client import Client, ClientPhase
from secagg.masking.config import RoundConfig, SecurityMode
from secagg.masking.server import Server, ServerPhase

#: server message -> the round of the reply it asks for (Abort asks for none)
REPLY_ROUND = {
    m.MessageType.KEYS_BROADCAST: 1,
    m.MessageType.MASKED_INPUT_REQUEST: 2,
    m.MessageType.CONSISTENCY_REQUEST: 3,
    m.MessageType.UNMASKING_REQUEST: 4,
}
#: client message -> its round
CLIENT_ROUND = {
    m.MessageType.ADVERTISE_KEYS: 0,
    m.MessageType.SHARE_KEYS: 1,
    m.MessageType.MASKED_INPUT: 2,
    m.MessageType.CONSISTENCY_SIGNATURE: 3,
    m.MessageType.UNMASKING_RESPONSE: 4,
}
NEVER = 5
#: where the server waits for client messages (a deadline ends each)
COLLECTING = frozenset(
    {
        ServerPhase.COLLECT_KEYS,
        ServerPhase.COLLECT_SHARES,
        ServerPhase.COLLECT_MASKED,
        ServerPhase.COLLECT_SIGNATURES,
        ServerPhase.COLLECT_UNMASKING,
    }
)
END_STATES = (ServerPhase.COMPLETED, ServerPhase.ABORTED)


def client_done(client: Client) -> bool:
    """A client that completed or aborted has closed its connection: nothing more is
    delivered to it (a real one would not be listening; e.g. the server's Abort after
    a client sent its unmasking response would only be refused)."""
    return client.phase in (ClientPhase.COMPLETED, ClientPhase.ABORTED)


def reply_round(msg_type: m.MessageType) -> int | None:
    """The round a server message asks a reply for; None for Abort."""
    return REPLY_ROUND.get(msg_type)


def server_idle_step(server: Server) -> list[tuple[int, m.Message]]:
    """What the server does when nothing more arrives: the deadline of the phase it
    collects in passes, or it finalizes.  Returns the messages it sends."""
    if server.phase in COLLECTING:
        return list(server.deadline_passed())
    if server.phase is ServerPhase.FINALIZING:
        server.finalize()
    return []


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's verdict on one round.

    ``may_raise``: clients that the model lets raise a typed error (they are in a
    set of the round but have fewer than ``t`` neighbours in it, so an honest
    client must refuse to go on).  Any other client raising is a failure.
    ``abort_phase``: the phase the server must be in when it aborts (the check
    that fails is the server's check at the end of that phase); None if it
    completes.  Compared as a value: an abort that comes later than the model
    says (e.g. after clients were asked to unmask) is a failure.
    """

    completes: bool
    u3: tuple[int, ...]
    may_raise: frozenset[int]
    abort_phase: ServerPhase | None = None


def predict(
    cfg: RoundConfig, nbrs: Mapping[int, frozenset[int]], leave: Mapping[int, int]
) -> Prediction:
    """The outcome of a round with an honest server, given ``leave`` (module docstring)."""
    t, clients = cfg.threshold, cfg.clients
    malicious = cfg.security is SecurityMode.MALICIOUS
    short: set[int] = set()

    def thin(s: set[int], who: set[int]) -> set[int]:
        bad = {u for u in who if len(nbrs[u] & s) < t}
        short.update(bad)
        return bad

    def abort(phase: ServerPhase) -> Prediction:
        return Prediction(False, (), frozenset(short), phase)

    u1 = {u for u in clients if leave[u] >= 1}
    if len(u1) < t + 1:
        return abort(ServerPhase.COLLECT_KEYS)
    u2 = {u for u in u1 if leave[u] >= 2} - thin(u1, {u for u in u1 if leave[u] >= 2})
    if len(u2) < t + 1:
        return abort(ServerPhase.COLLECT_SHARES)
    u3 = {u for u in u2 if leave[u] >= 3} - thin(u2, {u for u in u2 if leave[u] >= 3})
    if len(u3) < t + 1:
        return abort(ServerPhase.COLLECT_MASKED)
    if thin(u3, {u for u in u3 if leave[u] >= 3}):  # a self mask cannot be recovered
        return abort(ServerPhase.COLLECT_MASKED)
    masked_with = set().union(*(nbrs[u] & u2 for u in u3))
    dropped = (u2 - u3) & masked_with
    if any(len(nbrs[v] & u3) < t for v in dropped):  # a dropped client's masks neither
        return abort(ServerPhase.COLLECT_MASKED)
    u4 = {u for u in u3 if leave[u] >= (4 if malicious else 3)}
    if malicious and len(u4) < cfg.signature_threshold:
        return abort(ServerPhase.COLLECT_SIGNATURES)
    u5 = {u for u in u4 if leave[u] >= NEVER}
    if any(len(nbrs[v] & u5) < t for v in u3 | dropped):
        return abort(ServerPhase.COLLECT_UNMASKING)
    return Prediction(True, tuple(sorted(u3)), frozenset(short))
