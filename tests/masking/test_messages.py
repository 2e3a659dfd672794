"""Codec: round trips for every message type; truncated or garbled bytes raise
DecodeError and leave the receiving party unchanged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import DecodeError, ParameterError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase

from .masking_harness import Harness

SID = bytes(range(32))


def _samples() -> list[m.Message]:
    h = Harness.make(
        5, protocol=ProtocolKind.SECAGG_PLUS, security=SecurityMode.MALICIOUS, threshold=3
    )
    h.drive()
    out: dict[m.MessageType, m.Message] = {}
    for u in h.config.clients:
        for x in h.sent[u] + h.received[u]:
            out.setdefault(x.TYPE, x)
    out[m.MessageType.ABORT] = m.Abort(
        session_id=SID, sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS, reason="dropouts ✓"
    )
    assert set(out) == set(m.MessageType)
    return list(out.values())


SAMPLES = _samples()


def _eq(a: m.Message, b: m.Message) -> bool:
    if isinstance(a, m.MaskedInput):
        assert isinstance(b, m.MaskedInput)
        return (
            (a.session_id, a.sender, a.recipient, a.bits)
            == (
                b.session_id,
                b.sender,
                b.recipient,
                b.bits,
            )
            and a.view == b.view
            and np.array_equal(a.vector, b.vector)
        )
    return a == b


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    data = m.encode(msg)
    back = m.decode(data)
    assert type(back) is type(msg) and _eq(back, msg)
    assert m.encode(back) == data
    assert data[:2] == b"\x00\x02" and data[2] == int(msg.TYPE)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_truncation_and_extension_rejected(msg: m.Message) -> None:
    data = m.encode(msg)
    step = max(1, len(data) // 200)
    for cut in range(0, len(data), step):
        with pytest.raises(DecodeError):
            m.decode(data[:cut])
    with pytest.raises(DecodeError):
        m.decode(data + b"\x00")


def test_header_fields_checked() -> None:
    data = bytearray(m.encode(SAMPLES[0]))
    for pos, val in ((1, 1), (1, 3), (2, 99), (3, 7)):  # version (v1 refused), type, round
        bad = bytearray(data)
        bad[pos] = val
        with pytest.raises(DecodeError):
            m.decode(bytes(bad))


@given(st.data())
def test_garbled_bytes_raise_decode_error_or_decode_cleanly(data: st.DataObject) -> None:
    msg = data.draw(st.sampled_from(SAMPLES))
    raw = bytearray(m.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        back = m.decode(bytes(raw))
    except DecodeError:
        return
    # if it still parses, it re-encodes to exactly the same bytes (canonical codec)
    assert m.encode(back) == bytes(raw)


def test_unordered_or_zero_ids_rejected() -> None:
    req = next(x for x in SAMPLES if isinstance(x, m.UnmaskingRequest))
    with pytest.raises(ParameterError):
        dataclasses.replace(req, survivors=tuple(reversed(req.survivors)))
    w = bytearray(m.encode(dataclasses.replace(req, survivors=(1, 2), dropped=(), signatures=())))
    # header is 44 bytes; survivors count at 44, ids at 48 and 52: repeat the first id
    assert w[44:56] == b"\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02"
    w[52:56] = w[48:52]
    with pytest.raises(DecodeError):
        m.decode(bytes(w))


VIEW = bytes(range(100, 132))


def test_masked_input_bounds() -> None:
    v = np.array([1, 2, 5], dtype=np.uint32)
    with pytest.raises(ParameterError):
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=2, vector=v, view=VIEW)
    with pytest.raises(ParameterError):
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=40, vector=v, view=VIEW)
    with pytest.raises(ParameterError):
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=2, vector=v % 4, view=b"x")
    ok = m.encode(
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=2, vector=v % 4, view=VIEW)
    )
    # header 44 bytes, u8 bits, u64 length, view[32], then 3 elements x 2 bits = 1 byte
    assert len(ok) == 44 + 1 + 8 + 32 + 1 and ok[-1] == 1 | 2 << 2 | 1 << 4
    bad = bytearray(ok)
    bad[-1] |= 0x40  # a padding bit
    with pytest.raises(DecodeError):
        m.decode(bytes(bad))
    with pytest.raises(DecodeError):
        m.decode_masked_input(bytes(bad))
    lying_len = bytearray(ok)
    assert lying_len[44] == 2 and lying_len[52] == 3  # u8 bits, u64 length (45..52)
    lying_len[52] = 5  # 10 bits would need 2 bytes
    with pytest.raises(DecodeError):
        m.decode(bytes(lying_len))
    lying_len[52] = 4  # 8 bits fit the byte: decodes, the padding now is element 3
    assert len(m.decode(bytes(lying_len)).vector) == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize("bits", [1, 3, 8, 13, 16, 19, 31, 32, 33, 47, 64])
def test_masked_input_packs_at_b_bits_and_streams(bits: int) -> None:
    rng = np.random.default_rng(bits)
    n = 1000 + bits
    dt = np.uint32 if bits <= 32 else np.uint64
    v = rng.integers(0, 2**bits, size=n, dtype=np.uint64).astype(dt)
    msg = m.MaskedInput(session_id=SID, sender=7, recipient=0, bits=bits, vector=v, view=VIEW)
    data = m.encode(msg)
    assert len(data) == 44 + 1 + 8 + 32 + (n * bits + 7) // 8
    view = m.decode_masked_input(data)
    got = np.concatenate([part for _, part in view.chunks(64)])
    np.testing.assert_array_equal(got, v)
    np.testing.assert_array_equal(m.decode(data).vector, v)  # type: ignore[attr-defined]
    prefix = m.masked_input_prefix(session_id=SID, sender=7, bits=bits, length=n, view=VIEW)
    from secagg.encoding.bitpack import pack

    assert prefix + b"".join(pack(v[a : a + 96], bits) for a in range(0, n, 96)) == data


def test_peek_type_validates_the_header_only() -> None:
    for msg in SAMPLES:
        data = m.encode(msg)
        assert m.peek_type(data) is msg.TYPE
        assert m.peek_type(data[:44]) is msg.TYPE  # body not read
    data = bytearray(m.encode(SAMPLES[0]))
    for bad in (data[:43], b"\x00\x01" + data[2:], data[:2] + b"\x63" + data[3:]):
        with pytest.raises(DecodeError):
            m.peek_type(bytes(bad))
    wrong_round = bytearray(data)
    wrong_round[3] ^= 1
    with pytest.raises(DecodeError):
        m.peek_type(bytes(wrong_round))
    # a bytearray, a byte view and a view of another item size (read as its bytes)
    for msg in SAMPLES:
        data = m.encode(msg)
        padded = data + bytes(-len(data) % 4)
        for form in (bytearray(data), memoryview(data), memoryview(padded).cast("I")):
            assert m.peek_type(form) is msg.TYPE
        for cut in (bytearray(data[:43]), memoryview(data)[:43],
                    memoryview(data[:40]).cast("I")):
            with pytest.raises(DecodeError, match="truncated"):
                m.peek_type(cut)
    with pytest.raises(DecodeError, match="expected bytes"):
        m.peek_type("not bytes")  # type: ignore[arg-type]


def test_direction_enforced() -> None:
    with pytest.raises(ParameterError):
        m.KeysBroadcast(session_id=SID, sender=1, recipient=0, entries=())
    with pytest.raises(ParameterError):
        m.AdvertiseKeys(
            session_id=SID,
            sender=0,
            recipient=1,
            c_pk=bytes(32),
            s_pk=bytes(32),
            commitment=bytes(32),
            seed_commitment=bytes(32),
        )
    for cls in (m.SeedRequest, m.SeedReveal):
        with pytest.raises(ParameterError):  # wrong direction
            kw = {"commitments": ()} if cls is m.SeedRequest else {"reveal": bytes(32)}
            cls(
                session_id=SID,
                sender=1 if cls is m.SeedRequest else 0,
                recipient=0 if cls is m.SeedRequest else 1,
                **kw,
            )


def test_share_plaintext_round_trip() -> None:
    pt = m.encode_share_plaintext(3, 9, 12345, 2**256)
    assert len(pt) == m.SHARE_PLAINTEXT_BYTES
    assert m.decode_share_plaintext(pt) == (3, 9, 12345, 2**256)
    with pytest.raises(DecodeError):
        m.decode_share_plaintext(pt[:-1])


def test_garbled_bytes_leave_client_and_server_unchanged() -> None:
    h = Harness.make(5, threshold=3)
    held = h.drive(stop=Phase.SHARE_KEYS, hold=2)
    assert held is not None
    raw = m.encode(held)
    before = (h.server.phase, h.server.sets, h.server.awaiting)
    for bad in (raw[:-3], raw[:10], b"", raw + b"x", b"\x00\x01" + raw[2:]):
        with pytest.raises(DecodeError):
            h.server.receive(2, bad)
    assert (h.server.phase, h.server.sets, h.server.awaiting) == before
    c = h.clients[2]
    assert c.phase is Phase.SHARE_KEYS
    for bad in (b"", b"\x00\x01\x04", bytes(200)):
        with pytest.raises(DecodeError):
            c.receive(bad)
    assert c.phase is Phase.SHARE_KEYS
