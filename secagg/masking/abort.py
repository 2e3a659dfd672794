"""Why a party of a SecAgg / SecAgg+ round aborted, as a value (``protocols/secagg.md`` §5).

A leaf module (imported by the messages, whose Abort carries the code as ``u8``, and
by both state machines).
"""

from __future__ import annotations

import enum

from secagg.errors import RemoteProtocolError

__all__ = ["AbortReason", "Violation"]


class AbortReason(enum.IntEnum):
    """Why a party aborted (``u8`` code on the wire in an Abort message)."""

    # -- server: a threshold can no longer be met ----------------------------------
    TOO_FEW_KEYS = 1  #: |U1| < t + 1
    TOO_FEW_SHARES = 2  #: |U2| < t + 1
    TOO_FEW_MASKED_INPUTS = 3  #: |U3| < t + 1
    SELF_MASK_UNRECOVERABLE = 4  #: a survivor has < t surviving holders
    DROPPED_MASKS_UNRECOVERABLE = 5  #: a dropped client masked with has < t holders
    TOO_FEW_SIGNATURES = 6  #: |U4| < t_sig
    MISSING_SELF_MASK_SHARES = 7  #: < t b-shares of a survivor after unmasking
    MISSING_MASK_KEY_SHARES = 8  #: < t s-shares of a needed dropped client
    RECONSTRUCTION_FAILED = 9  #: a rebuilt secret failed its check (a holder lied)
    SEED_REVEAL_MISSING = 10  #: SecAgg+: a client of U1 did not reveal its graph-seed part
    # -- client ----------------------------------------------------------------------
    SERVER_ABORTED = 32  #: the server sent Abort
    UNEXPECTED_MESSAGE = 33  #: a server message that does not fit the phase
    NOT_A_NEIGHBOR = 34  #: a key entry or box from outside N(u) ∩ U1
    TOO_FEW_NEIGHBORS = 35  #: fewer than t entries, boxes or surviving neighbors
    DUPLICATE_KEY = 36  #: a public key repeated in KeysBroadcast
    BAD_SIGNATURE = 37  #: a signature that does not verify, or one where none belongs
    BAD_SHARE_BOX = 38  #: a share box that does not open or names other parties
    BAD_SURVIVOR_SET = 39  #: survivors/dropped malformed, overlapping or unregistered
    TOO_FEW_SURVIVORS = 40  #: fewer than t survivors claimed
    SURVIVORS_CHANGED = 41  #: U3 differs from the set signed in round 3
    TOO_FEW_SIGNERS = 42  #: fewer than t_sig consistency signatures
    INVALID_VALUE = 43  #: a value a primitive refused (e.g. a low-order key)
    BAD_SEED = 44  #: SecAgg+: a seed request or reveal that does not fit U1's commitments


class Violation(RemoteProtocolError):
    """A peer broke the protocol; ``code`` says how (raised by the state machines)."""

    def __init__(self, code: AbortReason, message: str) -> None:
        super().__init__(message)
        self.code = code
