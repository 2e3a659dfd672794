"""The codec against a second one written from the spec (``wire_reference.py``).

For random messages of every type — lists from empty to past the 16 items where the
codec starts keeping decoded lists, signatures all present, all absent or mixed —
the library's bytes are the reference's, the library decodes the reference's bytes
to the same message (again when it meets the same bytes twice), and one fault put
into the bytes (a field set to a value the spec refuses, a cut, an extension) is
refused by both, in the same words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import DecodeError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.primitives.prg import dtype_for_bits

from . import wire_reference as ref

#: id lists of a few items, or of around and past the 16 from which the codec keeps a
#: decoded list (ascending, >= 1)
ids_lists = st.one_of(
    st.lists(st.integers(1, 2**32 - 1), max_size=4, unique=True),
    st.lists(st.integers(1, 2**32 - 1), min_size=15, max_size=40, unique=True),
).map(lambda v: tuple(sorted(v)))
key = st.binary(min_size=32, max_size=32)
sig = st.binary(min_size=64, max_size=64)
maybe_sig = st.one_of(st.just(b""), sig)
client = st.integers(1, 2**32 - 1)


@st.composite
def _signed_list(draw: Any, ids: tuple[int, ...], make: Any) -> tuple[Any, ...]:
    shape = draw(st.sampled_from(["unsigned", "signed", "mixed"]))
    out = []
    for i in ids:
        s = {"unsigned": b"", "signed": draw(sig), "mixed": draw(maybe_sig)}[shape]
        out.append(make(i, s))
    return tuple(out)


@st.composite
def plain_messages(draw: Any, types: Any = st.sampled_from(sorted(ref.TYPES))) -> dict[str, Any]:
    t = draw(types)
    _, _, from_client = ref.TYPES[t]
    u = draw(client)
    msg: dict[str, Any] = {
        "type": t,
        "session_id": draw(st.binary(min_size=32, max_size=32)),
        "sender": u if from_client else 0,
        "recipient": 0 if from_client else u,
    }
    if t == 1:
        for f in ("c_pk", "s_pk", "commitment", "seed_commitment"):
            msg[f] = draw(key)
        msg["signature"] = draw(maybe_sig)
    elif t == 11:
        msg["commitments"] = tuple((i, draw(key)) for i in draw(ids_lists))
    elif t == 12:
        msg["reveal"], msg["signature"] = draw(key), draw(maybe_sig)
    elif t == 2:
        msg["reveals"] = draw(_signed_list(draw(ids_lists), lambda i, s: (i, draw(key), s)))
        msg["entries"] = draw(
            _signed_list(
                draw(ids_lists), lambda i, s: (i, draw(key), draw(key), draw(key), draw(key), s)
            )
        )
    elif t in (3, 4):
        n = draw(st.sampled_from([0, 1, 2, 17, 40]))
        boxes = draw(st.lists(client, min_size=n, max_size=n, unique=True))
        msg["boxes"] = tuple(
            (i, draw(st.binary(min_size=ref.BOX, max_size=ref.BOX))) for i in sorted(boxes)
        )
    elif t == 5:
        bits = draw(st.integers(1, 64))
        msg["bits"] = bits
        msg["view"] = draw(key)
        msg["vector"] = draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=40))
    elif t == 6:
        msg["survivors"] = draw(ids_lists)
    elif t == 7:
        msg["signature"] = draw(sig)
    elif t == 8:
        msg["survivors"], msg["dropped"] = draw(ids_lists), draw(ids_lists)
        msg["signatures"] = tuple((i, draw(sig)) for i in draw(ids_lists))
    elif t == 9:
        owners = draw(ids_lists)
        msg["shares"] = tuple(
            (o, draw(st.sampled_from([1, 2])), draw(st.integers(0, ref.P - 1))) for o in owners
        )
    else:
        msg["code"] = int(draw(st.sampled_from(list(AbortReason))))
        msg["reason"] = draw(st.text(max_size=60))
    return msg


def library_message(plain: dict[str, Any]) -> m.Message:
    """The library's message of a plain one, built with its public constructors."""
    t = plain["type"]
    head = {k: plain[k] for k in ("session_id", "sender", "recipient")}
    body = {k: v for k, v in plain.items() if k not in head and k != "type"}
    if t == 2:
        body["reveals"] = tuple(
            m.Reveal(owner=o, reveal=r, signature=s) for o, r, s in body["reveals"]
        )
        body["entries"] = tuple(
            m.KeyEntry(owner=o, c_pk=c, s_pk=s, commitment=h, seed_commitment=g, signature=x)
            for o, c, s, h, g, x in body["entries"]
        )
    elif t == 5:
        body["vector"] = np.array(body["vector"], dtype=dtype_for_bits(body["bits"]))
    elif t == 9:
        body["shares"] = tuple((o, m.ShareKind(k), y) for o, k, y in body["shares"])
    elif t == 10:
        body["code"] = AbortReason(body["code"])
    return m.__dict__[ref.TYPES[t][0]](**head, **body)


