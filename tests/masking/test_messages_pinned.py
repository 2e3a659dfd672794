"""The message layer's refusals in words (issue 20, mutation triage of a sample).

``test_messages.py`` and ``test_plane.py`` check that malformed messages are refused
with the right error type; these tests pin the text a caller reads.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import DecodeError, ParameterError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.primitives.field import P

SID = bytes(range(32))


def test_an_abort_reason_that_is_not_utf8_is_refused_in_words():
    data = m.encode(
        m.Abort(session_id=SID, sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS, reason="x")
    )
    assert data.endswith(b"x")
    assert m.decode(data).reason == "x"
    with pytest.raises(DecodeError, match=r"^abort reason is not UTF-8$"):
        m.decode(data[:-1] + b"\xff")


def test_an_unknown_share_kind_is_refused_in_words():
    msg = m.UnmaskingResponse(
        session_id=SID, sender=1, recipient=0, shares=((2, m.ShareKind.SELF_MASK, P - 1),)
    )
    data = m.encode(msg)
    kind_at = len(data) - 33 - 1
    assert data[kind_at] == int(m.ShareKind.SELF_MASK)
    for bad in (0, 3):
        raw = data[:kind_at] + bytes([bad]) + data[kind_at + 1 :]
        with pytest.raises(DecodeError, match=r"^unknown share kind$"):
            m.decode(raw)


def test_constructor_refusals_name_the_field():
    box = bytes(m.BOX_BYTES)
    with pytest.raises(ParameterError, match=r"^box senders must be strictly ascending$"):
        m.MaskedInputRequest(session_id=SID, sender=0, recipient=1, boxes=((5, box), (2, box)))
    with pytest.raises(ParameterError, match=r"^reveal owners must be strictly ascending$"):
        m.KeysBroadcast(
            session_id=SID,
            sender=0,
            recipient=1,
            entries=(),
            reveals=(m.Reveal(owner=4, reveal=bytes(32)), m.Reveal(owner=2, reveal=bytes(32))),
        )
    with pytest.raises(ParameterError, match=r"^signature must be 64 bytes$"):
        m.UnmaskingRequest(
            session_id=SID,
            sender=0,
            recipient=1,
            survivors=(1, 2),
            dropped=(),
            signatures=((1, bytes(63)),),
        )


# survivors of the seed-27 sample
@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_a_box_list_keeps_its_own_copy_of_writable_records(wrap):
    """Records given as a bytearray (or a view of one) are copied: a caller that reuses
    its buffer afterwards must not change a decoded list behind its back."""
    recs = b"".join(i.to_bytes(4, "big") + bytes([i]) * m.BOX_BYTES for i in (2, 5, 9))
    buf = bytearray(recs)
    boxes = m.box_list(wrap(buf))
    buf[:] = bytes(len(buf))  # the caller reuses its buffer
    assert boxes.records() == recs
    assert [v for v, _ in boxes] == [2, 5, 9]
    assert boxes[0] == (2, bytes([2]) * m.BOX_BYTES)


def test_a_masked_input_prefix_names_a_bad_length():
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ParameterError, match=r"^length must be a positive integer$"):
            m.masked_input_prefix(
                session_id=bytes(32), sender=1, bits=16, length=bad, view=bytes(32)
            )


def test_a_reveal_with_a_signature_of_the_wrong_size_names_the_field():
    with pytest.raises(ParameterError, match=r"^signature must be 64 bytes$"):
        m.Reveal(owner=3, reveal=bytes(32), signature=bytes(63))


def test_box_lists_name_a_slice_out_of_order():
    recs = b"".join(i.to_bytes(4, "big") + bytes(m.BOX_BYTES) for i in (2, 5, 3))
    a = np.frombuffer(recs, dtype=m.BOX_RECORD_DTYPE)
    assert [len(b) for b in m.box_lists(a, [(0, 2), (2, 3)])] == [2, 1]
    with pytest.raises(DecodeError, match=r"^box ids must be >= 1 and strictly ascending$"):
        m.box_lists(a, [(0, 3)])


def test_a_masked_input_view_yields_chunks_of_eight_elements():
    vec = np.arange(20, dtype=np.uint32)
    msg = m.MaskedInput(session_id=SID, sender=4, recipient=0, bits=32, vector=vec,
                        view=bytes(32))
    view = m.decode_masked_input(m.encode(msg))
    got = list(view.chunks(8))  # the smallest chunk allowed
    assert [off for off, _ in got] == [0, 8, 16]
    assert np.array_equal(np.concatenate([c for _, c in got]), vec)
    for bad in (0, 4, 12):
        with pytest.raises(ParameterError, match="positive multiple of 8"):
            list(view.chunks(bad))


def test_a_seed_request_with_committers_out_of_order_is_refused_in_words():
    coms = tuple((u, bytes([u]) * 32) for u in (1, 2, 3))
    data = bytearray(m.encode(m.SeedRequest(session_id=SID, sender=0, recipient=2,
                                            commitments=coms)))
    rec = 4 + 32
    first = data.index((1).to_bytes(4, "big") + bytes([1]) * 32)
    data[first : first + 2 * rec] = data[first + rec : first + 2 * rec] + data[first : first + rec]
    with pytest.raises(DecodeError, match=r"^committers must be >= 1 and strictly ascending$"):
        m.decode(bytes(data))


def test_an_entry_table_of_something_else_is_refused_in_words():
    with pytest.raises(ParameterError, match=r"^entries must be KeyEntry$"):
        m.EntryTable([("not", "an entry")])


@pytest.mark.parametrize("bits", [0, 65, 255])
def test_a_masked_input_with_an_impossible_bit_width_is_refused_in_words(bits):
    msg = m.MaskedInput(session_id=SID, sender=4, recipient=0, bits=16,
                        vector=np.arange(8, dtype=np.uint32), view=bytes(32))
    data = bytearray(m.encode(msg))
    assert data[44] == 16  # the bits byte follows the 44-byte header
    data[44] = bits
    with pytest.raises(DecodeError, match=r"^bits out of range$"):
        m.decode_masked_input(bytes(data))


def _keys_broadcast(reveals=()):
    entries = tuple(
        m.KeyEntry(owner=u, c_pk=bytes([u]) * 32, s_pk=bytes([u + 50]) * 32,
                   commitment=bytes(32), seed_commitment=bytes(32))
        for u in (1, 3)
    )
    return m.KeysBroadcast(session_id=SID, sender=0, recipient=2, entries=entries,
                           reveals=reveals)


def test_a_reveal_whose_signature_flag_is_neither_0_nor_1_is_refused_in_words():
    data = bytearray(m.encode(_keys_broadcast((m.Reveal(owner=1, reveal=bytes([7]) * 32),))))
    at = data.index((1).to_bytes(4, "big") + bytes([7]) * 32) + 4 + 32
    assert data[at] == 0  # the flag of the one (unsigned) reveal
    data[at] = 2
    with pytest.raises(DecodeError, match=r"^signature flag must be 0 or 1$"):
        m.decode(bytes(data))


def test_a_key_entry_count_beyond_what_the_bytes_can_hold_is_refused_as_such():
    data = bytearray(m.encode(_keys_broadcast()))
    at = 44 + 4  # the header, then the (empty) reveal count
    assert int.from_bytes(data[at : at + 4], "big") == 2
    left = len(data) - at - 4
    n = left // (4 + 4 * 32 + 1) + 1  # one more than records of that size could fill
    assert n <= left
    data[at : at + 4] = n.to_bytes(4, "big")
    with pytest.raises(DecodeError, match=rf"^element count {n} is out of bounds$"):
        m.decode(bytes(data))


# survivors of a sixth sample (seed 28) of messages.py
def test_an_id_list_with_a_float_is_refused_not_passed_through():
    for bad in ((1, 2.0, 3), (1, "2", 3)):
        with pytest.raises(ParameterError):
            m.UnmaskingRequest(session_id=SID, sender=0, recipient=1, survivors=bad, dropped=())


def test_box_records_out_of_order_are_refused_in_words():
    recs = b"".join(i.to_bytes(4, "big") + bytes(m.BOX_BYTES) for i in (5, 2))
    with pytest.raises(DecodeError, match=r"^box ids must be >= 1 and strictly ascending$"):
        m.box_list(recs)


def test_an_abort_reason_over_1024_bytes_is_refused_in_words():
    with pytest.raises(ParameterError,
                       match=r"^reason must be a string of at most 1024 UTF-8 bytes$"):
        m.Abort(session_id=SID, sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS,
                reason="é" * 513)


def test_an_unmasking_response_with_no_shares_decodes():
    msg = m.UnmaskingResponse(session_id=SID, sender=3, recipient=0, shares=())
    got = m.decode(m.encode(msg))
    assert isinstance(got, m.UnmaskingResponse) and tuple(got.shares) == ()
    assert len(m.decode_unmasking_response(m.encode(msg)).owners) == 0


def test_a_masked_input_whose_length_does_not_match_its_bytes_is_refused_in_words():
    msg = m.MaskedInput(session_id=SID, sender=4, recipient=0, bits=16,
                        vector=np.arange(8, dtype=np.uint32), view=bytes(32))
    data = m.encode(msg)
    with pytest.raises(DecodeError, match=r"^masked vector length does not match the bytes$"):
        m.decode_masked_input(data[:-2])


def test_a_header_whose_round_does_not_fit_its_type_is_refused_in_words():
    data = bytearray(m.encode(m.Abort(session_id=SID, sender=0, recipient=3,
                                      code=AbortReason.TOO_FEW_KEYS, reason="x")))
    data[3] ^= 1  # the round byte
    for cut in (len(data), 4):  # a whole message, and a header cut short after the round
        with pytest.raises(DecodeError, match=r"^round field does not match the message type$"):
            m.decode(bytes(data[:cut]))
