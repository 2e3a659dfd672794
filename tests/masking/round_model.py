"""What the stateful machines know about the protocol, in one place.

The machines (``tests/masking/test_stateful.py``,
``tests/properties/test_stateful_rounds.py``,
``tests/properties/test_stateful_malicious_server.py``) drive real clients and a
real server; everything they need to *predict* — which step a message belongs
to, how a round is driven to its end, and the outcome model of
``protocols/secagg.md`` §4 — lives here, so a protocol change is adapted in this
file rather than in every machine.

Steps of a round (protocol v2): ``0`` AdvertiseKeys, ``1`` SeedReveal (SecAgg+
only: the second step of round 0), ``2`` ShareKeys, ``3`` MaskedInput, ``4``
ConsistencySignature, ``5`` UnmaskingResponse.  ``leave[u]`` is the step before
which client ``u`` stops replying: ``0`` never advertises keys, ``1`` advertises
but never reveals its graph-seed part (SecAgg+: the round aborts, by design; in
SecAgg there is no such step and ``1`` acts like ``2``), ..., :data:`NEVER`
answers everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server
from secagg.phase import TERMINAL, Phase

#: server message -> the step of the reply it asks for (Abort asks for none)
REPLY_ROUND = {
    m.MessageType.SEED_REQUEST: 1,
    m.MessageType.KEYS_BROADCAST: 2,
    m.MessageType.MASKED_INPUT_REQUEST: 3,
    m.MessageType.CONSISTENCY_REQUEST: 4,
    m.MessageType.UNMASKING_REQUEST: 5,
}
#: client message -> its step
CLIENT_ROUND = {
    m.MessageType.ADVERTISE_KEYS: 0,
    m.MessageType.SEED_REVEAL: 1,
    m.MessageType.SHARE_KEYS: 2,
    m.MessageType.MASKED_INPUT: 3,
    m.MessageType.CONSISTENCY_SIGNATURE: 4,
    m.MessageType.UNMASKING_RESPONSE: 5,
}
NEVER = 6
#: the last step a client can be asked for (leaving before it is still a dropout)
LAST_STEP = 5
END_STATES = (Phase.COMPLETED, Phase.ABORTED)
#: the step a server phase collects (the next replies it waits for)
COLLECTS = {
    Phase.ADVERTISE_KEYS: 0,
    Phase.GRAPH_SEED: 1,
    Phase.SHARE_KEYS: 2,
    Phase.MASKED_INPUT: 3,
    Phase.CONSISTENCY: 4,
    Phase.UNMASKING: 5,
}


def client_done(client: Client) -> bool:
    """A client that completed or aborted has closed its connection: nothing more is
    delivered to it (a real one would not be listening; e.g. the server's Abort after
    a client sent its unmasking response would only be refused)."""
    return client.phase in TERMINAL


def reply_round(msg_type: m.MessageType) -> int | None:
    """The step a server message asks a reply for; None for Abort."""
    return REPLY_ROUND.get(msg_type)


def server_idle_step(server: Server) -> list[tuple[int, m.Message]]:
    """What the server does when nothing more arrives: the deadline of the phase it
    collects in passes, or it finalizes.  Returns the messages it sends."""
    if server.phase in COLLECTS:
        return list(server.deadline_passed())
    if server.phase is Phase.FINALIZING:
        server.finalize()
    return []


@dataclass(frozen=True, slots=True)
class Prediction:
    """The model's verdict on one round.

    ``may_raise``: clients that the model lets raise a typed error (they are in a
    set of the round but have fewer than ``t`` neighbors in it, so an honest
    client must refuse to go on).  Any other client raising is a failure.
    ``abort_code``: the :class:`AbortReason` the server must give (the check that
    fails first, in the server's order); None if it completes.  Compared as a value:
    an abort for another reason, or one that comes later than the model says (e.g.
    after clients were asked to unmask), is a failure.
    """

    completes: bool
    u3: tuple[int, ...]
    may_raise: frozenset[int]
    abort_code: AbortReason | None = None

    @property
    def asked_to_unmask(self) -> bool:
        """Whether the server got as far as sending UnmaskingRequests."""
        return self.completes or self.abort_code in (
            AbortReason.MISSING_SELF_MASK_SHARES,
            AbortReason.MISSING_MASK_KEY_SHARES,
        )


def predict(
    cfg: RoundConfig,
    nbrs: Mapping[int, frozenset[int]] | None,
    leave: Mapping[int, int],
) -> Prediction:
    """The outcome of a round with an honest server, given ``leave`` (module docstring).

    ``nbrs``: the graph of the round.  SecAgg+ (v2) fixes it from the graph-seed
    reveals of ``U1``, so it is known only once they are in; it is not read before
    the model has passed that step (``None`` is fine for a round that aborts there).
    """
    t, clients = cfg.threshold, cfg.clients
    malicious = cfg.security is SecurityMode.MALICIOUS
    plus = cfg.protocol is ProtocolKind.SECAGG_PLUS
    short: set[int] = set()

    def abort(code: AbortReason) -> Prediction:
        return Prediction(False, (), frozenset(short), code)

    u1 = {u for u in clients if leave[u] >= 1}
    if len(u1) < t + 1:
        return abort(AbortReason.TOO_FEW_KEYS)
    if plus and any(leave[u] < 2 for u in u1):  # every client of U1 must reveal
        return abort(AbortReason.SEED_REVEAL_MISSING)
    assert nbrs is not None, "the graph is needed past the graph-seed step"

    def thin(s: set[int], who: set[int]) -> set[int]:
        bad = {u for u in who if len(nbrs[u] & s) < t}
        short.update(bad)
        return bad

    u2 = {u for u in u1 if leave[u] >= 3} - thin(u1, {u for u in u1 if leave[u] >= 3})
    if len(u2) < t + 1:
        return abort(AbortReason.TOO_FEW_SHARES)
    u3 = {u for u in u2 if leave[u] >= 4} - thin(u2, {u for u in u2 if leave[u] >= 4})
    if len(u3) < t + 1:
        return abort(AbortReason.TOO_FEW_MASKED_INPUTS)
    if thin(u3, {u for u in u3 if leave[u] >= 4}):  # a self mask cannot be recovered
        return abort(AbortReason.SELF_MASK_UNRECOVERABLE)
    masked_with = set().union(*(nbrs[u] & u2 for u in u3))
    dropped = (u2 - u3) & masked_with
    if any(len(nbrs[v] & u3) < t for v in dropped):  # a dropped client's masks neither
        return abort(AbortReason.DROPPED_MASKS_UNRECOVERABLE)
    u4 = {u for u in u3 if leave[u] >= (5 if malicious else 4)}
    if malicious and len(u4) < cfg.signature_threshold:
        return abort(AbortReason.TOO_FEW_SIGNATURES)
    u5 = {u for u in u4 if leave[u] >= NEVER}
    if any(len(nbrs[v] & u5) < t for v in u3):
        return abort(AbortReason.MISSING_SELF_MASK_SHARES)
    if any(len(nbrs[v] & u5) < t for v in dropped):
        return abort(AbortReason.MISSING_MASK_KEY_SHARES)
    return Prediction(True, tuple(sorted(u3)), frozenset(short))