def _exact(v: Any, kind: type) -> Any:
    assert type(v) is kind, (v, kind)
    return v


def plain_of(msg: m.Message) -> dict[str, Any]:
    """The plain form of a library message; every field's type is checked exactly."""
    out: dict[str, Any] = {
        "type": int(msg.TYPE),
        "session_id": _exact(msg.session_id, bytes),
        "sender": _exact(msg.sender, int),
        "recipient": _exact(msg.recipient, int),
    }
    if isinstance(msg, (m.AdvertiseKeys, m.SeedReveal)):
        names = ("c_pk", "s_pk", "commitment", "seed_commitment", "signature")
        if isinstance(msg, m.SeedReveal):
            names = ("reveal", "signature")
        out.update({f: _exact(getattr(msg, f), bytes) for f in names})
    elif isinstance(msg, m.SeedRequest):
        out["commitments"] = tuple((_exact(i, int), _exact(g, bytes)) for i, g in msg.commitments)
    elif isinstance(msg, m.KeysBroadcast):
        out["reveals"] = tuple(
            (_exact(x.owner, int), _exact(x.reveal, bytes), _exact(x.signature, bytes))
            for x in msg.reveals
        )
        out["entries"] = tuple(
            tuple(
                _exact(getattr(e, f), int if f == "owner" else bytes)
                for f in ("owner", "c_pk", "s_pk", "commitment", "seed_commitment", "signature")
            )
            for e in msg.entries
        )
    elif isinstance(msg, (m.ShareKeys, m.MaskedInputRequest)):
        out["boxes"] = tuple((_exact(i, int), _exact(b, bytes)) for i, b in msg.boxes)
    elif isinstance(msg, m.MaskedInput):
        assert msg.vector.dtype == dtype_for_bits(msg.bits)
        out.update(bits=msg.bits, view=_exact(msg.view, bytes), vector=msg.vector.tolist())
    elif isinstance(msg, m.ConsistencyRequest):
        out["survivors"] = tuple(_exact(i, int) for i in msg.survivors)
    elif isinstance(msg, m.ConsistencySignature):
        out["signature"] = _exact(msg.signature, bytes)
    elif isinstance(msg, m.UnmaskingRequest):
        out["survivors"] = tuple(_exact(i, int) for i in msg.survivors)
        out["dropped"] = tuple(_exact(i, int) for i in msg.dropped)
        out["signatures"] = tuple((_exact(i, int), _exact(s, bytes)) for i, s in msg.signatures)
    elif isinstance(msg, m.UnmaskingResponse):
        out["shares"] = tuple(
            (_exact(o, int), int(_exact(k, m.ShareKind)), _exact(y, int)) for o, k, y in msg.shares
        )
    else:
        assert isinstance(msg, m.Abort)
        out.update(code=int(_exact(msg.code, AbortReason)), reason=_exact(msg.reason, str))
    return out


def _library_decode(data: bytes) -> dict[str, Any] | str:
    """The plain message the library decodes, or the words it refuses with."""
    try:
        return plain_of(m.decode(data))
    except DecodeError as exc:
        return f"refused: {exc}"


