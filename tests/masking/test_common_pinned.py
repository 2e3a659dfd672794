"""The shared derivations' defaults, edges and refusals (issue 20, mutation triage).

The known-answer vectors pin what the protocol derives; this file pins what they do
not reach: the default (empty) view of the consistency-signature input, how
``ids_bytes`` refuses ids outside ``u32`` on either side, and the batched seed
commitments' refusal of columns of other lengths.
"""

from __future__ import annotations

import pytest

from secagg.errors import ParameterError
from secagg.masking import _common as cm
from secagg.primitives.kdf import encode_info

SID = bytes(range(32))


def test_the_consistency_signature_input_has_an_empty_view_by_default():
    got = cm.consistency_signature_input(session_id=SID, client=3, survivors=[9, 1, 3])
    ids = b"\x00\x00\x00\x01\x00\x00\x00\x03\x00\x00\x00\x09"
    assert got == encode_info("consistency-check-signature", SID, (3, ids, b""))
    assert got == cm.consistency_signature_input(
        session_id=SID, client=3, survivors=(1, 3, 9), view=b""
    )


def test_ids_bytes_is_u32_big_endian_and_refuses_ids_outside_u32():
    assert cm.ids_bytes([]) == b""
    assert cm.ids_bytes([2**32 - 1, 0, 258]) == (
        b"\x00\x00\x00\x00" + b"\x00\x00\x01\x02" + b"\xff\xff\xff\xff"
    )
    with pytest.raises(OverflowError, match=r"^int too big to convert$"):
        cm.ids_bytes([1, 2**32])
    with pytest.raises(OverflowError, match=r"^can't convert negative int to unsigned$"):
        cm.ids_bytes([-1, 2])


def test_seed_commitments_many_equal_one_at_a_time_and_refuse_ragged_columns():
    ids = [2, 7, 2**32 - 1]
    reveals = [bytes([i]) * 32 for i in (1, 2, 3)]
    want = b"".join(
        cm.seed_commitment(r, session_id=SID, client=v) for v, r in zip(ids, reveals, strict=True)
    )
    got = cm.seed_commitments_many(session_id=SID, ids=cm.ids_bytes(ids), reveals=b"".join(reveals))
    assert got == want
    msg = r"^ids and reveals must hold the same number of 4- and 32-byte items$"
    for bad_ids, bad_reveals in (
        (cm.ids_bytes(ids) + b"\x00", b"".join(reveals)),
        (cm.ids_bytes(ids), b"".join(reveals)[:-1]),
        (cm.ids_bytes(ids[:2]), b"".join(reveals)),
    ):
        with pytest.raises(ParameterError, match=msg):
            cm.seed_commitments_many(session_id=SID, ids=bad_ids, reveals=bad_reveals)


def test_ids_bytes_of_int_subclasses_is_the_same_concatenation():
    # not exactly ``int`` (an IntEnum-like id, a bool): the per-id path, same bytes
    class Id(int):
        pass

    ids = [258, 0, 2**32 - 1]
    assert cm.ids_bytes([Id(v) for v in ids]) == cm.ids_bytes(ids)
    assert cm.ids_bytes([True, 7]) == b"\x00\x00\x00\x01\x00\x00\x00\x07"
