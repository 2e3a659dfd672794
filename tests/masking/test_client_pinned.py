"""What a client says when it refuses a server message, exactly (issue 20, mutation triage).

``test_malicious_server.py`` checks *that* the targeted clients refuse; a client's
owner reads *why*: the abort code, the reason and the text of the error raised.
Each case rewrites one server message to one client and pins all three.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from secagg.errors import CryptoError, DecodeError, ParameterError, RemoteProtocolError
from secagg.masking import client as client_module
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
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
    "duplicated-key-of-an-earlier-entry": (  # a later entry repeats an earlier one's c_pk
        m.KeysBroadcast,
        lambda r: dataclasses.replace(
            r,
            entries=(
                r.entries[0],
                dataclasses.replace(r.entries[1], s_pk=r.entries[0].c_pk),
                *r.entries[2:],
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


SEMI_HONEST_EXTRA = {
    "low-order-key": (
        m.KeysBroadcast,
        lambda r: dataclasses.replace(
            r, entries=(dataclasses.replace(r.entries[0], c_pk=bytes(32)), *r.entries[1:])
        ),
        AbortReason.INVALID_VALUE,
        "low-order public key",
    ),
    "signatures-in-semi-honest-unmasking": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, signatures=((1, bytes(64)),)),
        AbortReason.BAD_SIGNATURE,
        "consistency signatures in a semi-honest round",
    ),
}


SECAGG_PLUS_CASES = {
    "signed-reveals-in-semi-honest": (
        m.KeysBroadcast,
        lambda r: dataclasses.replace(
            r, reveals=tuple(dataclasses.replace(x, signature=bytes(64)) for x in r.reveals)
        ),
        AbortReason.BAD_SIGNATURE,
        "signature in a semi-honest round",
    ),
    "u1-below-threshold": (
        m.SeedRequest,
        lambda r: dataclasses.replace(
            r, commitments=tuple(x for x in r.commitments if x[0] in (1, VICTIM))
        ),
        AbortReason.TOO_FEW_NEIGHBORS,
        "only 2 clients in U1; threshold is 3",
    ),
}


@pytest.mark.parametrize("case", sorted(SECAGG_PLUS_CASES))
def test_a_refused_graph_seed_message_gives_its_code_and_reason(case):
    target, change, code, reason = SECAGG_PLUS_CASES[case]
    h = Harness.make(7, threshold=3, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)
    assert _refusal(h, target, change) == (code, reason, reason)


def test_a_share_box_that_does_not_open_aborts_with_the_aead_error_as_reason():
    h = Harness.make(7, threshold=4)

    def spoil(r):
        (v, box), *rest = r.boxes
        return dataclasses.replace(r, boxes=((v, bytes(len(box))), *rest))

    h.drive(
        rewrite=lambda u, msg: (
            spoil(msg) if u == VICTIM and isinstance(msg, m.MaskedInputRequest) else msg
        )
    )
    c, err = h.clients[VICTIM], h.errors[VICTIM]
    assert isinstance(err, CryptoError) and c.phase is Phase.ABORTED
    assert (c.abort_code, c.abort_reason) == (AbortReason.BAD_SHARE_BOX, str(err))
    assert str(err) == "cryptographic verification failed"


def _started(n: int = 5) -> tuple[Harness, Client]:
    h = Harness.make(n, threshold=3)
    c = h.clients[VICTIM]
    c.start()
    return h, c


def test_a_message_not_from_the_server_to_me_is_refused_and_changes_nothing():
    h, c = _started()
    sid = h.config.session_id
    phase = c.phase
    for msg in (
        m.UnmaskingRequest(
            session_id=sid,
            sender=m.SERVER_ID,
            recipient=VICTIM + 1,
            survivors=(1, 2, 3),
            dropped=(),
        ),  # from the server, to another client
        m.SeedReveal(session_id=sid, sender=VICTIM + 1, recipient=m.SERVER_ID, reveal=bytes(32)),
    ):
        with pytest.raises(DecodeError, match=r"^message is not from the server to this client$"):
            c.handle(msg)
        assert (c.phase, c.abort_code, c.abort_reason) == (phase, None, None)


def test_a_message_of_another_phase_aborts_naming_it_and_the_phase():
    h, c = _started()
    phase = c.phase
    msg = m.UnmaskingRequest(
        session_id=h.config.session_id,
        sender=m.SERVER_ID,
        recipient=VICTIM,
        survivors=(1, 2, 3),
        dropped=(),
    )
    reason = f"UnmaskingRequest does not fit phase {phase.value}"
    with pytest.raises(RemoteProtocolError, match=f"^{reason}$"):
        c.handle(msg)
    assert (c.phase, c.abort_code, c.abort_reason) == (
        Phase.ABORTED,
        AbortReason.UNEXPECTED_MESSAGE,
        reason,
    )


@pytest.mark.parametrize(
    "raised", [ParameterError("a primitive refused this"), DecodeError("a nested decode failed")]
)
def test_an_error_a_handler_does_not_name_aborts_as_an_invalid_value(monkeypatch, raised):
    """handle()'s mapping for errors raised below the state machine: a primitive's
    ParameterError (a hostile value) or a non-Violation RemoteProtocolError both abort
    with INVALID_VALUE and their text, and reach the caller as RemoteProtocolError."""
    h = Harness.make(5, threshold=3)

    def refuse(*args, **kwargs):
        raise raised

    monkeypatch.setattr(client_module._plane, "share_keys", refuse)
    h.drive()
    c, err = h.clients[VICTIM], h.errors[VICTIM]
    assert isinstance(err, RemoteProtocolError) and str(err) == str(raised)
    assert (c.phase, c.abort_code, c.abort_reason) == (
        Phase.ABORTED,
        AbortReason.INVALID_VALUE,
        str(raised),
    )


def test_an_input_out_of_range_names_the_ways_to_encode_floats():
    h = Harness.make(5, threshold=3)
    bad = np.full(h.config.length, 1 << h.config.bits, dtype=np.uint32)
    with pytest.raises(ParameterError) as info:
        Client(config=h.config, client_id=VICTIM, input_vector=bad)
    assert str(info.value).endswith(
        "; encode float updates with QuantizationSpec.quantize "
        "or the scheme API (secagg.runtime.schemes.MaskedClientHalf.encode)"
    )


@pytest.mark.parametrize("bad", [16.0, "16", None, True])
def test_masked_input_chunks_refuse_a_chunk_size_that_is_not_an_int(bad):
    h = Harness.make(5, threshold=3)
    h.drive(stop=Phase.MASKED_INPUT, hold=VICTIM)
    c = h.clients[VICTIM]
    assert next(c.masked_input_chunks(8)).shape == (6,)  # the masks are known
    with pytest.raises(ParameterError, match=r"^chunk_elements must be a positive multiple of 8$"):
        c.masked_input_chunks(bad)


# survivors of a third sample (seed 25), drawn after the seed-24 triage
SEED_25_CASES = {
    "own-entry": (
        m.KeysBroadcast,
        lambda r: dataclasses.replace(
            r,
            entries=tuple(
                sorted(
                    [
                        *(e for e in r.entries if e.owner != VICTIM),
                        dataclasses.replace(r.entries[0], owner=VICTIM),
                    ],
                    key=lambda e: e.owner,
                )
            ),
        ),
        AbortReason.NOT_A_NEIGHBOR,
        "KeysBroadcast lists a client that is not my neighbor",
    ),
    "boxes-below-threshold": (
        m.MaskedInputRequest,
        lambda r: dataclasses.replace(r, boxes=r.boxes[:2]),
        AbortReason.TOO_FEW_NEIGHBORS,
        "only 2 neighbors shared keys; threshold is 4",
    ),
    "unregistered-survivor": (
        m.UnmaskingRequest,
        lambda r: dataclasses.replace(r, survivors=(*r.survivors, 99)),
        AbortReason.BAD_SURVIVOR_SET,
        "survivor set names unregistered clients",
    ),
}


MORE_CASES = {**SEMI_HONEST_EXTRA, **SEED_25_CASES}


@pytest.mark.parametrize("case", sorted(MORE_CASES))
def test_more_refused_server_messages_give_their_code_and_reason(case):
    """Hostile values (a low-order key, signatures in a semi-honest round) and the
    refusals found by the seed-25 sample, as in the first table."""
    target, change, code, reason = MORE_CASES[case]
    h = Harness.make(7, threshold=4)
    assert _refusal(h, target, change) == (code, reason, reason)


def test_too_few_consistency_signatures_abort_with_too_few_signers():
    h = Harness.make(7, threshold=4, security=SecurityMode.MALICIOUS)
    t_sig = h.config.signature_threshold

    def fewer(r):
        return dataclasses.replace(r, signatures=r.signatures[: t_sig - 1])

    reason = f"only {t_sig - 1} consistency signatures; need {t_sig}"
    assert _refusal(h, m.UnmaskingRequest, fewer) == (AbortReason.TOO_FEW_SIGNERS, reason, reason)


def test_a_seed_request_naming_an_id_above_every_registered_one_is_refused():
    h = Harness.make(7, threshold=3, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)

    def stranger(r):
        return dataclasses.replace(r, commitments=(*r.commitments, (99, bytes(32))))

    reason = "seed request names unregistered clients"
    assert _refusal(h, m.SeedRequest, stranger) == (AbortReason.BAD_SEED, reason, reason)


# survivors of a fourth sample (seed 26), drawn after the seed-25 triage
def test_a_server_abort_is_kept_as_the_code_and_the_reason_with_the_servers_words():
    h, c = _started()
    assert c.handle(
        m.Abort(
            session_id=h.config.session_id,
            sender=m.SERVER_ID,
            recipient=VICTIM,
            code=AbortReason.TOO_FEW_KEYS,
            reason="only 2 clients advertised keys",
        )
    ) == []
    assert (c.phase, c.abort_code, c.abort_reason) == (
        Phase.ABORTED,
        AbortReason.SERVER_ABORTED,
        "server aborted the round (TOO_FEW_KEYS): only 2 clients advertised keys",
    )


def test_reveals_that_leave_out_a_member_of_u1_are_refused_naming_u1():
    h = Harness.make(7, threshold=3, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)

    def drop_one(r):
        return dataclasses.replace(r, reveals=r.reveals[1:])

    reason = "reveals do not cover exactly U1"
    assert _refusal(h, m.KeysBroadcast, drop_one) == (AbortReason.BAD_SEED, reason, reason)


def test_a_malicious_round_client_without_its_registered_identity_key_is_refused():
    h = Harness.make(5, threshold=3, security=SecurityMode.MALICIOUS)
    x = np.zeros(h.config.length, dtype=np.uint32)
    reason = r"^malicious mode needs this client's registered identity key$"
    for key in (None, h.idkeys[VICTIM + 1]):  # none, or another client's
        with pytest.raises(ParameterError, match=reason):
            Client(config=h.config, client_id=VICTIM, input_vector=x, identity_key=key)
    Client(config=h.config, client_id=VICTIM, input_vector=x, identity_key=h.idkeys[VICTIM])


def _first_entry(**change):
    """A KeysBroadcast rewrite: the first key entry with ``change`` applied."""
    def spoil(r):
        return dataclasses.replace(
            r, entries=(dataclasses.replace(r.entries[0], **change), *r.entries[1:])
        )
    return spoil


def test_a_low_order_masking_key_aborts_when_the_masks_are_derived():
    """A low-order ``s_pk`` passes the key-sharing step (only ``c_pk`` is used there)
    and is refused when the pairwise masks are agreed, with its code."""
    h = Harness.make(7, threshold=4)
    reason = "low-order public key"
    assert _refusal(h, m.KeysBroadcast, _first_entry(s_pk=bytes(32))) == (
        AbortReason.INVALID_VALUE, reason, reason)
    assert m.MessageType.MASKED_INPUT not in h.sent_types(VICTIM)


# survivors of a fifth sample (seed 27), drawn after the seed-26 triage
def test_a_client_refuses_a_policy_that_is_not_a_client_policy_in_words():
    h = Harness.make(5, threshold=3)
    x = np.zeros(h.config.length, dtype=np.uint32)
    with pytest.raises(ParameterError, match=r"^policy must be a ClientPolicy$"):
        Client(config=h.config, client_id=VICTIM, input_vector=x, policy="strict")


def test_a_signed_key_entry_in_a_semi_honest_round_is_refused_with_its_code():
    h = Harness.make(7, threshold=4)
    reason = "signature in a semi-honest round"
    assert _refusal(h, m.KeysBroadcast, _first_entry(signature=bytes(64))) == (
        AbortReason.BAD_SIGNATURE, reason, reason)


def test_a_key_entry_with_another_seed_commitment_is_refused_as_a_bad_seed():
    h = Harness.make(7, threshold=3, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)

    def other_g(r):
        first = dataclasses.replace(r.entries[0], seed_commitment=bytes(32))
        return dataclasses.replace(r, entries=(first, *r.entries[1:]))

    reason = "key entry with another seed commitment"
    assert _refusal(h, m.KeysBroadcast, other_g) == (AbortReason.BAD_SEED, reason, reason)


def test_a_client_refuses_a_config_or_input_it_cannot_use_in_words():
    h = Harness.make(5, threshold=3)
    x = np.zeros(h.config.length, dtype=np.uint32)
    with pytest.raises(ParameterError) as info:
        Client(config="a config", client_id=VICTIM, input_vector=x)  # type: ignore[arg-type]
    assert str(info.value) == "config must be a RoundConfig"
    strided = np.zeros(2 * h.config.length, dtype=np.uint32)[::2]
    with pytest.raises(ParameterError) as info:
        Client(config=h.config, client_id=VICTIM, input_vector=strided)
    assert str(info.value) == "input must be C-contiguous"
