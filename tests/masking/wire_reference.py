"""A second SecAgg wire codec, written from ``protocols/wire/secagg.md`` alone.

It shares no code with ``secagg/masking/messages.py`` (only ``struct`` and the spec's
tables), reads every message field by field in wire order, and is what
``test_messages_reference.py`` compares the library's codec with: the same bytes for
the same message, the same message for the same bytes, and the same refusal for the
same bad bytes.

A message here is a plain ``dict``: ``type`` (the wire type code), ``session_id``,
``sender``, ``recipient`` and the body's fields as ints, bytes, tuples and lists
(:func:`plain_of` gives the library message's).

Refusals: the spec names what is refused, not the words; the words are the library's
error contract (a caller reads them), so :class:`Refused` carries the exact text a
conforming decoder of *this library* gives for that one fault.  Where the library
words one fault two ways (its bulk decoder and its record-by-record one), the text is
chosen by the same rule the spec's layout implies: a list whose records all have one
shape (all signed, or all unsigned) is refused as a list, a mixed one record by record.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

P = 2**256 + 297
ELEM = 33
KEY = 32
SIG = 64
BOX = 4 + 4 + 2 * ELEM + 12 + 16  # the 74-byte share plaintext, nonce and tag
VIEW = 32
MAX_REASON = 1024
VERSION = 2
HEADER_BYTES = 2 + 1 + 1 + 32 + 4 + 4

#: type code -> (name, round, sent by a client)
TYPES: dict[int, tuple[str, int, bool]] = {
    1: ("AdvertiseKeys", 0, True),
    11: ("SeedRequest", 0, False),
    12: ("SeedReveal", 0, True),
    2: ("KeysBroadcast", 0, False),
    3: ("ShareKeys", 1, True),
    4: ("MaskedInputRequest", 1, False),
    5: ("MaskedInput", 2, True),
    6: ("ConsistencyRequest", 3, False),
    7: ("ConsistencySignature", 3, True),
    8: ("UnmaskingRequest", 4, False),
    9: ("UnmaskingResponse", 4, True),
    10: ("Abort", 255, False),
}


class Refused(Exception):
    """The bytes are refused, with the text the library's DecodeError carries."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# -- encoding -------------------------------------------------------------------


def _u32(v: int) -> bytes:
    return struct.pack(">I", v)


def _signed(sig: bytes) -> bytes:
    return b"\x01" + sig if sig else b"\x00"


