"""What the server says when it refuses or aborts, exactly (issue 20, mutation triage).

The round tests check *that* the server aborts or refuses; a caller (and every client
it notifies) also reads *why*: the typed error and its text, the abort code, the
reason, and who is told.  These tests pin them, and the server's public view after
the last phase.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import DecodeError, LocalProtocolError, ParameterError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking import server as server_module
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase
from secagg.primitives.field import P

from .masking_harness import Harness

ABORTS = {
    # drops -> (code, reason, clients told); n = 5, t = 3 (t_sig = 3)
    "keys": ({1: 0, 2: 0}, AbortReason.TOO_FEW_KEYS, "only 3 clients advertised keys (t=3)"),
    "shares": ({1: 1, 2: 1}, AbortReason.TOO_FEW_SHARES, "only 3 clients shared keys (t=3)"),
    "masked": ({1: 2, 2: 2}, AbortReason.TOO_FEW_MASKED_INPUTS, "only 3 masked inputs (t=3)"),
    "self-mask-shares": (
        {1: 4, 2: 4},
        AbortReason.MISSING_SELF_MASK_SHARES,
        "too few shares to remove client 3's self mask",
    ),
}


def _abort_of(s: server_module.Server) -> tuple[Phase, AbortReason | None, str | None]:
    return s.phase, s.abort_code, s.abort_reason


def _aborts_received(h: Harness) -> dict[int, list[tuple[AbortReason, str]]]:
    got = {
        u: [(x.code, x.reason) for x in h.received.get(u, []) if isinstance(x, m.Abort)]
        for u in h.config.clients
    }
    return {u: a for u, a in got.items() if a}


@pytest.mark.parametrize("case", sorted(ABORTS))
def test_an_abort_gives_its_code_and_reason_to_the_clients_still_in(case):
    drops, code, reason = ABORTS[case]
    h = Harness.make(5, threshold=3)
    h.drive(drops=drops)
    s = h.server
    assert _abort_of(s) == (Phase.ABORTED, code, reason)
    assert s.result is None and s.awaiting == frozenset() and s.collecting is None
    # the clients that answered the last round are told, and no one else
    assert _aborts_received(h) == {u: [(code, reason)] for u in (3, 4, 5)}


def test_too_few_consistency_signatures_aborts_in_words():
    h = Harness.make(5, threshold=3, security=SecurityMode.MALICIOUS)
    assert h.config.signature_threshold == 3
    h.drive(drops={1: 3, 2: 3, 3: 3})
    s = h.server
    reason = "only 2 consistency signatures (need 3)"
    assert _abort_of(s) == (Phase.ABORTED, AbortReason.TOO_FEW_SIGNATURES, reason)
    assert _aborts_received(h) == {u: [(AbortReason.TOO_FEW_SIGNATURES, reason)] for u in (4, 5)}


def test_a_lying_share_holder_aborts_the_round_in_words():
    h = Harness.make(5, threshold=3)
    held = h.drive(stop=Phase.UNMASKING, hold=1)
    assert isinstance(held, m.UnmaskingResponse) and h.server.phase is Phase.UNMASKING
    (owner, kind, y), *rest = held.shares
    lie = dataclasses.replace(held, shares=((owner, kind, (y + 1) % P), *rest))
    assert h.server.handle(1, lie)[0][0] == 1  # every reply is in: the round closes
    s = h.server
    reason = "a reconstructed secret failed its check (a holder lied)"
    assert _abort_of(s) == (Phase.ABORTED, AbortReason.RECONSTRUCTION_FAILED, reason)
    assert s.result is None and s.mask_jobs == ()


def test_messages_that_do_not_fit_are_refused_in_words_and_change_nothing():
    h = Harness.make(4, threshold=2)
    s = h.server
    adv = h.clients[1].start()
    before = (s.phase, s.sets, s.awaiting)
    other = dataclasses.replace(adv, session_id=bytes(32))
    with pytest.raises(DecodeError, match=r"^message from another session$"):
        s.handle(1, other)
    with pytest.raises(DecodeError, match=r"^header does not match the transport sender$"):
        s.handle(2, adv)  # (a message to a client is refused by its constructor)
    assert (s.phase, s.sets, s.awaiting) == before
    assert s.handle(1, adv) == []
    with pytest.raises(RemoteProtocolError) as info:
        s.handle(1, adv)
    assert str(info.value) == "client 1 is not expected now (duplicate or dropped)"
    reveal = m.SeedReveal(session_id=s.config.session_id, sender=2, recipient=0, reveal=bytes(32))
    with pytest.raises(RemoteProtocolError) as info:
        s.handle(2, reveal)
    assert str(info.value) == "SeedReveal does not fit phase advertise-keys; ignored"


def test_share_boxes_to_the_wrong_owners_are_refused_in_words():
    h = Harness.make(4, threshold=2)
    held = h.drive(stop=Phase.SHARE_KEYS, hold=2)
    assert isinstance(held, m.ShareKeys)
    wrong = dataclasses.replace(held, boxes=held.boxes[:-1])
    with pytest.raises(RemoteProtocolError) as info:
        h.server.handle(2, wrong)
    assert str(info.value) == "share boxes must go to exactly N(u) ∩ U1"
    assert 2 in h.server.awaiting


def test_the_view_after_the_last_phase():
    h = Harness.make(5, threshold=3)
    h.drive(drops={5: 2}, finalize=False)
    s = h.server
    assert s.phase is Phase.FINALIZING and s.collecting is None
    assert s.awaiting == frozenset()
    assert s.running_sum_bytes == 6 * 4  # six uint32 elements (bits = 16)
    assert len(s.mask_jobs) == 4 + 4  # 4 self masks + 4 survivors masked with client 5
    total = s.finalize()
    np.testing.assert_array_equal(total, h.expected_sum((1, 2, 3, 4)))
    assert s.phase is Phase.COMPLETED and s.result is total
    assert s.running_sum_bytes == 0 and s.mask_jobs == () and s.awaiting == frozenset()


def _recording_map(calls):
    def rec_map(fn, items):
        items = list(items)
        calls.append(items)
        return map(fn, items)

    return rec_map


def test_finalize_hands_map_fn_one_unit_per_job_group_on_a_short_vector():
    h = Harness.make(5, threshold=3)
    h.drive(drops={5: 2}, finalize=False)
    jobs = list(h.server.mask_jobs)
    assert len(jobs) == 8
    calls: list[list] = []
    total = h.server.finalize(_recording_map(calls))
    # one range (6 elements) < UNMASK_UNITS = 8: the 8 jobs cut into 8 groups of one
    assert calls == [[(0, 6, [job]) for job in jobs]]
    np.testing.assert_array_equal(total, h.expected_sum((1, 2, 3, 4)))


def test_finalize_hands_map_fn_the_chunk_ranges_of_a_long_vector(monkeypatch):
    monkeypatch.setattr(server_module, "UNMASK_RANGE_ELEMENTS", 4)
    h = Harness.make(5, threshold=3, length=37)
    h.drive(drops={5: 2}, finalize=False)
    calls: list[list] = []
    total = h.server.finalize(_recording_map(calls))
    # ten ranges of at most 4 elements >= UNMASK_UNITS: every range gets all the jobs
    assert calls == [[(a, min(a + 4, 37)) for a in range(0, 37, 4)]]
    np.testing.assert_array_equal(total, h.expected_sum((1, 2, 3, 4)))
    assert h.server.phase is Phase.COMPLETED


def test_too_few_shares_of_a_dropped_clients_key_aborts_naming_it_to_u5():
    # SecAgg+ (n = 10, k = 5, t = 3): 8 and 10 drop before masked input, 5 and 6 before
    # unmasking; every survivor's self mask still has t holders in U5, client 10's
    # mask key does not (its neighbors in U5 are too few)
    h = Harness.make(10, protocol=ProtocolKind.SECAGG_PLUS, neighbors=5, threshold=3, seed=1)
    h.drive(drops={8: 2, 10: 2, 5: 4, 6: 4})
    s = h.server
    code, reason = AbortReason.MISSING_MASK_KEY_SHARES, (
        "too few shares to rebuild dropped client 10's masks"
    )
    assert _abort_of(s) == (Phase.ABORTED, code, reason)
    assert _aborts_received(h) == {u: [(code, reason)] for u in (1, 2, 3, 4, 7, 9)}


def test_finalize_outside_finalizing_names_the_phase():
    h = Harness.make(5, threshold=3)
    with pytest.raises(LocalProtocolError, match=r"^finalize\(\) in phase advertise-keys$"):
        h.server.finalize()


def test_a_masked_input_made_with_another_view_is_refused_in_words():
    h = Harness.make(5, threshold=3)
    held = h.drive(stop=Phase.MASKED_INPUT, hold=1)
    assert isinstance(held, m.MaskedInput)
    other = dataclasses.replace(held, view=bytes(32))
    with pytest.raises(RemoteProtocolError, match=r"^masked input was made with another U2 view$"):
        h.server.handle(1, other)


def _short_map(fn, items):
    """A broken ``map``: it silently leaves out the last item."""
    return list(map(fn, list(items)[:-1]))


@pytest.mark.parametrize("ranges", [False, True])
def test_finalize_with_a_map_fn_that_skips_a_unit_discards_the_sum(monkeypatch, ranges):
    if ranges:  # ten ranges >= UNMASK_UNITS: map_fn gets the ranges, not job groups
        monkeypatch.setattr(server_module, "UNMASK_RANGE_ELEMENTS", 4)
    h = Harness.make(5, threshold=3, length=37)
    h.drive(finalize=False)
    s = h.server
    assert s.phase is Phase.FINALIZING
    with pytest.raises(
        LocalProtocolError,
        match=r"^map_fn returned \d+ results for \d+ unmasking units; the sum was discarded$",
    ):
        s.finalize(map_fn=_short_map)
    assert s.result is None
    with pytest.raises(
        LocalProtocolError, match=r"^the sum was discarded by an earlier failed finalize\(\)$"
    ):
        s.finalize()


def test_a_map_fn_that_drops_a_batch_of_agreements_is_refused():
    # 7 and 8 drop after sharing keys: the server agrees s_{u,v} for every survivor u
    # masked with them through its map_fn, which loses a batch here
    h = Harness.make(8, threshold=4)
    h.server = server_module.Server(config=h.config, map_fn=_short_map)
    with pytest.raises(ParameterError, match=r"^map_fn returned 0 seeds for 12 pairs$"):
        h.drive(drops={7: 2, 8: 2})  # raised where unmasking closes, not a wrong sum
    assert h.server.result is None


def test_a_server_without_a_round_config_is_refused_in_words():
    for bad in (None, object(), {"clients": (1, 2, 3)}):
        with pytest.raises(ParameterError, match=r"^config must be a RoundConfig$"):
            server_module.Server(config=bad)


def test_a_decoded_masked_input_given_to_handle_is_summed_like_its_wire_bytes():
    """``handle`` takes a decoded MaskedInput (its vector unpacked) as well as the
    packed view ``receive`` makes; both must add the vector into the sum (seed-26
    sample: dropping the vector from that branch's ``np.add`` went unseen)."""
    h = Harness.make(5, threshold=3)
    wire = h.server.receive
    decoded: list[int] = []

    def receive(u: int, data: bytes) -> list[tuple[int, m.Message]]:
        if m.peek_type(data) is m.MessageType.MASKED_INPUT:
            msg = m.decode(data)
            assert isinstance(msg, m.MaskedInput)
            decoded.append(u)
            return h.server.handle(u, msg)
        return wire(u, data)

    h.server.receive = receive  # type: ignore[method-assign]
    h.drive(drops={2: 2}, finalize=False)  # 2 drops before its masked input
    assert sorted(decoded) == [1, 3, 4, 5]
    assert h.server.survivors == (1, 3, 4, 5)
    assert np.array_equal(h.server.finalize(), h.expected_sum(h.server.survivors))


def test_a_copied_or_reused_public_key_is_refused_in_words_and_changes_nothing():
    """A client advertising a key another client already advertised (or the same key
    twice) is kept out: honest neighbors would otherwise abort (seed-26 sample)."""
    h = Harness.make(4, threshold=2)
    s = h.server
    first = h.clients[1].start()
    assert s.handle(1, first) == []
    own = h.clients[2].start()
    before = (s.phase, s.sets, s.awaiting)
    for msg in (
        dataclasses.replace(own, c_pk=first.c_pk),  # a copy of client 1's key
        dataclasses.replace(own, s_pk=first.s_pk),
        dataclasses.replace(own, s_pk=own.c_pk),  # one key for both purposes
    ):
        with pytest.raises(RemoteProtocolError) as info:
            s.handle(2, msg)
        assert str(info.value) == "public key already advertised"
        assert (s.phase, s.sets, s.awaiting) == before
    assert s.handle(2, own) == []


def test_a_secagg_plus_graph_is_none_until_the_reveals_fix_it() -> None:
    """SecAgg+'s graph is keyed by the reveals of U1: before they are in, the server has
    none to show (not one built from the configuration's label), SecAgg's is fixed."""
    plus = Harness.make(6, protocol=ProtocolKind.SECAGG_PLUS, neighbors=3, threshold=2)
    assert plus.server.graph is None
    plus.drive()
    assert plus.server.graph is not None and len(plus.server.graph) == 6
    full = Harness.make(4)
    assert full.server.graph == {u: frozenset({1, 2, 3, 4} - {u}) for u in (1, 2, 3, 4)}


def test_a_deadline_in_a_phase_that_waits_for_nobody_names_the_phase() -> None:
    h = Harness.make(4)
    h.drive()  # through finalize
    assert h.server.phase is Phase.COMPLETED
    with pytest.raises(LocalProtocolError) as exc:
        h.server.deadline_passed()
    assert str(exc.value) == "no deadline in phase completed"
