"""The runtime's names for the phases of a round — the ONE place they are spelled.

Everything above the protocol cores (driver, pools, simulation, CLI, JSON) names a
phase with :class:`Phase`.  The mapping from a core's server state to the phase
whose client messages it is collecting lives here too (:func:`collecting_phase`),
so when the cores grow one shared phase enum only this module changes.
"""

from __future__ import annotations

import enum

from secagg.he.server import ServerPhase as HEServerPhase
from secagg.lightsecagg.server import ServerPhase as LightServerPhase
from secagg.masking.phase import Phase as MaskingPhase

__all__ = ["Phase", "collecting_phase"]


class Phase(enum.Enum):
    """The client-visible phases of a round, in protocol order.

    A client that *drops before* a phase takes part in no phase from it on.  HE
    rounds have one client phase, the upload, which is :attr:`MASKED_INPUT` (the
    phase in which a client's input reaches the server in every scheme).
    """

    ADVERTISE_KEYS = "advertise-keys"
    GRAPH_SEED = "graph-seed"  #: SecAgg+ (protocol v2): seed reveals, second step of round 0
    SHARE_KEYS = "share-keys"
    MASKED_INPUT = "masked-input"
    CONSISTENCY = "consistency"
    UNMASKING = "unmasking"

    @property
    def order(self) -> int:
        return _ORDER[self]

    @property
    def key(self) -> str:
        """The spelling used as a JSON / statistics key (``masked_input``)."""
        return self.value.replace("-", "_")


_ORDER = {p: i for i, p in enumerate(Phase)}

#: secagg.masking's one phase enum -> the runtime's client-visible phase.  Protocol
#: v2's SecAgg+ graph-seed step comes before share-keys: a client that advertised
#: keys reveals its seed contribution even if it drops before share-keys.
_MASKING: dict[MaskingPhase, Phase] = {
    MaskingPhase.ADVERTISE_KEYS: Phase.ADVERTISE_KEYS,
    MaskingPhase.GRAPH_SEED: Phase.GRAPH_SEED,
    MaskingPhase.SHARE_KEYS: Phase.SHARE_KEYS,
    MaskingPhase.MASKED_INPUT: Phase.MASKED_INPUT,
    MaskingPhase.CONSISTENCY_CHECK: Phase.CONSISTENCY,
    MaskingPhase.UNMASKING: Phase.UNMASKING,
}
_HE: dict[HEServerPhase, Phase] = {HEServerPhase.COLLECTING: Phase.MASKED_INPUT}
#: LightSecAgg: keys, coded shares, masked inputs, aggregate-mask responses (no
#: consistency phase: the protocol is semi-honest).
_LIGHT: dict[LightServerPhase, Phase] = {
    LightServerPhase.COLLECT_KEYS: Phase.ADVERTISE_KEYS,
    LightServerPhase.COLLECT_SHARES: Phase.SHARE_KEYS,
    LightServerPhase.COLLECT_MASKED: Phase.MASKED_INPUT,
    LightServerPhase.COLLECT_UNMASK: Phase.UNMASKING,
}


def collecting_phase(
    server_phase: MaskingPhase | HEServerPhase | LightServerPhase,
) -> Phase | None:
    """The phase whose client messages a server in ``server_phase`` waits for
    (``None``: it waits for no client — finalizing, completed or aborted)."""
    if isinstance(server_phase, MaskingPhase):
        return _MASKING.get(server_phase)
    if isinstance(server_phase, LightServerPhase):
        return _LIGHT.get(server_phase)
    return _HE.get(server_phase)
