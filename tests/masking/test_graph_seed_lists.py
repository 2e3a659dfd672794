"""The O(|U1|) lists of SecAgg+ (SeedRequest commitments, KeysBroadcast reveals):
bulk decode, once-per-round encode, the decoded list shared between clients, and the
batched commitment check — each against a plain reference written here."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import DecodeError, ParameterError, RemoteProtocolError
from secagg.masking import _common as cm
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig
from secagg.primitives import kdf
from secagg.primitives.rand import InsecureDeterministicRandom

SID = bytes(range(32))
HEAD = 2 + 1 + 1 + 32 + 4 + 4


def _ref_hkdf(ikm: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=kdf.HKDF_SALT, info=info).derive(ikm)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=16, max_size=80), st.binary(max_size=200)),
                max_size=12))
def test_derive_info_many_is_hkdf(items: list[tuple[bytes, bytes]]) -> None:
    ikms = [i for i, _ in items]
    infos = [f for _, f in items]
    assert kdf.derive_info_many(ikms, infos) == b"".join(
        _ref_hkdf(i, f) for i, f in items
    )


def test_derive_info_many_refuses_bad_input() -> None:
    with pytest.raises(ParameterError):
        kdf.derive_info_many([bytes(32)], [])
    with pytest.raises(ParameterError):
        kdf.derive_info_many([bytes(15)], [b""])


def _members(n: int, seed: int = 1) -> tuple[list[int], dict[int, bytes], dict[int, bytes]]:
    rng = np.random.default_rng(seed)  # public test data, nothing secret
    ids = sorted({int(v) for v in rng.integers(1, 2**32, size=n)})
    r = {v: os.urandom(32) for v in ids}
    g = {v: cm.seed_commitment(r[v], session_id=SID, client=v) for v in ids}
    return ids, r, g


def test_batched_derivations_match_the_per_client_ones() -> None:
    ids, r, g = _members(40)
    raw_ids = b"".join(v.to_bytes(4, "big") for v in ids)
    joined = b"".join(r[v] for v in ids)
    assert cm.seed_commitments_many(session_id=SID, ids=raw_ids, reveals=joined) == b"".join(
        g[v] for v in ids
    )
    pairs = [(v, g[v]) for v in reversed(ids)]  # the reference sorts
    assert cm.seed_view_digest(session_id=SID, entries=pairs) == cm.seed_view_digest_columns(
        session_id=SID, ids=raw_ids, commitments=b"".join(g[v] for v in ids)
    )
    gs = os.urandom(32)
    assert cm.graph_key(
        session_id=SID, graph_seed=gs, view=b"v" * 32, reveals=[(v, r[v]) for v in ids]
    ) == cm.graph_key_joined(session_id=SID, graph_seed=gs, view=b"v" * 32, reveals=joined)
    with pytest.raises(ParameterError):
        cm.seed_commitments_many(session_id=SID, ids=raw_ids, reveals=joined[:-1])


# -- reference codec, record by record (protocols/wire/secagg.md) ------------------------


def _ref_seed_request(recipient: int, coms: list[tuple[int, bytes]]) -> bytes:
    head = (m.WIRE_VERSION.to_bytes(2, "big") + bytes([m.MessageType.SEED_REQUEST, 0]) + SID
            + (0).to_bytes(4, "big") + recipient.to_bytes(4, "big"))
    body = len(coms).to_bytes(4, "big") + b"".join(i.to_bytes(4, "big") + g for i, g in coms)
    return head + body


def _ref_reveals(reveals: list[tuple[int, bytes, bytes]]) -> bytes:
    out = [len(reveals).to_bytes(4, "big")]
    for i, rv, sig in reveals:
        out.append(i.to_bytes(4, "big") + rv + (b"\x01" + sig if sig else b"\x00"))
    return b"".join(out)


@pytest.mark.parametrize("n", [3, 17, 300])
def test_seed_request_bulk_decode_and_cached_encode(n: int) -> None:
    ids, _, g = _members(n, seed=n)
    coms = [(v, g[v]) for v in ids]
    data = _ref_seed_request(ids[0], coms)
    a = m.decode(data)
    b = m.decode(data)
    assert isinstance(a, m.SeedRequest) and isinstance(b, m.SeedRequest)
    assert a.commitments == tuple(coms)
    if n > 16:
        assert a.commitments is b.commitments  # one immutable copy for every client
        assert m.seed_columns(a.commitments) == (
            b"".join(v.to_bytes(4, "big") for v in ids),
            b"".join(g[v] for v in ids),
        )
    # the server's messages: one tuple for everyone, bytes as the reference, every time
    shared = tuple(coms)
    for u in ids[:3]:
        msg = m.SeedRequest(session_id=SID, sender=0, recipient=u, commitments=shared)
        assert msg.commitments is shared
        assert m.encode(msg) == _ref_seed_request(u, coms) == m.encode(msg)


@pytest.mark.parametrize("layout", ["unsigned", "signed", "mixed"])
def test_keys_broadcast_reveals_bulk_decode(layout: str) -> None:
    ids, r, _ = _members(40, seed=7)
    sig = {v: (os.urandom(64) if layout == "signed" or (layout == "mixed" and v % 2) else b"")
           for v in ids}
    reveals = [(v, r[v], sig[v]) for v in ids]
    head = (m.WIRE_VERSION.to_bytes(2, "big") + bytes([m.MessageType.KEYS_BROADCAST, 0]) + SID
            + (0).to_bytes(4, "big") + ids[0].to_bytes(4, "big"))
    data = head + _ref_reveals(reveals) + (0).to_bytes(4, "big")
    msg = m.decode(data)
    assert isinstance(msg, m.KeysBroadcast)
    assert [(x.owner, x.reveal, x.signature) for x in msg.reveals] == reveals
    assert m.encode(msg) == data
    again = m.decode(data)
    assert isinstance(again, m.KeysBroadcast)
    if layout != "mixed":
        assert again.reveals is msg.reveals
    owners, joined, signed = m.reveal_columns(msg.reveals)
    assert owners == b"".join(v.to_bytes(4, "big") for v in ids)
    assert joined == b"".join(r[v] for v in ids)
    assert signed == sum(1 for v in ids if sig[v])


def test_malformed_lists_are_refused() -> None:
    ids, r, g = _members(30, seed=3)
    coms = [(v, g[v]) for v in ids]
    swapped = coms[:]
    swapped[4], swapped[5] = swapped[5], swapped[4]
    for bad in (swapped, [(0, g[ids[0]]), *coms[1:]], [*coms[:3], coms[3], *coms[3:]]):
        with pytest.raises(DecodeError):
            m.decode(_ref_seed_request(ids[0], bad))
    good = _ref_seed_request(ids[0], coms)
    with pytest.raises(DecodeError):
        m.decode(good[:-1])
    with pytest.raises(DecodeError):
        m.decode(good + b"\x00")
    # reveals: a flag that is neither 0 nor 1, unordered owners, truncation
    head = (m.WIRE_VERSION.to_bytes(2, "big") + bytes([m.MessageType.KEYS_BROADCAST, 0]) + SID
            + (0).to_bytes(4, "big") + ids[0].to_bytes(4, "big"))
    body = bytearray(_ref_reveals([(v, r[v], b"") for v in ids]))
    m.decode(head + bytes(body) + bytes(4))
    flag_at = 4 + 36 + 37 * 9
    body[flag_at] = 2
    with pytest.raises(DecodeError):
        m.decode(head + bytes(body) + bytes(4))
    swapped_r = [(v, r[v], b"") for v in ids]
    swapped_r[1], swapped_r[2] = swapped_r[2], swapped_r[1]
    with pytest.raises(DecodeError):
        m.decode(head + _ref_reveals(swapped_r) + bytes(4))
    with pytest.raises(DecodeError):
        m.decode(head + _ref_reveals([(v, r[v], b"") for v in ids])[:-3])


def test_columns_of_an_unchecked_list_do_not_make_it_valid() -> None:
    ids, _, g = _members(30, seed=4)
    bad = tuple([(v, g[v]) for v in ids][::-1])  # descending: not a valid U1 list
    m.seed_columns(bad)
    with pytest.raises(ParameterError):
        m.SeedRequest(session_id=SID, sender=0, recipient=1, commitments=bad)
    bad_rv = tuple(m.Reveal(owner=v, reveal=bytes(32)) for v in ids[::-1])
    m.reveal_columns(bad_rv)
    with pytest.raises(ParameterError):
        m.KeysBroadcast(session_id=SID, sender=0, recipient=1, entries=(), reveals=bad_rv)


# -- every client checks the shared list itself ----------------------------------------


def _two_clients_after_seed_request(n: int) -> tuple[RoundConfig, list[Client], dict[int, bytes]]:
    rng = InsecureDeterministicRandom(b"graph-seed-lists-test", warn=False)
    cfg = RoundConfig.create(session_id=SID, clients=list(range(1, n + 1)), bits=32, length=4,
                             protocol=ProtocolKind.SECAGG_PLUS, graph_seed=bytes(32))
    clients = [Client(config=cfg, client_id=u, input_vector=np.zeros(4, dtype=np.uint32),
                      rng=rng.child(f"c{u}")) for u in range(1, n + 1)]
    adv = [c.start() for c in clients]
    coms = tuple((a.sender, a.seed_commitment) for a in adv)
    reveal = {}
    for c in clients:
        req = m.SeedRequest(session_id=SID, sender=0, recipient=c.client_id, commitments=coms)
        (rv,) = c.receive(m.encode(req))
        assert isinstance(rv, m.SeedReveal)
        reveal[c.client_id] = rv.reveal
    return cfg, clients, reveal


def test_a_reveal_that_does_not_open_is_caught_by_every_client_sharing_the_list() -> None:
    n = 24
    _cfg, clients, reveal = _two_clients_after_seed_request(n)
    forged = dict(reveal)
    forged[9] = bytes(32)
    reveals = tuple(m.Reveal(owner=v, reveal=forged[v]) for v in sorted(forged))
    decoded = []
    for c in clients[:3]:
        kb = m.KeysBroadcast(session_id=SID, sender=0, recipient=c.client_id, entries=(),
                             reveals=reveals)
        data = m.encode(kb)
        msg = m.decode(data)
        assert isinstance(msg, m.KeysBroadcast)
        decoded.append(msg.reveals)
        with pytest.raises(RemoteProtocolError):
            c.handle(msg)
        assert c.abort_code is AbortReason.BAD_SEED
        assert "reveal of 9 " in (c.abort_reason or "")
    assert decoded[0] is decoded[1] is decoded[2]  # shared decode, three separate checks


def test_reveals_must_cover_u1_and_carry_no_signature_when_semi_honest() -> None:
    n = 24
    _, clients, reveal = _two_clients_after_seed_request(n)
    full = tuple(m.Reveal(owner=v, reveal=reveal[v]) for v in sorted(reveal))
    cases = {
        AbortReason.BAD_SEED: full[1:],
        AbortReason.BAD_SIGNATURE: (dataclasses.replace(full[0], signature=bytes(64)), *full[1:]),
    }
    for c, (code, rv) in zip(clients, cases.items(), strict=False):
        kb = m.KeysBroadcast(session_id=SID, sender=0, recipient=c.client_id, entries=(),
                             reveals=rv)
        with pytest.raises(RemoteProtocolError):
            c.receive(m.encode(kb))
        assert c.abort_code is code


def test_shared_commitments_are_derived_once_per_argument_triple(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cm, "_OPENED", ())
    calls: list[bytes] = []
    real = cm.seed_commitments_many

    def counting(*, session_id: bytes, ids: bytes, reveals: bytes) -> bytes:
        calls.append(reveals)
        return real(session_id=session_id, ids=ids, reveals=reveals)

    monkeypatch.setattr(cm, "seed_commitments_many", counting)
    ids, r, g = _members(12)
    raw_ids = b"".join(v.to_bytes(4, "big") for v in ids)
    joined = b"".join(r[v] for v in ids)
    expected = b"".join(g[v] for v in ids)
    for _ in range(3):  # equal arguments, one of them a fresh bytes object each time
        assert cm.seed_commitments_shared(
            session_id=SID, ids=raw_ids, reveals=bytes(bytearray(joined))
        ) == expected
    assert len(calls) == 1
    # another session, another id column or another list: derived afresh, never the kept one
    other_sid = bytes(32)
    assert cm.seed_commitments_shared(session_id=other_sid, ids=raw_ids, reveals=joined) == real(
        session_id=other_sid, ids=raw_ids, reveals=joined
    )
    assert cm.seed_commitments_shared(session_id=other_sid, ids=raw_ids, reveals=joined) != expected
    swapped = raw_ids[4:8] + raw_ids[:4] + raw_ids[8:]
    assert cm.seed_commitments_shared(session_id=SID, ids=swapped, reveals=joined) == real(
        session_id=SID, ids=swapped, reveals=joined
    )
    changed = bytes(32) + joined[32:]
    out = cm.seed_commitments_shared(session_id=SID, ids=raw_ids, reveals=changed)
    assert out[:32] != expected[:32] and out[32:] == expected[32:]
    assert len(calls) == 4
    # at most four triples are kept: the first one has been pushed out by now
    cm.seed_commitments_shared(session_id=bytes(31) + b"\x01", ids=raw_ids, reveals=joined)
    assert len(cm._OPENED) == 4
    assert cm.seed_commitments_shared(session_id=SID, ids=raw_ids, reveals=joined) == expected
    assert len(calls) == 6
    with pytest.raises(ParameterError):
        cm.seed_commitments_shared(session_id=SID, ids=raw_ids, reveals=joined[:-1])


@pytest.mark.parametrize("first", ["honest view", "forged view"])
def test_clients_with_different_views_judge_one_shared_reveal_list_each_by_its_own(
    monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """The server shows client 1 the true commitments and client 2 a forged ``g_9``, then
    sends both the same (true) reveals: whichever checks first, 1 accepts the reveals and
    2 refuses them naming 9 — the shared derivation never carries one client's verdict
    over to another."""
    monkeypatch.setattr(cm, "_OPENED", ())
    n = 24
    rng = InsecureDeterministicRandom(b"graph-seed-views-test", warn=False)
    cfg = RoundConfig.create(session_id=SID, clients=list(range(1, n + 1)), bits=32, length=4,
                             protocol=ProtocolKind.SECAGG_PLUS, graph_seed=bytes(32))
    clients = {u: Client(config=cfg, client_id=u, input_vector=np.zeros(4, dtype=np.uint32),
                         rng=rng.child(f"c{u}")) for u in range(1, n + 1)}
    adv = {u: c.start() for u, c in clients.items()}
    true_coms = tuple((u, a.seed_commitment) for u, a in sorted(adv.items()))
    forged_coms = tuple((u, bytes(32) if u == 9 else g) for u, g in true_coms)
    reveal = {}
    for u, c in clients.items():
        coms = forged_coms if u == 2 else true_coms
        (rv,) = c.receive(m.encode(m.SeedRequest(session_id=SID, sender=0, recipient=u,
                                                 commitments=coms)))
        reveal[u] = rv.reveal
    reveals = tuple(m.Reveal(owner=v, reveal=reveal[v]) for v in sorted(reveal))
    order = [1, 2] if first == "honest view" else [2, 1]
    for u in order:
        kb = m.KeysBroadcast(session_id=SID, sender=0, recipient=u, entries=(), reveals=reveals)
        with pytest.raises(RemoteProtocolError):  # no entries: client 1 aborts later, on |entries|
            clients[u].receive(m.encode(kb))
    assert clients[2].abort_code is AbortReason.BAD_SEED
    assert "reveal of 9 " in (clients[2].abort_reason or "")
    # client 1 got past every reveal check: it stops only at the empty entry list
    assert clients[1].abort_code is AbortReason.TOO_FEW_NEIGHBORS
