"""The server's array bookkeeping (branch keyplane3): share boxes kept as wire records,
``S_u`` as uint32 arrays, holder counts and membership by sorting — exact values and
the same abort decisions as the set/Counter code they replaced."""

from __future__ import annotations

import os

import numpy as np
import pytest

from secagg.errors import DecodeError, ParameterError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking import server as server_mod
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind
from secagg.phase import Phase

from .masking_harness import Harness

SID = bytes(range(32))


def _recs(ids):
    return b"".join(i.to_bytes(4, "big") + os.urandom(m.BOX_BYTES) for i in ids)


def test_box_list_is_lazy_and_equals_its_tuple():
    recs = _recs((3, 7, 11))
    boxes = m.box_list(recs)
    assert boxes._items is None  # nothing built yet
    assert boxes.ids.dtype == np.uint32 and boxes.ids.tolist() == [3, 7, 11]
    assert len(boxes) == 3 and boxes._items is None
    assert not boxes.array.flags.writeable
    plain = tuple((i, recs[j * 106 + 4 : (j + 1) * 106]) for j, i in enumerate((3, 7, 11)))
    assert m.BOX_RECORD_DTYPE.itemsize == 106
    assert boxes == plain and plain == boxes and hash(boxes) == hash(plain)
    assert boxes == m.box_list(recs) and boxes != m.box_list(_recs((3, 7, 11)))
    assert boxes[0] == plain[0] and list(boxes) == list(plain) and boxes[1:] == plain[1:]
    assert repr(boxes) == repr(plain)
    assert (boxes == [1]) is False
    # from an array: kept, not copied
    arr = np.frombuffer(recs, dtype=m.BOX_RECORD_DTYPE).copy()
    assert m.box_list(arr).records() == recs
    msg = m.ShareKeys(session_id=SID, sender=2, recipient=0, boxes=boxes)
    assert m.decode(m.encode(msg)) == msg


def test_header_fast_path_keeps_the_checks():
    msg = m.ShareKeys(session_id=SID, sender=2, recipient=0, boxes=m.box_list(_recs((3,))))
    data = bytearray(m.encode(msg))
    assert data[:4] == b"\x00\x02" + bytes([int(m.MessageType.SHARE_KEYS), 1])
    for pos, val, err in ((1, 9, "unsupported wire version"), (2, 250, "unknown message type"),
                          (3, 0, "round field")):
        bad = bytearray(data)
        bad[pos] = val
        with pytest.raises(DecodeError, match=err):
            m.decode(bytes(bad))
        with pytest.raises(DecodeError, match=err):
            m.peek_type(bytes(bad))
    for cut in range(1, 43):  # a truncated header: still one typed error
        with pytest.raises(DecodeError):
            m.decode(bytes(data[:cut]))


def test_counts_and_membership_helpers():
    owners = np.array([2, 5, 9], dtype=np.uint32)
    counts = np.array([4, 1, 7])
    ids = np.array([1, 2, 9, 10, 5], dtype=np.uint32)
    assert server_mod._counts_of(ids, owners, counts).tolist() == [0, 4, 7, 0, 1]
    assert server_mod._member(ids, owners).tolist() == [False, True, True, False, True]
    empty = np.empty(0, dtype=np.uint32)
    assert server_mod._member(ids, empty).tolist() == [False] * 5
    assert server_mod._counts_of(ids, empty, np.empty(0, dtype=np.int64)).tolist() == [0] * 5


def _at_masked(n=6, t=3):
    h = Harness.make(n, protocol=ProtocolKind.SECAGG, threshold=t)
    h.drive(stop=Phase.MASKED_INPUT, hold=1, finalize=False)
    return h


def test_holder_counts_equal_a_counter():
    h = _at_masked()
    s = h.server
    owners, counts = s._holder_counts([2, 3, 4])
    want: dict[int, int] = {}
    for w in (2, 3, 4):
        for v in s._senders_to[w].tolist():
            want[v] = want.get(v, 0) + 1
    assert dict(zip(owners.tolist(), counts.tolist(), strict=True)) == want
    assert owners.dtype == np.uint32
    o, c = s._holder_counts([])
    assert o.tolist() == [] and c.tolist() == []


