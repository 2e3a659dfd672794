"""What a client says when it refuses a server message, exactly (issue 20, mutation triage).

``test_malicious_server.py`` checks *that* the targeted clients refuse; a client's
owner reads *why*: the abort code, the reason and the text of the error raised.
Each case rewrites one server message to one client and pins all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from secagg.errors import RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase

from .masking_harness import Harness

VICTIM = 2


def _refusal(
    h: Harness, target: type[m.Message], change: Callable[[m.Message], m.Message]
) -> tuple[AbortReason | None, str | None, str]:
    def rewrite(u: int, msg: m.Message) -> m.Message:
        return change(msg) if u == VICTIM and isinstance(msg, target) else msg

    h.drive(rewrite=rewrite)
    c = h.clients[VICTIM]
    err = h.errors[VICTIM]
    assert isinstance(err, RemoteProtocolError) and c.phase is Phase.ABORTED
    assert m.MessageType.UNMASKING_RESPONSE not in h.sent_types(VICTIM)
    return c.abort_code, c.abort_reason, str(err)


SEMI_HONEST_CASES = {
    "not-me": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(
            r,
            survivors=tuple(v for v in r.survivors if v != VICTIM),
            dropped=tuple(sorted((*r.dropped, VICTIM))),
        ),
        AbortReason.BAD_SURVIVOR_SET,
        "survivor set does not contain me",
    ),
    "both": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, dropped=tuple(sorted((*r.dropped, 5)))),
        AbortReason.BAD_SURVIVOR_SET,
        "a client is listed both as survivor and as dropped",
    ),
    "unregistered-dropped": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, dropped=(*r.dropped, 99)),
        AbortReason.BAD_SURVIVOR_SET,
        "dropped set names unregistered clients",
    ),
    "too-few-survivors": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, survivors=(1, VICTIM, 3), dropped=(4, 5, 6, 7)),
        AbortReason.TOO_FEW_SURVIVORS,
        "only 3 survivors; threshold is 4; refusing to unmask",
    ),
    "too-few-neighbors": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, survivors=(1, VICTIM, 3, 4), dropped=(5, 6, 7)),
        AbortReason.TOO_FEW_NEIGHBORS,
        "only 3 surviving neighbors; threshold is 4; refusing to unmask",
    ),
    "reveals-in-complete-graph": (
        m.KeysBroadcast,
        lambda r: dataclasses.replace(r, reveals=(m.Reveal(owner=1, reveal=bytes(32)),)),
        AbortReason.BAD_SEED,
        "graph-seed reveals in a complete-graph round",
    ),
    "duplicated-key": (
        m.KeysBroadcast,
        lambda r: dataclasses.replace(
            r,
            entries=(
                dataclasses.replace(r.entries[0], s_pk=r.entries[1].c_pk),
                *r.entries[1:],
            ),
        ),
        AbortReason.DUPLICATE_KEY,
        "duplicated public key in KeysBroadcast",
    ),
    "box-from-a-stranger": (
        m.MaskedInputRequest,
        lambda r: dataclasses.replace(r, boxes=(*r.boxes, (99, r.boxes[0][1]))),
        AbortReason.NOT_A_NEIGHBOR,
        "share box from a client that did not advertise keys to me",
    ),
}


@pytest.mark.parametrize("case", sorted(SEMI_HONEST_CASES))
def test_a_refused_server_message_gives_its_code_and_reason(case):
    target, change, code, reason = SEMI_HONEST_CASES[case]
    h = Harness.make(7, threshold=4)
    assert _refusal(h, target, change) == (code, reason, reason)


MALICIOUS_CASES = {
    "survivors-changed": (
        lambda r: dataclasses.replace(
            r, survivors=tuple(v for v in r.survivors if v != 7), dropped=(7,)
        ),
        AbortReason.SURVIVORS_CHANGED,
        "survivor set differs from the one I signed",
    ),
    "signature-of-a-non-survivor": (
        lambda r: dataclasses.replace(r, signatures=(*r.signatures, (99, bytes(64)))),
        AbortReason.BAD_SIGNATURE,
        "a consistency signature from a non-survivor",
    ),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS_CASES))
def test_a_refused_unmasking_request_in_a_malicious_round_gives_its_code_and_reason(case):
    change, code, reason = MALICIOUS_CASES[case]
    h = Harness.make(7, threshold=4, security=SecurityMode.MALICIOUS)
    assert _refusal(h, m.UnmaskingRequest, change) == (code, reason, reason)


def test_a_seed_request_with_my_commitment_under_another_id_is_refused():
    h = Harness.make(7, threshold=3, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)

    def move_mine(r):
        coms = dict(r.commitments)
        coms[VICTIM + 1] = coms.pop(VICTIM)  # my g listed as the next client's
        return dataclasses.replace(r, commitments=tuple(sorted(coms.items())))

    reason = "seed request without my seed commitment"
    assert _refusal(h, m.SeedRequest, move_mine) == (AbortReason.BAD_SEED, reason, reason)
