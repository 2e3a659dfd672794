"""A malicious server against honest clients.

Each attack rewrites what the (otherwise honest) server sends to some clients.
In every case the targeted honest clients refuse (raise, go to ABORTED) and
what they sent is recorded and checked: no unmasking response from a refusing
client, and never both shares of one peer from anyone.
"""

from __future__ import annotations

import dataclasses

import pytest

from secagg.errors import CryptoError, DecodeError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase
from secagg.primitives.kex import KeyPair

from .masking_harness import Harness


def _revealed(h: Harness) -> dict[int, set[m.ShareKind]]:
    """owner -> kinds of shares any client revealed about it."""
    out: dict[int, set[m.ShareKind]] = {}
    for msgs in h.sent.values():
        for x in msgs:
            if isinstance(x, m.UnmaskingResponse):
                for owner, kind, _ in x.shares:
                    out.setdefault(owner, set()).add(kind)
    return out


def _assert_refused(h: Harness, victims: set[int], err: type[Exception]) -> None:
    for u in victims:
        assert isinstance(h.errors.get(u), err), (u, h.errors.get(u))
        assert h.clients[u].phase is Phase.ABORTED
        assert m.MessageType.UNMASKING_RESPONSE not in h.sent_types(u)
    for kinds in _revealed(h).values():
        assert len(kinds) == 1  # never both shares of one client


def test_server_asks_for_both_shares_of_one_client() -> None:
    h = Harness.make(6, threshold=3)
    victim_peer = 4

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.UnmaskingRequest):
            # claim 4 survived (b-share) AND dropped (s-share)
            return dataclasses.replace(msg, dropped=tuple(sorted({*msg.dropped, victim_peer})))
        return msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, {u for u in h.config.clients}, RemoteProtocolError)
    assert h.server.phase is Phase.ABORTED
    assert h.server.result is None


def test_second_unmasking_request_is_refused() -> None:
    h = Harness.make(6, threshold=3)
    h.drive()
    assert h.server.phase is Phase.COMPLETED
    first = next(x for x in h.received[1] if isinstance(x, m.UnmaskingRequest))
    # now ask client 1 again, claiming client 2 dropped: it would reveal s_2's share
    survivors = tuple(v for v in first.survivors if v != 2)
    again = dataclasses.replace(first, survivors=survivors, dropped=(*first.dropped, 2))
    with pytest.raises(RemoteProtocolError):
        h.clients[1].receive(m.encode(again))
    assert h.clients[1].phase is Phase.COMPLETED
    assert h.sent_types(1).count(m.MessageType.UNMASKING_RESPONSE) == 1
    assert _revealed(h)[2] == {m.ShareKind.SELF_MASK}


@pytest.mark.parametrize("security", list(SecurityMode))
def test_survivor_set_smaller_than_threshold(security: SecurityMode) -> None:
    h = Harness.make(7, security=security, threshold=4)

    def shrink(msg: m.Message) -> m.Message:
        assert isinstance(msg, (m.ConsistencyRequest, m.UnmaskingRequest))
        small = tuple(v for v in msg.survivors if v in (msg.recipient, 1, 2))
        if isinstance(msg, m.UnmaskingRequest):
            rest = tuple(sorted(set(msg.survivors) - set(small) | set(msg.dropped)))
            return dataclasses.replace(msg, survivors=small, dropped=rest)
        return dataclasses.replace(msg, survivors=small)

    target = m.ConsistencyRequest if security is SecurityMode.MALICIOUS else m.UnmaskingRequest

    def rewrite(u: int, msg: m.Message) -> m.Message:
        return shrink(msg) if isinstance(msg, target) else msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, set(h.config.clients), RemoteProtocolError)
    assert _revealed(h) == {}
    assert h.server.result is None