def pack_bits(values: list[int], bits: int) -> bytes:
    """The spec's packing: the little-endian bytes of ``Σ x_i 2^(i·bits)``."""
    acc = 0
    for i, x in enumerate(values):
        acc |= x << (i * bits)
    return acc.to_bytes((len(values) * bits + 7) // 8, "little")


def encode(msg: dict[str, Any]) -> bytes:
    """The wire bytes of a plain message (fields assumed valid)."""
    t = msg["type"]
    _, rnd, _ = TYPES[t]
    head = struct.pack(">HBB", VERSION, t, rnd) + msg["session_id"]
    head += _u32(msg["sender"]) + _u32(msg["recipient"])
    return head + _body(msg)


def _body(msg: dict[str, Any]) -> bytes:
    t = msg["type"]
    if t == 1:
        return (
            msg["c_pk"]
            + msg["s_pk"]
            + msg["commitment"]
            + msg["seed_commitment"]
            + _signed(msg["signature"])
        )
    if t == 11:
        return _u32(len(msg["commitments"])) + b"".join(_u32(i) + g for i, g in msg["commitments"])
    if t == 12:
        return msg["reveal"] + _signed(msg["signature"])
    if t == 2:
        out = _u32(len(msg["reveals"])) + b"".join(
            _u32(o) + r + _signed(s) for o, r, s in msg["reveals"]
        )
        return (
            out
            + _u32(len(msg["entries"]))
            + b"".join(
                _u32(o) + c + s + h + g + _signed(sig) for o, c, s, h, g, sig in msg["entries"]
            )
        )
    if t in (3, 4):
        return _u32(len(msg["boxes"])) + b"".join(_u32(i) + b for i, b in msg["boxes"])
    if t == 5:
        return (
            struct.pack(">BQ", msg["bits"], len(msg["vector"]))
            + msg["view"]
            + pack_bits(msg["vector"], msg["bits"])
        )
    if t == 6:
        return _ids(msg["survivors"])
    if t == 7:
        return msg["signature"]
    if t == 8:
        return (
            _ids(msg["survivors"])
            + _ids(msg["dropped"])
            + _u32(len(msg["signatures"]))
            + b"".join(_u32(i) + s for i, s in msg["signatures"])
        )
    if t == 9:
        return _u32(len(msg["shares"])) + b"".join(
            _u32(o) + bytes([k]) + y.to_bytes(ELEM, "big") for o, k, y in msg["shares"]
        )
    if t == 10:
        reason = msg["reason"].encode("utf-8")
        return bytes([msg["code"]]) + _u32(len(reason)) + reason
    raise AssertionError(t)


def _ids(ids: tuple[int, ...]) -> bytes:
    return _u32(len(ids)) + b"".join(_u32(i) for i in ids)


# -- decoding -------------------------------------------------------------------


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Refused("truncated message")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def count(self, smallest_record: int) -> int:
        """A ``u32`` count, refused if the bytes left cannot hold that many records.

        The library bounds a count by the bytes left *before* its own four bytes: a
        count that fits that bound but not the bytes after it is refused as a
        truncation when the records run out, not as a count (both are refusals; the
        words are the library's)."""
        before = self.left
        n = self.uint(4)
        if n * smallest_record > before or n > self.left:
            raise Refused(f"element count {n} is out of bounds")
        return n

    def flag(self) -> int:
        f = self.uint(1)
        if f not in (0, 1):
            raise Refused("signature flag must be 0 or 1")
        return f


def _ascending(ids: list[int]) -> bool:
    return all(i >= 1 for i in ids[:1]) and all(b > a for a, b in itertools.pairwise(ids))


def _check_list(ids: list[int], as_list: str) -> None:
    """A list refused as one (the bulk texts): ids 0 or not strictly ascending."""
    if not _ascending(ids):
        raise Refused(f"{as_list} must be >= 1 and strictly ascending")


def _check_records(ids: list[int], name: str) -> None:
    """A list refused record by record: an id 0 by the record, order by the list."""
    prev = 0
    for i in ids:
        if i < 1:
            raise Refused("owner must be an integer in [1, 2^32)")
        if i <= prev:
            raise Refused(f"{name} must be strictly ascending")
        prev = i


def decode(data: bytes) -> dict[str, Any]:
    """The plain message of ``data``, or :class:`Refused` with the library's words."""
    c = _Cursor(bytes(data))
    version = c.uint(2)
    if version != VERSION:
        raise Refused(f"unsupported wire version {version}")
    t = c.uint(1)
    if t not in TYPES:
        raise Refused(f"unknown message type {t}")
    name, rnd, from_client = TYPES[t]
    if c.uint(1) != rnd:
        raise Refused("round field does not match the message type")
    msg: dict[str, Any] = {"type": t, "session_id": c.take(32)}
    msg["sender"], msg["recipient"] = c.uint(4), c.uint(4)
    msg.update(_read_body(t, c))
    if (msg["sender"] == 0) == (msg["recipient"] == 0):
        raise Refused("exactly one of sender and recipient is the server (0)")
    if (msg["sender"] != 0) != from_client:
        raise Refused(f"{name} is sent by {'a client' if from_client else 'the server'}")
    if c.left:
        raise Refused(f"{c.left} trailing bytes")
    return msg


def _read_body(t: int, c: _Cursor) -> dict[str, Any]:
    if t == 1:
        keys = [c.take(KEY) for _ in range(4)]
        sig = c.take(SIG) if c.flag() else b""
        return dict(zip(("c_pk", "s_pk", "commitment", "seed_commitment"), keys)) | {
            "signature": sig
        }
    if t == 11:
        n = c.count(4 + KEY)
        commitments = tuple((c.uint(4), c.take(KEY)) for _ in range(n))
        _check_list([i for i, _ in commitments], "committers")
        return {"commitments": commitments}
    if t == 12:
        reveal = c.take(KEY)
        return {"reveal": reveal, "signature": c.take(SIG) if c.flag() else b""}
    if t == 2:
        n = c.count(4 + KEY + 1)
        reveals = []
        for _ in range(n):
            owner, r = c.uint(4), c.take(KEY)
            reveals.append((owner, r, c.take(SIG) if c.flag() else b""))
        ids = [o for o, _, _ in reveals]
        mixed = len({bool(s) for _, _, s in reveals}) > 1  # read record by record
        if not mixed:
            _check_list(ids, "reveal owners")
        n = c.count(4 + 4 * KEY + 1)
        entries = []
        for _ in range(n):
            owner, keys = c.uint(4), tuple(c.take(KEY) for _ in range(4))
            entries.append((owner, *keys, c.take(SIG) if c.flag() else b""))
        if mixed:
            _check_records(ids, "reveal owners")
        eids = [e[0] for e in entries]
        if any(e[5] for e in entries):
            _check_records(eids, "entry owners")
        else:
            _check_list(eids, "entry owners")
        return {"reveals": tuple(reveals), "entries": tuple(entries)}
    if t in (3, 4):
        n = c.count(4 + BOX)
        boxes = tuple((c.uint(4), c.take(BOX)) for _ in range(n))
        _check_list([i for i, _ in boxes], "box ids")
        return {"boxes": boxes}
    if t == 5:
        bits = c.uint(1)
        if not 1 <= bits <= 64:
            raise Refused("bits out of range")
        length = c.uint(8)
        view = c.take(VIEW)
        if length < 1 or (length * bits + 7) // 8 != c.left:
            raise Refused("masked vector length does not match the bytes")
        acc = int.from_bytes(c.take(c.left), "little")
        if acc >> (length * bits):
            raise Refused("padding bits of a packed vector must be zero")
        mask = (1 << bits) - 1
        vector = [(acc >> (i * bits)) & mask for i in range(length)]
        return {"bits": bits, "view": view, "vector": vector}
    if t == 6:
        return {"survivors": _read_ids(c)}
    if t == 7:
        return {"signature": c.take(SIG)}
    if t == 8:
        survivors, dropped = _read_ids(c), _read_ids(c)
        n = c.count(4 + SIG)
        signatures = tuple((c.uint(4), c.take(SIG)) for _ in range(n))
        prev = 0
        for i, _ in signatures:
            if i < 1:
                raise Refused("signers must be an integer in [1, 2^32)")
            if i <= prev:
                raise Refused("signers must be strictly ascending")
            prev = i
        return {"survivors": survivors, "dropped": dropped, "signatures": signatures}
    if t == 9:
        n = c.count(4 + 1 + ELEM)
        shares = tuple((c.uint(4), c.uint(1), c.uint(ELEM)) for _ in range(n))
        _check_list([o for o, _, _ in shares], "share owners")
        if any(k not in (1, 2) for _, k, _ in shares):
            raise Refused("unknown share kind")
        if any(y >= P for _, _, y in shares):
            raise Refused("field element out of range")
        return {"shares": shares}
    if t == 10:
        code = c.uint(1)
        if code not in ABORT_CODES:
            raise Refused("unknown abort code")
        n = c.uint(4)
        if n > MAX_REASON:
            raise Refused(f"length field {n} exceeds the bound {MAX_REASON}")
        raw = c.take(n)
        try:
            reason = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused("abort reason is not UTF-8") from None
        return {"code": code, "reason": reason}
    raise AssertionError(t)


def _read_ids(c: _Cursor) -> tuple[int, ...]:
    n = c.count(4)
    ids = tuple(c.uint(4) for _ in range(n))
    _check_list(list(ids), "ids")
    return ids


#: ``protocols/secagg.md`` §5's abort reason codes.
ABORT_CODES = frozenset([*range(1, 11), *range(32, 45)])


def field_offsets(msg: dict[str, Any]) -> dict[str, list[int]]:
    """Where the fields a single-fault test may change lie in ``encode(msg)``:
    ``ids`` (u32 list ids; ``prev[j]`` is where the id before ``ids[j]`` in its list
    lies, -1 for a list's first), ``flags``, ``kinds``, ``elems``, ``counts``."""
    t = msg["type"]
    pos = HEADER_BYTES
    out: dict[str, list[int]] = {
        "ids": [],
        "prev": [],
        "flags": [],
        "kinds": [],
        "elems": [],
        "counts": [],
    }

    def ids(values: Any, record: int) -> None:
        nonlocal pos
        out["counts"].append(pos)
        pos += 4
        first = True
        for _ in values:
            out["ids"].append(pos)
            out["prev"].append(-1 if first else pos - record)
            first = False
            pos += record

    if t == 1:
        out["flags"].append(pos + 4 * KEY)
    elif t == 12:
        out["flags"].append(pos + KEY)
    elif t == 11:
        ids(msg["commitments"], 4 + KEY)
    elif t == 2:
        for items, size in ((msg["reveals"], 4 + KEY), (msg["entries"], 4 + 4 * KEY)):
            out["counts"].append(pos)
            pos += 4
            last = -1
            for item in items:
                out["ids"].append(pos)
                out["prev"].append(last)
                out["flags"].append(pos + size)
                last = pos
                pos += size + 1 + len(item[-1])
    elif t in (3, 4):
        ids(msg["boxes"], 4 + BOX)
    elif t == 6:
        ids(msg["survivors"], 4)
    elif t == 8:
        ids(msg["survivors"], 4)
        ids(msg["dropped"], 4)
        ids(msg["signatures"], 4 + SIG)
    elif t == 9:
        ids(msg["shares"], 4 + 1 + ELEM)
        out["kinds"] = [p + 4 for p in out["ids"]]
        out["elems"] = [p + 5 for p in out["ids"]]
    return out
