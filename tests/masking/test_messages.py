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
from secagg.masking.client import ClientPhase
from secagg.masking.config import SecurityMode
from secagg.masking.server import ServerPhase

from .masking_harness import Harness

SID = bytes(range(32))


def _samples() -> list[m.Message]:
    h = Harness.make(5, security=SecurityMode.MALICIOUS, threshold=3)
    h.drive()
    out: dict[m.MessageType, m.Message] = {}
    for u in h.config.clients:
        for x in h.sent[u] + h.received[u]:
            out.setdefault(x.TYPE, x)
    out[m.MessageType.ABORT] = m.Abort(session_id=SID, sender=0, recipient=3, reason="dropouts ✓")
    assert set(out) == set(m.MessageType)
    return list(out.values())


SAMPLES = _samples()


def _eq(a: m.Message, b: m.Message) -> bool:
    if isinstance(a, m.MaskedInput):
        assert isinstance(b, m.MaskedInput)
        return (a.session_id, a.sender, a.recipient, a.bits) == (
            b.session_id,
            b.sender,
            b.recipient,
            b.bits,
        ) and np.array_equal(a.vector, b.vector)
    return a == b


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_round_trip(msg: m.Message) -> None:
    data = m.encode(msg)
    back = m.decode(data)
    assert type(back) is type(msg) and _eq(back, msg)
    assert m.encode(back) == data
    assert data[:2] == b"\x00\x01" and data[2] == int(msg.TYPE)


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
    for pos, val in ((1, 2), (2, 99), (3, 7)):  # version, type, round
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


def test_masked_input_bounds() -> None:
    v = np.array([1, 2, 5], dtype=np.uint32)
    with pytest.raises(ParameterError):
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=2, vector=v)
    with pytest.raises(ParameterError):
        m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=40, vector=v)
    ok = m.encode(m.MaskedInput(session_id=SID, sender=1, recipient=0, bits=2, vector=v % 4))
    bad = bytearray(ok)
    bad[-1] = 9  # little-endian word 3 becomes 9 << 24 >= 2^2
    with pytest.raises(DecodeError):
        m.decode(bytes(bad))
    lying_len = bytearray(ok)
    assert lying_len[44] == 2 and lying_len[52] == 3  # u8 bits, u64 length (45..52)
    lying_len[52] = 4
    with pytest.raises(DecodeError):
        m.decode(bytes(lying_len))


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
        )


def test_share_plaintext_round_trip() -> None:
    pt = m.encode_share_plaintext(3, 9, 12345, 2**256)
    assert len(pt) == m.SHARE_PLAINTEXT_BYTES
    assert m.decode_share_plaintext(pt) == (3, 9, 12345, 2**256)
    with pytest.raises(DecodeError):
        m.decode_share_plaintext(pt[:-1])


def test_garbled_bytes_leave_client_and_server_unchanged() -> None:
    h = Harness.make(5, threshold=3)
    held = h.drive(stop=ServerPhase.COLLECT_SHARES, hold=2)
    assert held is not None
    raw = m.encode(held)
    before = (h.server.phase, h.server.sets, h.server.expected)
    for bad in (raw[:-3], raw[:10], b"", raw + b"x", b"\x00\x02" + raw[2:]):
        with pytest.raises(DecodeError):
            h.server.receive(2, bad)
    assert (h.server.phase, h.server.sets, h.server.expected) == before
    c = h.clients[2]
    assert c.phase is ClientPhase.AWAIT_BOXES
    for bad in (b"", b"\x00\x01\x04", bytes(200)):
        with pytest.raises(DecodeError):
            c.receive(bad)
    assert c.phase is ClientPhase.AWAIT_BOXES