def test_dropped_masks_unrecoverable_names_the_first_such_client():
    h = _at_masked(n=6, t=3)
    s = h.server
    # pretend only 1..4 masked; 5 and 6 dropped; 5's shares held by one survivor only
    s._masked = {1, 2, 3, 4}
    for u in (1, 2, 3, 4):
        keep = [v for v in s._senders_to[u].tolist() if v != 5 or u == 1]
        s._senders_to[u] = np.asarray(keep, dtype=np.uint32)
    out = s._close_masked()
    assert s.abort_code is AbortReason.DROPPED_MASKS_UNRECOVERABLE
    assert "dropped client 5's masks" in (s.abort_reason or "")
    assert sorted(u for u, _ in out) == [1, 2, 3, 4]


def test_self_mask_unrecoverable_names_the_first_such_client():
    h = _at_masked(n=6, t=3)
    s = h.server
    s._masked = {1, 2, 3, 4, 5, 6}
    for u in (1, 2, 3, 4, 5, 6):
        keep = [v for v in s._senders_to[u].tolist() if v not in (2, 4) or u == 6]
        s._senders_to[u] = np.asarray(keep, dtype=np.uint32)
    s._close_masked()
    assert s.abort_code is AbortReason.SELF_MASK_UNRECOVERABLE
    assert "client 2's self mask" in (s.abort_reason or "")


def test_share_keys_to_the_wrong_owners_is_refused_from_bytes_and_objects():
    s = Harness.make(6, protocol=ProtocolKind.SECAGG, threshold=3)
    s.drive(stop=Phase.SHARE_KEYS, hold=2, finalize=False)
    srv = s.server
    good = next(x for x in s.sent[2] if isinstance(x, m.ShareKeys))
    wrong = m.ShareKeys(session_id=good.session_id, sender=2, recipient=0,
                        boxes=tuple(good.boxes)[1:])
    before = dict(srv._boxes_from)
    with pytest.raises(RemoteProtocolError, match="exactly N"):
        srv.receive(2, m.encode(wrong))
    with pytest.raises(RemoteProtocolError, match="exactly N"):
        srv.handle(2, wrong)
    assert srv._boxes_from == before
    assert srv.receive(2, m.encode(good)) is not None


def test_box_lists_equal_box_list_per_slice_and_refuse_bad_slices():
    ids = [3, 5, 9, 1, 2, 2, 7]
    arr = np.frombuffer(_recs(ids), dtype=m.BOX_RECORD_DTYPE)
    good = [(0, 3), (3, 5), (5, 5), (6, 7), (5, 6)]
    got = m.box_lists(arr, good)
    for (a, b), bl in zip(good, got, strict=True):
        assert bl == m.box_list(arr[a:b].copy()) and bl.records() == arr[a:b].tobytes()
    for bad in ((2, 4), (4, 6), (0, 7)):  # 9 then 1; 2 then 2
        with pytest.raises(DecodeError):
            m.box_lists(arr, [bad])
    zero = np.frombuffer(_recs([0, 4]), dtype=m.BOX_RECORD_DTYPE)
    with pytest.raises(DecodeError):
        m.box_lists(zero, [(0, 2)])
    assert m.box_lists(zero, [(1, 2)])[0].ids.tolist() == [4]
    with pytest.raises(ParameterError):
        m.box_lists(arr, [(3, 9)])
    with pytest.raises(ParameterError):
        m.box_lists(np.zeros(3, dtype=np.uint8), [(0, 1)])


def test_box_list_pickles_and_copies_as_an_equal_box_list():
    import copy
    import pickle

    data = m.encode(m.ShareKeys(session_id=SID, sender=2, recipient=0,
                                boxes=m.box_list(_recs((4, 8)))))
    boxes = m.decode(data).boxes  # a view of the message buffer
    for other in (pickle.loads(pickle.dumps(boxes)), copy.deepcopy(boxes), copy.copy(boxes)):
        assert type(other) is m.BoxList and other == boxes and other.records() == boxes.records()
    msg = m.decode(data)
    assert copy.deepcopy(msg) == msg
