"""The server's bulk paths give the bytes and results of the one-at-a-time code.

Box forwarding (one stable sort), key entries picked from a table, unmasking
responses kept in arrays and grouped by one sort, and a short vector's unmasking
jobs split over work units: each is compared with the plain construction it
replaced, and every refusal stays typed.
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from secagg.errors import DecodeError, ParameterError
from secagg.masking import _plane
from secagg.masking import messages as m
from secagg.masking import server as server_mod
from secagg.masking.phase import Phase
from secagg.primitives.field import ELEMENT_BYTES, P

from .masking_harness import Harness

SID = bytes(range(32))


def _box(tag: int) -> bytes:
    return bytes([tag % 256]) * m.BOX_BYTES


def test_route_boxes_equals_the_sender_loop():
    rnd = random.Random(5)
    for _ in range(20):
        ids = sorted(rnd.sample(range(1, 60), rnd.randint(2, 12)))
        sent = {}
        for v in ids:
            to = sorted(rnd.sample([i for i in range(1, 60) if i != v], rnd.randint(0, 8)))
            sent[v] = tuple((u, _box(v * 61 + u)) for u in to)
        receivers = sorted(rnd.sample(ids, rnd.randint(1, len(ids))))
        want: dict[int, list[tuple[int, bytes]]] = {u: [] for u in receivers}
        for v in sorted(sent):
            for u, box in sent[v]:
                if u in want:
                    want[u].append((v, box))
        got = _plane.route_boxes(sent, receivers)
        assert list(got) == receivers
        for u in receivers:
            assert got[u] == tuple(want[u])
            plain = m.MaskedInputRequest(
                session_id=SID, sender=0, recipient=u, boxes=tuple(want[u])
            )
            bulk = m.MaskedInputRequest(session_id=SID, sender=0, recipient=u, boxes=got[u])
            assert m.encode(bulk) == m.encode(plain)
            assert m.decode(m.encode(bulk)) == plain


def test_box_list_round_trip_and_refusals():
    recs = b"".join(i.to_bytes(4, "big") + os.urandom(m.BOX_BYTES) for i in (2, 5, 9))
    boxes = m.box_list(recs)
    assert boxes == tuple(boxes) and boxes.records() == recs
    msg = m.ShareKeys(session_id=SID, sender=3, recipient=0, boxes=boxes)
    data = m.encode(msg)
    assert m.encode(m.decode(data)) == data
    assert m.decode(data).boxes == tuple(boxes)
    # slicing gives a plain tuple, validated again by the constructor
    assert type(boxes[1:]) is tuple
    unsorted = recs[m.BOX_RECORD_DTYPE.itemsize :] + recs[: m.BOX_RECORD_DTYPE.itemsize]
    with pytest.raises(DecodeError):
        m.box_list(unsorted)
    with pytest.raises(DecodeError):
        m.box_list(recs[:-1])
    with pytest.raises(DecodeError):
        m.box_list(bytes(4) + os.urandom(m.BOX_BYTES))  # id 0
    with pytest.raises(ParameterError):
        m.box_list(np.zeros(3, dtype=np.uint8))


def _entry(owner: int, signed: bool = False) -> m.KeyEntry:
    r = random.Random(owner)
    k = [bytes(r.randrange(256) for _ in range(32)) for _ in range(4)]
    return m.KeyEntry(owner=owner, c_pk=k[0], s_pk=k[1], commitment=k[2], seed_commitment=k[3],
                      signature=bytes(64) if signed else b"")


@pytest.mark.parametrize("signed", [False, True])
def test_entry_table_encodes_like_plain_entries(signed):
    entries = [_entry(o, signed) for o in (1, 4, 7, 8, 20)]
    table = m.EntryTable(entries)
    for owners in ((1, 4, 7, 8, 20), (4, 20), ()):
        picked = table.select(owners)
        plain = tuple(e for e in entries if e.owner in owners)
        assert picked == plain
        a = m.KeysBroadcast(session_id=SID, sender=0, recipient=3, entries=picked)
        b = m.KeysBroadcast(session_id=SID, sender=0, recipient=3, entries=plain)
        assert m.encode(a) == m.encode(b)
        assert m.decode(m.encode(a)) == b
    with pytest.raises(ParameterError):
        table.select((4, 1))
    with pytest.raises(ParameterError):
        table.select((1, 2))  # 2 advertised nothing
    with pytest.raises(ParameterError):
        m.EntryTable([entries[0], entries[0]])
    with pytest.raises(ParameterError):
        m.EntryTable([object()])  # type: ignore[list-item]


def _response(shares: list[tuple[int, int, bytes]], sender: int = 3) -> bytes:
    head = m.encode(m.UnmaskingResponse(session_id=SID, sender=sender, recipient=0, shares=()))
    body = b"".join(o.to_bytes(4, "big") + bytes([k]) + y for o, k, y in shares)
    return head[:-4] + len(shares).to_bytes(4, "big") + body


def test_unmasking_response_view_validates_like_decode():
    y = [(v * 977).to_bytes(ELEMENT_BYTES, "big") for v in range(5)]
    top = (P - 1).to_bytes(ELEMENT_BYTES, "big")  # the largest field element
    good = _response([(1, 1, y[1]), (2, 2, y[2]), (9, 1, top)])
    view = m.decode_unmasking_response(good)
    assert view.to_message() == m.decode(good)
    assert m.UnmaskingResponseView.of(m.decode(good)).to_message() == m.decode(good)
    assert view.owners.tolist() == [1, 2, 9] and view.kinds.tolist() == [1, 2, 1]
    bad = [
        _response([(2, 1, y[1]), (1, 1, y[2])]),  # owners not ascending
        _response([(1, 3, y[1])]),  # unknown kind
        _response([(1, 1, P.to_bytes(ELEMENT_BYTES, "big"))]),  # y = P
        _response([(0, 1, y[1])]),  # owner 0
        good + b"\x00",  # trailing byte
        good[:-1],  # truncated
    ]
    for data in bad:
        with pytest.raises(DecodeError):
            m.decode_unmasking_response(data)
        with pytest.raises(DecodeError):
            m.decode(data)
    other = m.encode(m.SeedReveal(session_id=SID, sender=3, recipient=0, reveal=bytes(32)))
    with pytest.raises(DecodeError, match=r"^not an UnmaskingResponse$"):
        m.decode_unmasking_response(other)


@pytest.mark.parametrize("drops", [{}, {2: 2, 5: 2}])
def test_finalize_split_over_units_equals_one_pass(monkeypatch, drops):
    """Ranges and job groups, threaded or not: the same sum (and the exact one)."""
    results = []
    for rng_elems, threads in ((1 << 18, False), (1 << 18, True), (8, True), (24, False)):
        monkeypatch.setattr(server_mod, "UNMASK_RANGE_ELEMENTS", rng_elems)
        h = Harness.make(10, bits=20, length=50, seed=3)
        h.drive(drops=drops, finalize=False)
        assert h.server.phase is Phase.FINALIZING
        if threads:
            with ThreadPoolExecutor(2) as ex:
                out = h.server.finalize(ex.map)
        else:
            out = h.server.finalize()
        assert np.array_equal(out, h.expected_sum(h.server.survivors))
        results.append(out.copy())
    assert all(np.array_equal(results[0], r) for r in results)


def test_tampered_unmasking_response_is_refused_and_changes_nothing():
    h = Harness.make(5, seed=11)
    held = h.drive(stop=Phase.UNMASKING, hold=2)
    assert isinstance(held, m.UnmaskingResponse)
    before = dict(h.server._shares_from)
    wrong_kind = tuple(
        (o, m.ShareKind.MASK_KEY if k is m.ShareKind.SELF_MASK else m.ShareKind.SELF_MASK, y)
        for o, k, y in held.shares
    )
    for shares in (held.shares[1:], wrong_kind):
        msg = m.UnmaskingResponse(session_id=held.session_id, sender=2, recipient=0, shares=shares)
        with pytest.raises(Exception) as exc:
            h.server.receive(2, m.encode(msg))
        assert "expected shares" in str(exc.value)
        assert h.server._shares_from == before
    h.server.receive(2, m.encode(held))  # the honest one still goes through (the last one)
    assert h.server.phase is Phase.FINALIZING
    assert np.array_equal(h.server.finalize(), h.expected_sum(h.server.survivors))