def _reference_decode(data: bytes) -> dict[str, Any] | str:
    try:
        return ref.decode(data)
    except ref.Refused as exc:
        return f"refused: {exc.text}"


#: one run per message type, each drawing its messages from ``data``
each_type = pytest.mark.parametrize("t", sorted(ref.TYPES), ids=lambda t: ref.TYPES[t][0])


def _draw(data: Any, t: int) -> tuple[dict[str, Any], bytes]:
    plain = data.draw(plain_messages(st.just(t)), label="message")
    return plain, ref.encode(plain)


@each_type
@settings(max_examples=40)
@given(data=st.data())
def test_the_library_writes_and_reads_what_the_spec_says(t: int, data: Any) -> None:
    plain, wire = _draw(data, t)
    msg = library_message(plain)
    assert m.encode(msg) == wire
    assert m.encode(msg) == wire  # a list the first encode kept is written the same
    assert ref.decode(wire) == plain  # the reference agrees with itself
    first = m.decode(wire)
    assert plain_of(first) == plain
    again = m.decode(bytes(wire))  # the same bytes again (a kept list, if long)
    assert plain_of(again) == plain
    assert m.encode(again) == wire and m.encode(first) == wire
    assert plain_of(m.decode(bytearray(wire))) == plain
    assert m.peek_type(wire) == plain["type"]
    assert m.peek_type(memoryview(wire)) == plain["type"]


@settings(max_examples=150)
@given(plain_messages(st.sampled_from([2, 11])), st.data())
def test_a_kept_list_is_returned_only_for_its_own_bytes(plain: dict[str, Any], data: Any) -> None:
    """Past 16 items the codec keeps a decoded U1 list (reveals: one whose records are
    all signed or all unsigned) and hands the same tuple to the next decode of the same
    bytes: the same object then, and an equal-sized list of other bytes is decoded for
    itself."""
    wire = ref.encode(plain)
    a, b = m.decode(wire), m.decode(wire)
    field = "reveals" if plain["type"] == 2 else "commitments"
    items = getattr(a, field)
    uniform = field == "commitments" or len({bool(x[-1]) for x in plain["reveals"]}) <= 1
    if len(items) > 16 and uniform:
        assert getattr(b, field) is items
    other = dict(plain)
    if plain["type"] == 2:
        other["reveals"] = tuple((o, data.draw(key), s) for o, _, s in plain["reveals"])
    else:
        other["commitments"] = tuple((i, data.draw(key)) for i, _ in plain["commitments"])
    assert plain_of(m.decode(ref.encode(other))) == other
    assert plain_of(m.decode(wire)) == plain
    # a list the server builds itself, encoded twice (kept after the first) and for two
    # recipients, is written the same each time
    built = library_message(plain)
    assert m.encode(built) == wire == m.encode(built)


