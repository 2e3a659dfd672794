"""Attacks 2 and 3: the server shows different survivor sets to different clients,
and the server substitutes public keys (man in the middle).

Both are *active* attacks.  Malicious mode stops them (consistency check with
``t_sig = max(t, floor(n/2)+1)`` signatures; signed advertised keys).  Semi-honest
mode does not claim to: the tests below demonstrate, byte for byte, that an
active server recovers a target's input there — the documented non-guarantee of
SECURITY.md — and pin the one bound that still holds (2t > k: an honest holder
set cannot give t shares of each kind).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.masking import _common as cm
from secagg.masking import messages as m
from secagg.phase import Phase
from secagg.primitives import aead
from secagg.primitives.kex import KeyPair
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import ProtocolKind, SecurityMode

from ._harness import (
    Manual,
    Round,
    assert_nothing_secret_left,
    make_round,
    recover_input,
    revealed_shares,
)


def _split_unmasking(target: int, see_dropped: set[int]):  # type: ignore[no-untyped-def]
    """Server hook: clients in ``see_dropped`` are told ``target`` dropped."""

    def hook(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.UnmaskingRequest) and u in see_dropped:
            return dataclasses.replace(
                msg,
                survivors=tuple(v for v in msg.survivors if v != target),
                dropped=tuple(sorted({*msg.dropped, target})),
            )
        return msg

    return hook


def _run_to_consistency(rnd: Round) -> tuple[Manual, tuple[int, ...]]:
    """Drive an honest round up to the ConsistencyRequests; returns the runner and U3."""
    run = Manual(rnd)
    run.start()
    while not any(isinstance(m.decode(d), m.ConsistencyRequest) for _, d in run.outbox):
        run.deliver()
    u3 = next(
        x.survivors
        for _, d in run.outbox
        for x in [m.decode(d)]
        if isinstance(x, m.ConsistencyRequest)
    )
    return run, u3


def _split_consistency(
    run: Manual, rnd: Round, group_b: set[int], shrunk: tuple[int, ...]
) -> dict[int, bytes]:
    """Show ``shrunk`` instead of U3 to ``group_b``; returns every consistency signature sent."""

    def split(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ConsistencyRequest) and u in group_b:
            return dataclasses.replace(msg, survivors=shrunk)
        return msg

    run.deliver(rewrite=split)
    return {
        u: x.signature
        for u in rnd.config.clients
        for x in rnd.recorder.of_type(u, m.ConsistencySignature)
        if isinstance(x, m.ConsistencySignature)
    }


def test_a2_semi_honest_secagg_plus_with_2t_le_k_leaks_to_an_active_server() -> None:
    """Documented non-guarantee: semi-honest mode trusts the server to show one U3."""
    rnd = make_round(10, protocol=ProtocolKind.SECAGG_PLUS, neighbors=6, threshold=3)
    t, target = rnd.t, 4
    holders = sorted(rnd.neighbors()[target])
    assert 2 * t <= len(holders)
    rnd.run(server_hook=_split_unmasking(target, set(holders[t:])))
    book = revealed_shares(rnd.recorder, rnd.config.clients)[target]
    b_pts = list(book[m.ShareKind.SELF_MASK].items())
    s_pts = list(book[m.ShareKind.MASK_KEY].items())
    assert len(b_pts) >= t and len(s_pts) >= t
    x = recover_input(rnd.recorder, rnd.config, target, b_pts, s_pts)
    np.testing.assert_array_equal(x, rnd.inputs[target])
    # ...while no single honest client ever revealed both shares of the target
    for u in holders:
        assert len(rnd.recorder.of_type(u, m.UnmaskingResponse)) == 1
    with pytest.raises(AssertionError):
        assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=t)


@pytest.mark.parametrize("n", [5, 7, 8])
def test_a2_semi_honest_complete_graph_default_t_gives_no_pair(n: int) -> None:
    """Default complete-graph t = floor(n/2)+1 > (n-1)/2: no split of the n-1 holders
    gives t of each kind, so the split attack yields nothing without corrupt clients."""
    rnd = make_round(n)
    t, target = rnd.t, 2
    assert 2 * t > n - 1
    holders = [u for u in rnd.config.clients if u != target]
    report = rnd.run(server_hook=_split_unmasking(target, set(holders[t:])))
    if not report.aborted:  # the honest server code rejects the mismatched responses
        np.testing.assert_array_equal(report.total, rnd.expected_sum(report.survivors))
    assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=t)


def test_a2_malicious_mode_split_consistency_requests_are_caught() -> None:
    rnd = make_round(
        10, protocol=ProtocolKind.SECAGG_PLUS, security=SecurityMode.MALICIOUS, neighbors=6
    )
    cfg, t, target = rnd.config, rnd.t, 4
    run, u3 = _run_to_consistency(rnd)
    group_a = set(sorted(rnd.neighbors()[target])[:t])  # asked for the target's b-share
    group_b = set(u3) - group_a - {target}  # told the target dropped
    shrunk = tuple(v for v in u3 if v != target)
    sigs = _split_consistency(run, rnd, group_b, shrunk)
    on_u3 = tuple(sorted((u, s) for u, s in sigs.items() if u not in group_b))
    on_shrunk = tuple(sorted((u, s) for u, s in sigs.items() if u in group_b))
    assert len(on_u3) < cfg.signature_threshold and len(on_shrunk) < cfg.signature_threshold
    for u in sorted(group_a | group_b):
        in_b = u in group_b
        req = m.UnmaskingRequest(
            session_id=cfg.session_id,
            sender=0,
            recipient=u,
            survivors=shrunk if in_b else u3,
            dropped=(target,) if in_b else (),
            signatures=on_shrunk if in_b else on_u3,
        )
        assert run.to_client(u, m.encode(req)) == []
        assert run.clients[u].phase is Phase.ABORTED
    assert_nothing_secret_left(rnd.recorder, cfg.clients, t=t)


class _Mitm:
    """A server that substitutes the share-encryption keys between ``target`` and
    every neighbor, re-encrypting the boxes it forwards (so nobody notices)."""

    def __init__(self, rnd, target: int) -> None:  # type: ignore[no-untyped-def]
        self.cfg = rnd.config
        self.target = target
        src = InsecureDeterministicRandom(99, warn=False)
        self.rng = src
        self.as_peer = {w: KeyPair.generate(src) for w in self.cfg.clients}  # shown to target
        self.as_target = {w: KeyPair.generate(src) for w in self.cfg.clients}  # shown to w
        self.real_c: dict[int, bytes] = {}
        self.stolen: dict[int, tuple[int, int]] = {}  # holder -> (b-share, s-share) of target

    def _reseal(self, box: bytes, *, sender: int, receiver: int, w: int, to_target: bool) -> bytes:
        sid = self.cfg.session_id
        v = self.target
        # the sender sealed under its view of the receiver's key (one of ours)
        k_in = (
            cm.share_key(self.as_target[w].private, self.real_c[w], session_id=sid, a=v, b=w)
            if to_target
            else cm.share_key(self.as_peer[w].private, self.real_c[v], session_id=sid, a=v, b=w)
        )
        k_out = (
            cm.share_key(self.as_peer[w].private, self.real_c[v], session_id=sid, a=v, b=w)
            if to_target
            else cm.share_key(self.as_target[w].private, self.real_c[w], session_id=sid, a=v, b=w)
        )
        ad = dict(
            session_id=sid,
            round_=cm.SHARE_ROUND,
            sender=sender,
            receiver=receiver,
            context=cm.SHARE_CONTEXT,
        )
        pt = aead.open_(k_in, box, **ad)  # type: ignore[arg-type]
        if not to_target:
            owner, holder, b_share, s_share = m.decode_share_plaintext(pt)
            assert (owner, holder) == (v, w)
            self.stolen[w] = (b_share, s_share)
        return aead.seal(k_out, pt, rng=self.rng, **ad)  # type: ignore[arg-type]

    def __call__(self, u: int, msg: m.Message) -> m.Message:
        v = self.target
        if isinstance(msg, m.KeysBroadcast):
            entries = []
            for e in msg.entries:
                self.real_c[e.owner] = e.c_pk
                if u == v:
                    e = dataclasses.replace(e, c_pk=self.as_peer[e.owner].public)
                elif e.owner == v:
                    e = dataclasses.replace(e, c_pk=self.as_target[u].public)
                entries.append(e)
            return dataclasses.replace(msg, entries=tuple(entries))
        if isinstance(msg, m.MaskedInputRequest):
            boxes = []
            for s, box in msg.boxes:
                if u == v:
                    box = self._reseal(box, sender=s, receiver=v, w=s, to_target=True)
                elif s == v:
                    box = self._reseal(box, sender=v, receiver=u, w=u, to_target=False)
                boxes.append((s, box))
            return dataclasses.replace(msg, boxes=tuple(boxes))
        return msg


def test_a3_semi_honest_key_substitution_is_undetected_and_leaks_the_input() -> None:
    """Documented out of scope: semi-honest mode does not authenticate public keys."""
    rnd = make_round(6)
    target = 3
    mitm = _Mitm(rnd, target)
    report = rnd.run(server_hook=mitm)
    assert not report.aborted and report.client_errors == {}
    np.testing.assert_array_equal(report.total, rnd.expected_sum(rnd.config.clients))
    assert len(mitm.stolen) >= rnd.t
    b_pts = [(w, b) for w, (b, _) in mitm.stolen.items()]
    s_pts = [(w, s) for w, (_, s) in mitm.stolen.items()]
    x = recover_input(rnd.recorder, rnd.config, target, b_pts, s_pts)
    np.testing.assert_array_equal(x, rnd.inputs[target])


def test_a3_malicious_mode_key_substitution_aborts_before_any_share_leaves() -> None:
    rnd = make_round(6, security=SecurityMode.MALICIOUS)
    target = 3
    mitm = _Mitm(rnd, target)
    report = rnd.run(server_hook=mitm)
    assert report.aborted and report.total is None
    assert mitm.stolen == {}
    for u in rnd.config.clients:  # everybody saw a substituted key: nobody shared
        assert rnd.recorder.of_type(u, m.ShareKeys) == []
        assert report.client_phases[u] == Phase.ABORTED.value
        assert "CryptoError" in report.client_errors[u]


@pytest.mark.parametrize("field_name", ["c_pk", "s_pk", "commitment"])
def test_a3_malicious_mode_any_substituted_advertised_field_aborts(field_name: str) -> None:
    rnd = make_round(6, security=SecurityMode.MALICIOUS)
    victim, forged_owner = 2, 5
    fake = KeyPair.generate(InsecureDeterministicRandom(7, warn=False)).public

    def hook(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.KeysBroadcast) and u == victim:
            entries = tuple(
                dataclasses.replace(e, **{field_name: fake}) if e.owner == forged_owner else e
                for e in msg.entries
            )
            return dataclasses.replace(msg, entries=entries)
        return msg

    report = rnd.run(server_hook=hook)
    assert rnd.recorder.of_type(victim, m.ShareKeys) == []
    assert report.client_phases[victim] == Phase.ABORTED.value
    assert victim not in report.survivors
    if not report.aborted:
        np.testing.assert_array_equal(report.total, rnd.expected_sum(report.survivors))


def test_a2_malicious_complete_graph_default_t_resists_alpha_n_colluders() -> None:
    from secagg.primitives.sign import SigningKey

    n, target = 41, 41
    corrupt = {1, 2}  # floor(0.05 * 41) = 2 colluders: inside the default threat model
    rnd = make_round(n, security=SecurityMode.MALICIOUS, length=2)
    cfg, t = rnd.config, rnd.t
    run, u3 = _run_to_consistency(rnd)
    honest = [u for u in u3 if u not in corrupt and u != target]
    group_b = set(honest[len(honest) // 2 :])  # told the target dropped
    shrunk = tuple(v for v in u3 if v != target)
    sigs = _split_consistency(run, rnd, group_b, shrunk)
    on_u3 = {u: s for u, s in sigs.items() if u not in group_b}
    on_shrunk = {u: s for u, s in sigs.items() if u in group_b}
    for w in corrupt:  # colluders sign both sets
        key = rnd.identity_keys[w]
        assert isinstance(key, SigningKey)
        on_shrunk[w] = key.sign(
            cm.consistency_signature_input(session_id=cfg.session_id, client=w, survivors=shrunk)
        )
    # With the default t (2t > k + A) the split cannot be certified on both sides;
    # the requests below carry what the server has, and honest clients must refuse.
    assert t == (n - 1 + len(corrupt)) // 2 + 1
    assert not (len(on_u3) >= cfg.signature_threshold and len(on_shrunk) >= cfg.signature_threshold)
    for u in [*honest, target]:
        in_b = u in group_b
        req = m.UnmaskingRequest(
            session_id=cfg.session_id,
            sender=0,
            recipient=u,
            survivors=shrunk if in_b else u3,
            dropped=(target,) if in_b else (),
            signatures=tuple(sorted((on_shrunk if in_b else on_u3).items())),
        )
        for reply in run.to_client(u, m.encode(req)):
            rnd.recorder("to_server", u, reply)  # what the honest client put on the wire
    assert_nothing_secret_left(
        rnd.recorder,
        [u for u in cfg.clients if u not in corrupt],
        t=t,
        corrupt_shares={target: corrupt},
    )
