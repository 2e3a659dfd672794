"""The state graph of a SecAgg / SecAgg+ round as data, and the abort reasons.

Rules of this file:

* The phases are the project's one :class:`~secagg.phase.Phase` (re-exported
  here); this file only says how a SecAgg / SecAgg+ round moves through them.
* :data:`CLIENT_TRANSITIONS` and :data:`SERVER_TRANSITIONS` map ``(phase, message
  type)`` to the handler *and* the next phase, per security mode;
  :data:`SERVER_CLOSES` maps a phase to what closes it and the phase after it.  A
  pair that is not in a table is a protocol violation (client: ``ABORTED``;
  server: the message is refused and nothing changes).  Any handler or closer may
  instead end in ``ABORTED``.
* :class:`AbortReason` says why a party ended in ``ABORTED``, as a value
  (``Client.abort_code``, ``Server.abort_code``, and the code carried by the Abort
  message, ``protocols/wire/secagg.md``).

Normative description: ``protocols/secagg.md`` §4–5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.messages import MessageType
from secagg.phase import TERMINAL, Phase

__all__ = [
    "CLIENT_TRANSITIONS",
    "KINDS",
    "SERVER_CLOSES",
    "SERVER_TRANSITIONS",
    "TERMINAL",
    "AbortReason",
    "Close",
    "Kind",
    "Phase",
    "Transition",
]


@dataclass(frozen=True, slots=True)
class Transition:
    """What a message does in a phase: the handler method and the phase after it."""

    handler: str
    next: Phase


@dataclass(frozen=True, slots=True)
class Close:
    """What closes a server phase (all answered or deadline) and the phase after it."""

    closer: str
    next: Phase


_T = MessageType


#: Which table: the graph kind (SecAgg+ adds the graph-seed step) and the threat model.
Kind = tuple[ProtocolKind, SecurityMode]
KINDS: tuple[Kind, ...] = tuple((p, s) for p in ProtocolKind for s in SecurityMode)


def _client_table(kind: Kind) -> Mapping[tuple[Phase, MessageType], Transition]:
    protocol, mode = kind
    malicious = mode is SecurityMode.MALICIOUS
    table: dict[tuple[Phase, MessageType], Transition] = {}
    if protocol is ProtocolKind.SECAGG_PLUS:
        table[(Phase.ADVERTISE_KEYS, _T.SEED_REQUEST)] = Transition(
            "_on_seed_request", Phase.GRAPH_SEED
        )
        table[(Phase.GRAPH_SEED, _T.KEYS_BROADCAST)] = Transition("_on_keys", Phase.SHARE_KEYS)
    else:
        table[(Phase.ADVERTISE_KEYS, _T.KEYS_BROADCAST)] = Transition("_on_keys", Phase.SHARE_KEYS)
    table[(Phase.SHARE_KEYS, _T.MASKED_INPUT_REQUEST)] = Transition("_on_boxes", Phase.MASKED_INPUT)
    if malicious:
        table[(Phase.MASKED_INPUT, _T.CONSISTENCY_REQUEST)] = Transition(
            "_on_consistency", Phase.CONSISTENCY
        )
        table[(Phase.CONSISTENCY, _T.UNMASKING_REQUEST)] = Transition(
            "_on_unmasking", Phase.COMPLETED
        )
    else:
        table[(Phase.MASKED_INPUT, _T.UNMASKING_REQUEST)] = Transition(
            "_on_unmasking", Phase.COMPLETED
        )
    open_phases = [Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT]
    if protocol is ProtocolKind.SECAGG_PLUS:
        open_phases.append(Phase.GRAPH_SEED)
    if malicious:
        open_phases.append(Phase.CONSISTENCY)
    for p in open_phases:
        table[(p, _T.ABORT)] = Transition("_on_abort", Phase.ABORTED)
    return MappingProxyType(table)


def _server_table(kind: Kind) -> Mapping[tuple[Phase, MessageType], Transition]:
    protocol, mode = kind
    table = {
        (Phase.ADVERTISE_KEYS, _T.ADVERTISE_KEYS): Transition(
            "_on_advertise", Phase.ADVERTISE_KEYS
        ),
        (Phase.SHARE_KEYS, _T.SHARE_KEYS): Transition("_on_share_keys", Phase.SHARE_KEYS),
        (Phase.MASKED_INPUT, _T.MASKED_INPUT): Transition("_on_masked_input", Phase.MASKED_INPUT),
        (Phase.UNMASKING, _T.UNMASKING_RESPONSE): Transition("_on_unmasking", Phase.UNMASKING),
    }
    if mode is SecurityMode.MALICIOUS:
        table[(Phase.CONSISTENCY, _T.CONSISTENCY_SIGNATURE)] = Transition(
            "_on_signature", Phase.CONSISTENCY
        )
    if protocol is ProtocolKind.SECAGG_PLUS:
        table[(Phase.GRAPH_SEED, _T.SEED_REVEAL)] = Transition("_on_seed_reveal", Phase.GRAPH_SEED)
    return MappingProxyType(table)


def _server_closes(kind: Kind) -> Mapping[Phase, Close]:
    protocol, mode = kind
    malicious = mode is SecurityMode.MALICIOUS
    plus = protocol is ProtocolKind.SECAGG_PLUS
    table = {
        Phase.ADVERTISE_KEYS: Close("_close_keys", Phase.GRAPH_SEED if plus else Phase.SHARE_KEYS),
        Phase.SHARE_KEYS: Close("_close_shares", Phase.MASKED_INPUT),
        Phase.MASKED_INPUT: Close(
            "_close_masked", Phase.CONSISTENCY if malicious else Phase.UNMASKING
        ),
        Phase.UNMASKING: Close("_close_unmasking", Phase.FINALIZING),
    }
    if malicious:
        table[Phase.CONSISTENCY] = Close("_close_signatures", Phase.UNMASKING)
    if plus:
        table[Phase.GRAPH_SEED] = Close("_close_seed", Phase.SHARE_KEYS)
    return MappingProxyType(table)


#: Client: (protocol, mode) -> (phase, server message type) -> handler and next phase.
CLIENT_TRANSITIONS: Mapping[Kind, Mapping[tuple[Phase, MessageType], Transition]] = (
    MappingProxyType({k: _client_table(k) for k in KINDS})
)
#: Server: (protocol, mode) -> (phase, client message type) -> handler and (unchanged) phase.
SERVER_TRANSITIONS: Mapping[Kind, Mapping[tuple[Phase, MessageType], Transition]] = (
    MappingProxyType({k: _server_table(k) for k in KINDS})
)
#: Server: (protocol, mode) -> phase -> what closes it and the next phase
#: (``finalize()`` then takes FINALIZING to COMPLETED).
SERVER_CLOSES: Mapping[Kind, Mapping[Phase, Close]] = MappingProxyType(
    {k: _server_closes(k) for k in KINDS}
)