def _faults(plain: dict[str, Any], wire: bytes, data: Any) -> bytes:
    """``wire`` with one change: a field set to a value the spec refuses (an id of 0 or
    equal to the one before, a flag, kind, element, count, bits, length, padding bit,
    abort code or reason out of its range; a header field), a cut or an extension.  A
    few changes leave a valid message (a new length whose packed size is the same, a
    sender and recipient that still fit the type): both codecs must then read it alike."""
    where = ref.field_offsets(plain)
    t = plain["type"]
    choices = [k for k, v in where.items() if v and k != "prev"]
    if t == 5:
        choices += ["bits", "length", "padding"]
    if t == 10:
        choices += ["code", "reason", "reason_len"]
    choices += ["header", "extend", "cut"]
    what = data.draw(st.sampled_from(choices), label="fault")
    if what == "header":
        what = data.draw(st.sampled_from(["version", "type", "round", "direction"]))
    b = bytearray(wire)

    def put32(pos: int, v: int) -> None:
        b[pos : pos + 4] = v.to_bytes(4, "big")

    if what == "cut":
        return bytes(b[: data.draw(st.integers(0, len(b) - 1), label="cut at")])
    if what == "extend":
        return bytes(b) + data.draw(st.binary(min_size=1, max_size=40), label="extension")
    if what == "version":
        b[0:2] = data.draw(st.integers(0, 2**16 - 1).filter(lambda v: v != 2)).to_bytes(2, "big")
    elif what == "type":
        b[2] = data.draw(st.integers(0, 255).filter(lambda v: v not in ref.TYPES))
    elif what == "round":
        b[3] = data.draw(st.integers(0, 255).filter(lambda v: v != ref.TYPES[t][1]))
    elif what == "direction":
        s, r = data.draw(
            st.sampled_from([(0, 0), (5, 9), (0, 7), (7, 0)]), label="sender, recipient"
        )
        put32(36, s)
        put32(40, r)
    elif what == "ids":
        j = data.draw(st.integers(0, len(where["ids"]) - 1), label="id")
        pos, prev = where["ids"][j], where["prev"][j]
        same = int.from_bytes(b[prev : prev + 4], "big") if prev >= 0 else 0
        put32(pos, data.draw(st.sampled_from([0, same]), label="id value"))
    elif what == "counts":
        pos = data.draw(st.sampled_from(where["counts"]), label="count at")
        put32(pos, data.draw(st.sampled_from([2**32 - 1, len(b) - pos - 3])))
    elif what == "flags":
        b[data.draw(st.sampled_from(where["flags"]))] = data.draw(st.integers(2, 255))
    elif what == "kinds":
        b[data.draw(st.sampled_from(where["kinds"]))] = data.draw(
            st.integers(0, 255).filter(lambda v: v not in (1, 2))
        )
    elif what == "elems":
        pos = data.draw(st.sampled_from(where["elems"]))
        y = data.draw(st.integers(ref.P, 2**264 - 1), label="element")
        b[pos : pos + ref.ELEM] = y.to_bytes(ref.ELEM, "big")
    elif what == "bits":
        b[44] = data.draw(st.sampled_from([0, 65, 255]))
    elif what == "length":
        n = data.draw(
            st.sampled_from([0, len(plain["vector"]) + 1, len(plain["vector"]) + 8, 2**64 - 1])
        )
        b[45:53] = n.to_bytes(8, "big")
    elif what == "padding":
        if len(plain["vector"]) * plain["bits"] % 8 == 0:
            return bytes(b) + b"\x00"
        b[-1] |= 0x80
    elif what == "code":
        b[44] = data.draw(st.integers(0, 255).filter(lambda v: v not in ref.ABORT_CODES))
    elif what == "reason":
        bad = data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"]))
        return bytes(b[:45]) + len(bad).to_bytes(4, "big") + bad
    elif what == "reason_len":
        return bytes(b[:45]) + data.draw(st.integers(1025, 2**32 - 1)).to_bytes(4, "big")
    return bytes(b)


@each_type
@settings(max_examples=80)
@given(data=st.data())
def test_one_fault_is_refused_by_both_codecs_in_the_same_words(t: int, data: Any) -> None:
    plain, wire = _draw(data, t)
    assert plain_of(m.decode(wire)) == plain  # kept, if long: the fault must still be seen
    bad = _faults(plain, wire, data)
    want = _reference_decode(bad)
    assert _library_decode(bad) == want
    if not isinstance(want, str) or "sent by" in want or "exactly one" in want:
        return  # still a message (another one), or refused for its direction
    # the other entry points refuse what decode refuses, in the same words (they
    # check the direction in words of their own: test_messages.py)
    others = {5: m.decode_masked_input, 9: m.decode_unmasking_response}
    if plain["type"] in others and len(bad) > 2 and bad[2] == plain["type"]:
        with pytest.raises(DecodeError) as exc:
            others[plain["type"]](bad)
        assert f"refused: {exc.value}" == want


@each_type
@settings(max_examples=5)
@given(data=st.data())
def test_every_cut_of_a_message_is_refused_by_both_codecs_in_the_same_words(
    t: int, data: Any
) -> None:
    """Cut at every byte: the count bounds, the record and header reads all agree."""
    _, wire = _draw(data, t)
    for cut in range(len(wire)):
        want = _reference_decode(wire[:cut])
        assert isinstance(want, str) and _library_decode(wire[:cut]) == want, cut