def test_different_survivor_sets_to_different_clients() -> None:
    h = Harness.make(7, security=SecurityMode.MALICIOUS, threshold=4)
    group_b = {5, 6, 7}
    shown_b: dict[int, tuple[int, ...]] = {}

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u in group_b and isinstance(msg, m.ConsistencyRequest):
            # tell group B that client 1 dropped (it did not)
            shown_b[u] = tuple(v for v in msg.survivors if v != 1)
            return dataclasses.replace(msg, survivors=shown_b[u])
        if u in group_b and isinstance(msg, m.UnmaskingRequest):
            # ... and ask them for s_1's shares, showing them the honest signatures
            return dataclasses.replace(msg, survivors=shown_b[u], dropped=(1, *msg.dropped))
        return msg

    h.drive(rewrite=rewrite)
    # B's signatures (over the fake set) were rejected by the server, so B never
    # got an UnmaskingRequest from the honest code path ...
    assert set(h.server.sets["U4"]).isdisjoint(group_b)
    for u in group_b:
        assert m.MessageType.UNMASKING_RESPONSE not in h.sent_types(u)
    # ... and when it is sent one anyway, with A's signatures, B refuses
    first_a = next(x for x in h.received[2] if isinstance(x, m.UnmaskingRequest))
    for u in group_b:
        forged = dataclasses.replace(
            first_a, recipient=u, survivors=shown_b[u], dropped=(1, *first_a.dropped)
        )
        with pytest.raises((RemoteProtocolError, CryptoError)):
            h.clients[u].receive(m.encode(forged))
        assert h.clients[u].phase is Phase.ABORTED
        assert m.MessageType.UNMASKING_RESPONSE not in h.sent_types(u)
    assert m.ShareKind.MASK_KEY not in _revealed(h).get(1, set())


def test_fake_set_with_only_its_own_signatures_is_below_signature_threshold() -> None:
    h = Harness.make(7, security=SecurityMode.MALICIOUS, threshold=4)
    group_b = {5, 6, 7}
    fake = (2, 3, 4, 5, 6, 7)
    sigs: dict[int, bytes] = {}

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u in group_b and isinstance(msg, m.ConsistencyRequest):
            return dataclasses.replace(msg, survivors=fake)
        return msg

    h.drive(rewrite=rewrite)
    for u in group_b:
        sig = next(x for x in h.sent[u] if isinstance(x, m.ConsistencySignature))
        sigs[u] = sig.signature
    assert h.config.signature_threshold > len(group_b)
    for u in group_b:
        req = m.UnmaskingRequest(
            session_id=h.config.session_id,
            sender=0,
            recipient=u,
            survivors=fake,
            dropped=(1,),
            signatures=tuple(sorted(sigs.items())),
        )
        with pytest.raises(RemoteProtocolError):
            h.clients[u].receive(m.encode(req))
        assert h.clients[u].phase is Phase.ABORTED
    assert m.ShareKind.MASK_KEY not in _revealed(h).get(1, set())


@pytest.mark.parametrize("attack", ["swap", "forge"])
def test_forged_or_swapped_public_keys_in_malicious_mode(attack: str) -> None:
    h = Harness.make(6, protocol=ProtocolKind.SECAGG, security=SecurityMode.MALICIOUS, threshold=4)
    victim = 3
    attacker = KeyPair.generate()

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u == victim and isinstance(msg, m.KeysBroadcast):
            e = list(msg.entries)
            if attack == "swap":
                e[0], e[1] = (
                    dataclasses.replace(e[0], s_pk=e[1].s_pk),
                    dataclasses.replace(e[1], s_pk=e[0].s_pk),
                )
            else:
                e[0] = dataclasses.replace(e[0], c_pk=attacker.public)
            return dataclasses.replace(msg, entries=tuple(e))
        return msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, {victim}, CryptoError)
    assert h.sent_types(victim) == [m.MessageType.ADVERTISE_KEYS]  # no shares were sent
    # the others finish without the victim
    assert h.server.phase is Phase.COMPLETED
    assert victim not in h.server.survivors


def test_reflected_own_key_is_refused() -> None:
    h = Harness.make(5, threshold=3)
    victim = 2

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u == victim and isinstance(msg, m.KeysBroadcast):
            own = next(x for x in h.sent[victim] if isinstance(x, m.AdvertiseKeys))
            e = list(msg.entries)
            e[0] = dataclasses.replace(e[0], c_pk=own.c_pk)
            return dataclasses.replace(msg, entries=tuple(e))
        return msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, {victim}, RemoteProtocolError)


