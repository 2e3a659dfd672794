"""The ONE phase vocabulary of a round, for every protocol and every layer.

Rules of this file:

* :class:`Phase` names a round's phases once.  The masking client and server
  (SecAgg, SecAgg+), the LightSecAgg client and server, the HE server, the runtime
  driver and its pools, the simulations, the CLI and the JSON reports all use it;
  no other phase enum exists in ``secagg`` (a test greps for one).
* A party is *in* phase ``P`` while round ``P`` is open for it: a client from the
  moment it may send that round's message until the server's message that closes
  the round arrives; a server while it collects that round's client messages
  (``server.collecting`` is then ``P``).  ``INIT`` (a client that has not started)
  and ``FINALIZING`` (a server whose client input is all in) belong to one party
  each; ``COMPLETED`` and ``ABORTED`` are terminal.
* Schemes use the subset they have: SecAgg has no ``GRAPH_SEED``; semi-honest
  rounds and LightSecAgg no ``CONSISTENCY``; an HE round has one client phase, the
  upload, which is ``MASKED_INPUT`` (the phase in which a client's input reaches
  the server in every scheme).
* ``Phase.value`` is the spelling on the CLI (``--drop-before consistency``) and in
  human output; :attr:`Phase.key` (``masked_input``) the spelling of JSON keys.
* The transition tables are data and live with the protocol that owns them
  (:mod:`secagg.masking.phase`, :mod:`secagg.lightsecagg.client`,
  :mod:`secagg.lightsecagg.server`).

This module imports nothing from ``secagg``: it is the floor below every protocol
core.  Normative description: ``protocols/secagg.md`` §4–5.
"""

from __future__ import annotations

import enum

__all__ = ["ROUND_PHASES", "TERMINAL", "Phase"]


class Phase(enum.Enum):
    """The phases of one round, in protocol order (client and server)."""

    INIT = "init"  #: client only: nothing sent yet
    ADVERTISE_KEYS = "advertise-keys"  #: round 0
    GRAPH_SEED = "graph-seed"  #: round 0, second step (SecAgg+): seed commit-reveal
    SHARE_KEYS = "share-keys"  #: round 1
    MASKED_INPUT = "masked-input"  #: round 2 (HE: the upload)
    CONSISTENCY = "consistency"  #: round 3, ConsistencyCheck (malicious mode only)
    UNMASKING = "unmasking"  #: round 4 (server; a client answers and completes)
    FINALIZING = "finalizing"  #: server only: all client input in, result not yet computed
    COMPLETED = "completed"  #: terminal
    ABORTED = "aborted"  #: terminal; nothing more is sent

    @property
    def round(self) -> int | None:
        """The protocol round (0–4) of this phase, ``None`` outside a round."""
        return _ROUND.get(self)

    @property
    def order(self) -> int:
        """Position in protocol order (``INIT`` 0 … ``ABORTED`` last)."""
        return _ORDER[self]

    @property
    def key(self) -> str:
        """The spelling used as a JSON / statistics key (``masked_input``)."""
        return self.value.replace("-", "_")


_ROUND = {
    Phase.ADVERTISE_KEYS: 0,
    Phase.GRAPH_SEED: 0,
    Phase.SHARE_KEYS: 1,
    Phase.MASKED_INPUT: 2,
    Phase.CONSISTENCY: 3,
    Phase.UNMASKING: 4,
}
_ORDER = {p: i for i, p in enumerate(Phase)}

#: The phases in which a server collects client messages, in protocol order: the
#: phases a client can drop before, and the keys of per-phase statistics.
ROUND_PHASES: tuple[Phase, ...] = tuple(_ROUND)

#: A party in one of these sends and accepts nothing more (but an Abort).
TERMINAL = frozenset({Phase.COMPLETED, Phase.ABORTED})
