"""The codec's other entry points — box lists, the streaming decoders, the MaskedInput
prefix, the U1 list columns — in exact words and at their boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding import bitpack
from secagg.errors import DecodeError, ParameterError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.primitives.prg import dtype_for_bits

SID = bytes(range(32))
K = b"k" * 32
BOX = bytes(range(m.BOX_BYTES))


def _records(ids: list[int]) -> bytes:
    return b"".join(i.to_bytes(4, "big") + BOX for i in ids)


def test_box_list_takes_bytes_like_records_and_arrays() -> None:
    raw = _records([2, 5, 9])
    want = ((2, BOX), (5, BOX), (9, BOX))
    arr = np.frombuffer(raw, dtype=m.BOX_RECORD_DTYPE)
    strided = np.frombuffer(_records([2, 3, 5, 7, 9]), dtype=m.BOX_RECORD_DTYPE)[::2]
    for records in (raw, bytearray(raw), memoryview(raw), arr, strided.copy(), strided):
        got = m.box_list(records)
        assert len(got) == 3 and got == want and tuple(got) == want
        assert got.records() == raw and got.ids.tolist() == [2, 5, 9]
        assert hash(got) == hash(want) and repr(got) == repr(want)
        assert got[1] == (5, BOX) and got[1:] == want[1:]
    assert m.box_list(strided).array.flags.writeable is False


def test_box_list_refuses_in_its_exact_words() -> None:
    for bad in (np.zeros(2, dtype=np.uint8), np.zeros((1, 1), dtype=m.BOX_RECORD_DTYPE)):
        with pytest.raises(ParameterError) as exc:
            m.box_list(bad)
        assert str(exc.value) == "box records must be a 1-D BOX_RECORD_DTYPE array"
    with pytest.raises(DecodeError) as dexc:
        m.box_list(_records([1])[:-1])
    assert str(dexc.value) == "box records must be whole records"
    for ids in ([0], [3, 3], [4, 2]):
        with pytest.raises(DecodeError) as dexc:
            m.box_list(_records(ids))
        assert str(dexc.value) == "box ids must be >= 1 and strictly ascending"


def test_a_message_keeps_a_box_list_as_it_is() -> None:
    boxes = m.box_list(_records([1, 2]))
    msg = m.ShareKeys(session_id=SID, sender=3, recipient=0, boxes=boxes)
    assert msg.boxes is boxes
    assert m.encode(msg) == m.encode(
        m.ShareKeys(session_id=SID, sender=3, recipient=0, boxes=tuple(boxes))
    )
    assert m.box_records(boxes) == m.box_records(tuple(boxes)) == _records([1, 2])


def _masked(bits: int, values: list[int], sender: int = 3) -> bytes:
    vec = np.array(values, dtype=dtype_for_bits(bits))
    return m.encode(
        m.MaskedInput(session_id=SID, sender=sender, recipient=0, bits=bits, vector=vec, view=K)
    )


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64])
def test_masked_input_chunks_unpack_every_width(bits: int) -> None:
    values = [(2**bits - 1 - 3 * i) % 2**bits for i in range(41)]
    view = m.decode_masked_input(_masked(bits, values))
    for step in (8, 16, 48):
        got = []
        for off, chunk in view.chunks(step):
            assert off == len(got)
            got += [int(x) for x in chunk]
            if bits in (8, 16, 32, 64):  # the packed bytes themselves, read-only
                assert chunk.dtype == np.dtype(f"<u{bits // 8}")
                assert np.shares_memory(chunk, np.frombuffer(view.packed, dtype=np.uint8))
        assert got == values
    assert view.to_message().vector.tolist() == values
    for step in (0, 4, 12, -8):
        with pytest.raises(ParameterError) as exc:
            next(view.chunks(step))
        assert str(exc.value) == "chunk_elements must be a positive multiple of 8"


def test_the_streaming_decoders_refuse_other_messages_and_directions_in_words() -> None:
    abort = m.encode(
        m.Abort(session_id=SID, sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS, reason="")
    )
    with pytest.raises(DecodeError) as exc:
        m.decode_masked_input(abort)
    assert str(exc.value) == "not a MaskedInput"
    with pytest.raises(DecodeError) as exc:
        m.decode_unmasking_response(abort)
    assert str(exc.value) == "not an UnmaskingResponse"

    resp = m.encode(
        m.UnmaskingResponse(
            session_id=SID, sender=3, recipient=0, shares=((2, m.ShareKind.MASK_KEY, 7),)
        )
    )
    mi = _masked(8, [1, 2, 3])
    for data, decoder in ((resp, m.decode_unmasking_response), (mi, m.decode_masked_input)):
        for sender, recipient, text in (
            (0, 0, "sender must be an integer in [1, 2^32)"),
            (0, 5, "sender must be an integer in [1, 2^32)"),
            (4, 5, "a client message goes to the server (0)"),
        ):
            bad = data[:36] + sender.to_bytes(4, "big") + recipient.to_bytes(4, "big") + data[44:]
            with pytest.raises(DecodeError) as exc:
                decoder(bad)
            assert str(exc.value) == text
    got = m.decode_unmasking_response(resp)
    assert got.owners.dtype == np.uint32 and got.kinds.dtype == np.uint8
    assert got.ys.shape == (1, 33) and got.to_message() == m.decode(resp)


@pytest.mark.parametrize(
    ("y", "ok"),
    [
        (0, True),
        (2**256 - 1, True),
        (2**256, True),
        (m.P - 1, True),
        (m.P, False),
        (m.P + 1, False),
        (2**256 + 2**200, False),
        (2**257, False),
        (2**264 - 1, False),
    ],
)
def test_an_unmasking_response_takes_exactly_the_field_elements(y: int, ok: bool) -> None:
    good = m.encode(
        m.UnmaskingResponse(
            session_id=SID, sender=3, recipient=0, shares=((2, m.ShareKind.MASK_KEY, 0),)
        )
    )
    data = good[:-33] + y.to_bytes(33, "big")
    for decoder in (m.decode, m.decode_unmasking_response):
        if ok:
            decoder(data)
            continue
        with pytest.raises(DecodeError) as exc:
            decoder(data)
        assert str(exc.value) == "field element out of range"
    if ok:
        assert m.decode(data).shares == ((2, m.ShareKind.MASK_KEY, y),)  # type: ignore[attr-defined]


def test_masked_input_prefix_is_the_message_head_and_refuses_in_words() -> None:
    for length in (1, 2, 9):
        values = list(range(length))
        data = _masked(8, values)
        prefix = m.masked_input_prefix(session_id=SID, sender=3, bits=8, length=length, view=K)
        assert prefix + bitpack.pack(np.array(values, dtype=np.uint32), 8) == data
    for kw, text in (
        (dict(length=0), "length must be a positive integer"),
        (dict(length=True), "length must be a positive integer"),
        (dict(length=2.0), "length must be a positive integer"),
        (dict(view=K[1:]), "view must be 32 bytes"),
        (dict(session_id=SID[1:]), "session_id must be 32 bytes"),
        (dict(sender=0), "sender must be an integer in [1, 2^32)"),
        (dict(bits=0), "bits must be an integer in [1, 64], got 0"),
    ):
        args = dict(session_id=SID, sender=3, bits=8, length=4, view=K) | kw
        with pytest.raises(ParameterError) as exc:
            m.masked_input_prefix(**args)  # type: ignore[arg-type]
        assert str(exc.value) == text


def test_an_abort_reason_of_exactly_1024_bytes_is_taken() -> None:
    msg = m.Abort(
        session_id=SID, sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS, reason="é" * 512
    )
    assert m.decode(m.encode(msg)) == msg


def test_the_u1_list_columns_are_the_lists_fields_and_vouch_for_nothing() -> None:
    """``seed_columns`` / ``reveal_columns`` give the id and value columns of a list
    (kept or not); asking for them never marks a list as checked."""
    comms = tuple((i, bytes([i]) * 32) for i in range(1, 21))
    ids = b"".join(i.to_bytes(4, "big") for i in range(1, 21))
    vals = b"".join(bytes([i]) * 32 for i in range(1, 21))
    assert m.seed_columns(comms) == (ids, vals)
    assert m.seed_columns(comms) == (ids, vals)  # kept now
    req = m.SeedRequest(session_id=SID, sender=0, recipient=3, commitments=comms)
    decoded = m.decode(m.encode(req)).commitments  # type: ignore[attr-defined]
    assert m.seed_columns(decoded) == (ids, vals)

    sigs = [bytes([i]) * 64 if i % 3 == 0 else b"" for i in range(1, 21)]
    revs = tuple(
        m.Reveal(owner=i, reveal=bytes([i]) * 32, signature=s)
        for i, s in zip(range(1, 21), sigs, strict=True)
    )
    assert m.reveal_columns(revs) == (ids, vals, 6)
    assert m.reveal_columns(revs) == (ids, vals, 6)
    signed = tuple(m.Reveal(owner=x.owner, reveal=x.reveal, signature=b"s" * 64) for x in revs)
    kb = m.KeysBroadcast(session_id=SID, sender=0, recipient=3, entries=(), reveals=signed)
    decoded_r = m.decode(m.encode(kb)).reveals  # type: ignore[attr-defined]
    assert m.reveal_columns(decoded_r) == (ids, vals, 20)

    bad_comms = tuple(reversed(comms))
    m.seed_columns(bad_comms)
    with pytest.raises(ParameterError, match=r"^committers must be strictly ascending$"):
        m.SeedRequest(session_id=SID, sender=0, recipient=3, commitments=bad_comms)
    bad_revs = tuple(reversed(revs))
    m.reveal_columns(bad_revs)
    with pytest.raises(ParameterError, match=r"^reveal owners must be strictly ascending$"):
        m.KeysBroadcast(session_id=SID, sender=0, recipient=3, entries=(), reveals=bad_revs)


def test_a_response_view_whose_arrays_differ_in_length_is_refused_not_cut() -> None:
    data = m.encode(
        m.UnmaskingResponse(
            session_id=SID,
            sender=3,
            recipient=0,
            shares=((2, m.ShareKind.MASK_KEY, 7), (5, m.ShareKind.SELF_MASK, 9)),
        )
    )
    view = m.decode_unmasking_response(data)
    for cut in ("owners", "kinds", "ys"):
        short = m.UnmaskingResponseView(
            session_id=SID,
            sender=3,
            recipient=0,
            **{
                f: getattr(view, f)[:1] if f == cut else getattr(view, f)
                for f in ("owners", "kinds", "ys")
            },
        )
        with pytest.raises(ValueError, match="zip"):
            short.to_message()