def test_tampered_share_box_aborts_receiver() -> None:
    h = Harness.make(5, threshold=3)
    victim = 4

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u == victim and isinstance(msg, m.MaskedInputRequest):
            v, box = msg.boxes[0]
            bad = box[:-1] + bytes([box[-1] ^ 1])
            return dataclasses.replace(msg, boxes=((v, bad), *msg.boxes[1:]))
        return msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, {victim}, CryptoError)
    assert m.MessageType.MASKED_INPUT not in h.sent_types(victim)


def test_box_moved_to_another_receiver_fails() -> None:
    h = Harness.make(5, threshold=3)

    def rewrite(u: int, msg: m.Message) -> m.Message:
        if u == 1 and isinstance(msg, m.MaskedInputRequest):
            # a box for client 1 relabelled as coming from another sender
            (v0, b0), (v1, b1), *rest = msg.boxes
            return dataclasses.replace(msg, boxes=((v0, b1), (v1, b0), *rest))
        return msg

    h.drive(rewrite=rewrite)
    _assert_refused(h, {1}, CryptoError)


def test_replayed_messages_from_another_session() -> None:
    a = Harness.make(5, threshold=3, seed=1)
    a.drive()
    b = Harness.make(5, threshold=3, seed=2)
    assert a.config.session_id != b.config.session_id
    # client side: B's client 1 waiting for KeysBroadcast gets A's
    b.clients[1].start()
    old = next(x for x in a.received[1] if isinstance(x, m.KeysBroadcast))
    with pytest.raises(DecodeError):
        b.clients[1].receive(m.encode(old))
    assert b.clients[1].phase is Phase.ADVERTISE_KEYS
    # server side: B's server gets A's AdvertiseKeys from client 2
    adv = next(x for x in a.sent[2] if isinstance(x, m.AdvertiseKeys))
    with pytest.raises(DecodeError):
        b.server.receive(2, m.encode(adv))
    assert 2 in b.server.awaiting and b.server.sets["U1"] == ()
    # an unmasking request from session A never reaches B's clients' secrets
    req = next(x for x in a.received[3] if isinstance(x, m.UnmaskingRequest))
    with pytest.raises(DecodeError):
        b.clients[3].receive(m.encode(dataclasses.replace(req, recipient=3)))


def test_lying_share_holder_aborts_instead_of_wrong_sum() -> None:
    h = Harness.make(5, threshold=3)
    h.drive(stop=Phase.UNMASKING, hold=1)
    # deliver the other responses honestly first, then a corrupted one from 1
    held = next(x for x in h.sent[1] if isinstance(x, m.UnmaskingResponse))
    owner, kind, y = held.shares[0]
    from secagg.primitives.field import P

    bad = dataclasses.replace(held, shares=((owner, kind, (y + 1) % P), *held.shares[1:]))
    h.server.receive(1, m.encode(bad))
    if h.server.phase is Phase.UNMASKING:
        h.server.deadline_passed()
    # client 1 has the smallest id, so its share is among the t used: the check fires
    assert h.server.phase is Phase.ABORTED
    assert h.server.result is None


def test_server_keeps_out_a_client_that_copies_a_key() -> None:
    h = Harness.make(5, threshold=3)
    h.drive(stop=Phase.ADVERTISE_KEYS, hold=4)
    copied = next(x for x in h.sent[1] if isinstance(x, m.AdvertiseKeys))
    mine = next(x for x in h.sent[4] if isinstance(x, m.AdvertiseKeys))
    bad = dataclasses.replace(mine, s_pk=copied.s_pk)
    with pytest.raises(RemoteProtocolError):
        h.server.receive(4, m.encode(bad))
    assert 4 in h.server.awaiting and 4 not in h.server.sets["U1"]
    h.server.receive(4, m.encode(mine))
    assert h.server.phase is Phase.SHARE_KEYS


def test_invalid_advertise_signature_is_rejected_by_server() -> None:
    h = Harness.make(5, security=SecurityMode.MALICIOUS, threshold=3)
    h.drive(stop=Phase.ADVERTISE_KEYS, hold=2)
    mine = next(x for x in h.sent[2] if isinstance(x, m.AdvertiseKeys))
    bad = dataclasses.replace(mine, signature=bytes(64))
    with pytest.raises(RemoteProtocolError):
        h.server.receive(2, m.encode(bad))
    assert 2 in h.server.awaiting
