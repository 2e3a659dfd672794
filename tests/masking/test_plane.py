"""The batched key-and-share plane gives the bytes of the one-at-a-time reference.

Nothing on the wire or in a derivation may change: the per-round label prefixes,
the share keys and pairwise seeds, the share boxes and the bulk message codecs
are compared with the plain helpers they replace, and their refusals are typed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from secagg.errors import CryptoError, DecodeError, ParameterError
from secagg.masking import _common as cm
from secagg.masking import _plane
from secagg.masking import messages as m
from secagg.primitives import aead, kdf
from secagg.primitives.field import P
from secagg.primitives.kex import KeyPair
from secagg.primitives.rand import InsecureDeterministicRandom

SID = bytes(range(32))


def _rng(seed: int) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed, warn=False)


def test_info_prefix_and_int_fields_equal_encode_info():
    for fields in ((), (1,), (3, 2**64 - 1), (7, 9, 11, 0)):
        built = kdf.info_prefix("p", SID, len(fields)) + b"".join(kdf.int_field(f) for f in fields)
        assert built == kdf.encode_info("p", SID, fields)
    assert kdf.encode_info("p", SID, (b"x", "y", 5)) == kdf.encode_info("p", SID, [b"x", "y", 5])
    for bad in (-1, 2**64, True):
        with pytest.raises(ParameterError):
            kdf.int_field(bad)
    with pytest.raises(ParameterError):
        kdf.info_prefix("", SID, 0)
    with pytest.raises(ParameterError):
        kdf.derive_info(b"short", b"info")


def test_round_labels_equal_reference_helpers():
    lab = _plane.labels(SID)
    assert lab.box_ad(3, 9) == aead.associated_data(
        session_id=SID, round_=cm.SHARE_ROUND, sender=3, receiver=9, context=cm.SHARE_CONTEXT
    )
    a, b = KeyPair.generate(_rng(1)), KeyPair.generate(_rng(2))
    keys = _plane.share_keys(a.private, 5, [(2, b.public), (9, b.public)], lab)
    for v in (2, 9):
        assert keys[v] == cm.share_key(a.private, b.public, session_id=SID, a=5, b=v)
    with pytest.raises(ParameterError):
        _plane.share_keys(a.private, 5, [(5, b.public)], lab)
    with pytest.raises(ParameterError):
        _plane.share_keys(a.private, 5, [(6, b"short")], lab)
    with pytest.raises(CryptoError):
        _plane.share_keys(a.private, 5, [(6, bytes(32))], lab)  # low-order point


def test_pairwise_seeds_through_an_executor_equal_reference():
    lab = _plane.labels(SID)
    kps = [KeyPair.generate(_rng(i)) for i in range(12)]
    pairs = [(kps[i].private, kps[j].public, i + 1, j + 1) for i in range(4) for j in range(4, 12)]
    want = [
        cm.pairwise_seed(sk, pk, session_id=SID, a=a, b=b) for sk, pk, a, b in pairs
    ]
    assert _plane.pairwise_seeds(pairs, lab) == want
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert _plane.pairwise_seeds(pairs, lab, pool.map, batch=5) == want


def test_share_boxes_equal_reference_and_open():
    lab = _plane.labels(SID)
    owners = [2, 5, 9]
    keys = {v: bytes([v]) * 32 for v in owners}
    b_row, s_row = [1, P - 1, 2**256], [0, 7, 2**255]
    boxes = _plane.seal_share_boxes(1, owners, keys, b_row, s_row, lab, _rng(3))
    ref_rng = _rng(3)
    for (v, box), b, s in zip(boxes, b_row, s_row, strict=True):
        pt = m.encode_share_plaintext(1, v, b, s)
        assert box == aead.seal(
            keys[v], pt, session_id=SID, round_=cm.SHARE_ROUND, sender=1, receiver=v,
            context=cm.SHARE_CONTEXT, rng=ref_rng,
        )
    # each holder v opens the box from 1 (its key for 1 is the same symmetric key)
    for (v, box), b, s in zip(boxes, b_row, s_row, strict=True):
        assert _plane.open_share_boxes(v, [(1, box)], {1: keys[v]}, lab) == {1: (b, s)}


@pytest.mark.parametrize("what", ["tampered", "wrong-holder", "wrong-owner", "out-of-field"])
def test_open_share_boxes_refuses_with_one_opaque_error(what):
    lab = _plane.labels(SID)
    key = bytes(32)
    owner, holder, b, s = 4, 1, 5, 6
    if what == "wrong-holder":
        holder = 2
    if what == "wrong-owner":
        owner = 3
    pt = owner.to_bytes(4, "big") + holder.to_bytes(4, "big") + b.to_bytes(33, "big")
    pt += (P if what == "out-of-field" else s).to_bytes(33, "big")
    box = aead.seal_with_ad(key, pt, lab.box_ad(4, 1), rng=_rng(1))
    if what == "tampered":
        box = box[:-1] + bytes([box[-1] ^ 1])
    with pytest.raises(CryptoError):
        _plane.open_share_boxes(1, [(4, box)], {4: key}, lab)


def _header(tcode: int, rnd: int, sender: int, recipient: int) -> bytes:
    return (
        m.WIRE_VERSION.to_bytes(2, "big") + bytes([tcode, rnd]) + SID
        + sender.to_bytes(4, "big") + recipient.to_bytes(4, "big")
    )


def test_bulk_share_decode_round_trips_and_refuses():
    shares = ((2, m.ShareKind.SELF_MASK, P - 1), (7, m.ShareKind.MASK_KEY, 2**256), (9,
              m.ShareKind.SELF_MASK, 0))
    msg = m.UnmaskingResponse(session_id=SID, sender=1, recipient=0, shares=shares)
    data = m.encode(msg)
    back = m.decode(data)
    assert back == msg and m.encode(back) == data
    head = _header(9, 4, 1, 0)

    def body(recs):
        return len(recs).to_bytes(4, "big") + b"".join(
            o.to_bytes(4, "big") + bytes([k]) + y.to_bytes(33, "big") for o, k, y in recs
        )

    assert head + body([(2, 1, 5)]) == m.encode(
        m.UnmaskingResponse(session_id=SID, sender=1, recipient=0,
                            shares=((2, m.ShareKind.SELF_MASK, 5),))
    )
    for bad in ([(3, 1, 5), (2, 1, 5)], [(2, 3, 5)], [(2, 1, P)], [(0, 1, 5)],
                [(2, 1, 2**264 - 1)]):
        with pytest.raises(DecodeError):
            m.decode(head + body(bad))


def test_bulk_box_decode_and_unsigned_entries():
    box = bytes(m.BOX_BYTES)
    msg = m.ShareKeys(session_id=SID, sender=1, recipient=0, boxes=((2, box), (5, box)))
    data = m.encode(msg)
    assert m.decode(data) == msg
    bad = _header(3, 1, 1, 0) + (2).to_bytes(4, "big") + (5).to_bytes(4, "big") + box
    bad += (2).to_bytes(4, "big") + box
    with pytest.raises(DecodeError):
        m.decode(bad)
    # a decoded box list is a tuple the constructor accepts as is; a list is rechecked
    with pytest.raises(ParameterError):
        m.ShareKeys(session_id=SID, sender=1, recipient=0, boxes=[(5, box), (2, box)])
    with pytest.raises(ParameterError):
        m.ShareKeys(session_id=SID, sender=1, recipient=0, boxes=((2, box[:-1]),))
    entries = tuple(
        m.KeyEntry(owner=v, c_pk=bytes([v]) * 32, s_pk=bytes([v + 1]) * 32,
                   commitment=bytes(32), seed_commitment=bytes(32), signature=sig)
        for v, sig in ((2, b""), (4, b""), (6, b"s" * 64))
    )
    for ents in (entries[:2], entries):  # unsigned (bulk path) and mixed (general path)
        kb = m.KeysBroadcast(session_id=SID, sender=0, recipient=1, entries=ents)
        assert m.decode(m.encode(kb)) == kb
    unsorted = m.encode(
        m.KeysBroadcast(session_id=SID, sender=0, recipient=1, entries=entries[:2])
    )
    swapped = unsorted[:48] + unsorted[48 + 101 : 48 + 202] + unsorted[48 : 48 + 101]
    with pytest.raises(DecodeError):
        m.decode(swapped)


def test_server_spreads_dropped_seeds_over_an_injected_map_and_sums_right():
    """Server(map_fn=executor.map): the same mask jobs and the exact sum over survivors."""
    from secagg.masking.server import Server
    from secagg.phase import Phase

    from .masking_harness import Harness

    drops = {2: 2, 5: 2}  # stop replying before the masked input: pairwise masks rebuilt
    plain = Harness.make(9, seed=11)
    plain.drive(drops=drops, stop=Phase.FINALIZING)
    spread = Harness.make(9, seed=11)
    with ThreadPoolExecutor(max_workers=2) as pool:
        spread.server = Server(config=spread.config, map_fn=pool.map)
        spread.drive(drops=drops, stop=Phase.FINALIZING)
    assert spread.server.phase is Phase.FINALIZING
    assert spread.server.mask_jobs == plain.server.mask_jobs
    assert len(spread.server.mask_jobs) == 7 + 2 * 7  # 7 self masks + 2 dropped x 7 survivors
    total = spread.server.finalize()
    assert (total == spread.expected_sum(spread.server.survivors)).all()
