"""SecAgg / SecAgg+ messages and their versioned binary codec.

Byte layout: ``protocols/wire/secagg.md``.  Every message starts with the header
``u16 version | u8 type | u8 round | 32-byte session id | u32 sender | u32 recipient``
(party id 0 is the server) followed by a type-specific body; :func:`decode`
validates the whole message (lengths, counts, ordering, ranges, trailing bytes)
before returning and raises :class:`~secagg.errors.DecodeError` otherwise.
Semantic checks that need the round state (membership, thresholds, signatures)
belong to the state machines.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import lt
from typing import Any, ClassVar

import numpy as np

from secagg.encoding import bitpack
from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, ParameterError
from secagg.masking.abort import AbortReason
from secagg.primitives import aead
from secagg.primitives.field import ELEMENT_BYTES, P, decode_element, encode_element
from secagg.primitives.prg import UIntArray, dtype_for_bits

__all__ = [
    "BOX_BYTES",
    "BOX_RECORD_DTYPE",
    "KEY_BYTES",
    "SERVER_ID",
    "SHARE_PLAINTEXT_BYTES",
    "SIGNATURE_BYTES",
    "VIEW_BYTES",
    "WIRE_VERSION",
    "Abort",
    "AdvertiseKeys",
    "BoxList",
    "ConsistencyRequest",
    "ConsistencySignature",
    "EntryList",
    "EntryTable",
    "KeyEntry",
    "KeysBroadcast",
    "MaskedInput",
    "MaskedInputRequest",
    "MaskedInputView",
    "Message",
    "MessageType",
    "Reveal",
    "SeedRequest",
    "SeedReveal",
    "ShareKeys",
    "ShareKind",
    "UnmaskingRequest",
    "UnmaskingResponse",
    "UnmaskingResponseView",
    "box_list",
    "box_lists",
    "box_records",
    "decode",
    "decode_masked_input",
    "decode_share_plaintext",
    "decode_unmasking_response",
    "encode",
    "encode_share_plaintext",
    "masked_input_prefix",
    "peek_type",
]

#: Wire version 2 (protocol v2): MaskedInput carries the U2-view digest and packs
#: its elements at ``bits`` bits each.
WIRE_VERSION = 2
SERVER_ID = 0
KEY_BYTES = 32
SIGNATURE_BYTES = 64
SESSION_BYTES = 32
#: ``u32 owner || u32 holder || element(b-share) || element(s-share)``
SHARE_PLAINTEXT_BYTES = 4 + 4 + 2 * ELEMENT_BYTES
BOX_BYTES = SHARE_PLAINTEXT_BYTES + aead.OVERHEAD
MAX_REASON_BYTES = 1024
#: Digest of the U2 view a client masked with (``protocols/secagg.md`` §3).
VIEW_BYTES = 32
#: Elements unpacked at a time when a server adds a packed MaskedInput to its sum.
UNPACK_CHUNK_ELEMENTS = 1 << 16
MAX_ID = 2**32 - 1


class MessageType(enum.IntEnum):
    """Wire type codes (``u8``)."""

    ADVERTISE_KEYS = 1
    KEYS_BROADCAST = 2
    SHARE_KEYS = 3
    MASKED_INPUT_REQUEST = 4
    MASKED_INPUT = 5
    CONSISTENCY_REQUEST = 6
    CONSISTENCY_SIGNATURE = 7
    UNMASKING_REQUEST = 8
    UNMASKING_RESPONSE = 9
    ABORT = 10
    SEED_REQUEST = 11
    SEED_REVEAL = 12


class ShareKind(enum.IntEnum):
    """Which secret an unmasking share belongs to."""

    SELF_MASK = 1  #: a share of b_v (v survived)
    MASK_KEY = 2  #: a share of s_v^SK (v dropped)


# -- validation helpers -------------------------------------------------------


def _check_id(v: int, what: str, *, allow_server: bool = False) -> None:
    lo = 0 if allow_server else 1
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_ID:
        raise ParameterError(f"{what} must be an integer in [{lo}, 2^32)")


def _id_of(v: Any) -> Any:
    """An integer id (numpy's too) as a Python ``int``; anything else as it is, for the
    id check to refuse in words (``int()`` would turn 2.7 into 2 and ``True`` into 1)."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    return v


def _id_pairs(items: Iterable[Any]) -> tuple[Any, ...]:
    """``(id, value)`` pairs as a tuple of 2-tuples with ``int`` ids: the caller's tuple
    itself when it already is one (the server hands one list to every client, so this
    is the common case and copies nothing), else rebuilt with :func:`_id_of`."""
    t = items if type(items) is tuple else tuple(items)
    if all(type(x) is tuple and len(x) == 2 and type(x[0]) is int for x in t):
        return t
    return tuple((_id_of(i), v) for i, v in t)


def _check_bytes(b: bytes, n: int, what: str) -> None:
    if not isinstance(b, bytes) or len(b) != n:
        raise ParameterError(f"{what} must be {n} bytes")


#: Recently validated id tuples (by identity) and the last one's wire encoding.  Tuples
#: are immutable, so a tuple that passed :func:`_check_sorted_ids` stays valid: the
#: server sends one U3 tuple to every survivor and checks and encodes it once instead
#: of |U3| times, and a decoded list is not checked twice.
_VALID_IDS: list[tuple[int, ...]] = []
_LAST_IDS_WIRE: list[tuple[tuple[int, ...], bytes]] = [((), b"")]
_VALID_IDS_KEPT = 4


def _remember_valid(ids: tuple[int, ...]) -> None:
    _VALID_IDS.insert(0, ids)
    del _VALID_IDS[_VALID_IDS_KEPT:]


#: Box and share tuples built by the bulk decoders, already fully validated (by
#: identity, like ``_VALID_IDS``): the message constructor does not check them again.
#: One registry per kind of list (box lists are :class:`BoxList` instead).
_DECODED: dict[str, list[tuple[object, ...]]] = {"shares": []}
_DECODED_KEPT = 4


def _remember_decoded(kind: str, items: tuple[object, ...]) -> tuple[object, ...]:
    book = _DECODED[kind]
    book.insert(0, items)
    del book[_DECODED_KEPT:]
    return items


def _was_decoded(kind: str, items: object) -> bool:
    return type(items) is tuple and any(items is d for d in _DECODED[kind])


# -- the O(|U1|) lists of SecAgg+ (SeedRequest commitments, KeysBroadcast reveals) ---
#
# The server sends the same list to every client of U1.  It checks and encodes one list
# once per round (by identity: tuples are immutable), and a decoder that meets the same
# bytes again (every client a worker hosts) returns the same immutable tuple; each
# client still runs its own checks on it (``client.py``; the commitments a reveal list
# opens are derived once per process, ``_common.seed_commitments_shared``).  A kept
# list also carries its two fixed-size columns: ``IDS`` (``u32_be`` each) and the
# 32-byte values.


@dataclass(slots=True)
class _List:
    items: tuple[object, ...]
    valid: bool  #: passed the message's validation (decoded, or checked by a constructor)
    body: bytes = b""  #: wire body: u32 count, then the records ("" until encoded)
    ids: bytes | None = None
    values: bytes | None = None
    signed: int = 0  #: how many items carry a signature (reveals)


_LISTS: dict[str, list[_List]] = {"commitments": [], "reveals": []}
_LISTS_KEPT = 8


def _kept(kind: str, items: object) -> _List | None:
    for e in _LISTS[kind]:
        if e.items is items:
            return e
    return None


def _keep(kind: str, entry: _List) -> _List:
    book = _LISTS[kind]
    book.insert(0, entry)
    del book[_LISTS_KEPT:]
    return entry


def _is_valid(kind: str, items: object) -> bool:
    e = _kept(kind, items)
    return e is not None and e.valid


def _mark_valid(kind: str, items: tuple[object, ...]) -> None:
    e = _kept(kind, items)
    if e is None:
        _keep(kind, _List(items=items, valid=True))
    else:
        e.valid = True


def _body(kind: str, items: tuple[object, ...], build: Callable[[], bytes]) -> bytes:
    """The wire body of a (validated) list, built once while the list is kept."""
    e = _kept(kind, items)
    if e is None:
        e = _keep(kind, _List(items=items, valid=True))
    if not e.body:
        e.body = build()
    return e.body


def _decoded_body(kind: str, r: Reader, size: int) -> tuple[bytes, tuple[object, ...] | None]:
    """The ``u32`` count and the ``size`` bytes of records just read, as one ``bytes``
    (the list's wire body), and the valid tuple an earlier decode or encode built for
    the same body, if still kept."""
    r.rewind(4 + size)
    body = r.raw(4 + size)
    for e in _LISTS[kind]:
        if e.valid and e.body == body:
            return body, e.items
    return body, None


def seed_columns(commitments: tuple[tuple[int, bytes], ...]) -> tuple[bytes, bytes]:
    """``(IDS(U1), g_1 || g_2 || ...)`` of a SeedRequest's (validated, ascending) list."""
    e = _kept("commitments", commitments) or _keep(
        "commitments", _List(items=commitments, valid=False)
    )
    if e.ids is None or e.values is None:
        e.ids = b"".join([i.to_bytes(4, "big") for i, _ in commitments])
        e.values = b"".join([g for _, g in commitments])
    return e.ids, e.values


def reveal_columns(reveals: tuple[Reveal, ...]) -> tuple[bytes, bytes, int]:
    """``(IDS(owners), r_1 || r_2 || ..., number of signed reveals)`` of a
    KeysBroadcast's (validated, ascending) reveals."""
    e = _kept("reveals", reveals) or _keep("reveals", _List(items=reveals, valid=False))
    if e.ids is None or e.values is None:
        e.ids = b"".join([x.owner.to_bytes(4, "big") for x in reveals])
        e.values = b"".join([x.reveal for x in reveals])
        e.signed = sum(1 for x in reveals if x.signature)
    return e.ids, e.values, e.signed


def _ascending_u32(ids: np.ndarray) -> bool:
    """``ids`` (a ``>u4`` array) are >= 1 and strictly ascending."""
    return not len(ids) or (int(ids[0]) != 0 and bool(np.all(ids[1:] > ids[:-1])))


def _check_sorted_ids(ids: Sequence[int], what: str) -> None:
    if type(ids) is tuple and any(ids is t for t in _VALID_IDS):
        return
    prev = 0
    for v in ids:
        if type(v) is not int or v <= prev or v > MAX_ID:  # rare: exact check and message
            _check_id(v, what)
            if v <= prev:
                raise ParameterError(f"{what} must be strictly ascending")
        prev = v
    if type(ids) is tuple and len(ids) > 16:
        _remember_valid(ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Header fields shared by every message: the session, who sends it and who
    receives it (party ``0`` is the server), so a transport routes it without
    looking further; :meth:`to_bytes` gives its wire form."""

    TYPE: ClassVar[MessageType]
    ROUND: ClassVar[int]

    session_id: bytes
    sender: int
    recipient: int

    def __post_init__(self) -> None:
        _check_bytes(self.session_id, SESSION_BYTES, "session_id")
        _check_id(self.sender, "sender", allow_server=True)
        _check_id(self.recipient, "recipient", allow_server=True)
        if (self.sender == SERVER_ID) == (self.recipient == SERVER_ID):
            raise ParameterError("exactly one of sender and recipient is the server (0)")
        self._validate()

    def to_bytes(self) -> bytes:
        """The wire bytes of this message (:func:`encode`)."""
        return encode(self)

    def _validate(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _write_body(self, w: Writer) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertiseKeys(Message):
    """Round 0, client -> server: the two X25519 public keys and h_u."""

    TYPE: ClassVar[MessageType] = MessageType.ADVERTISE_KEYS
    ROUND: ClassVar[int] = 0
    c_pk: bytes
    s_pk: bytes
    commitment: bytes
    seed_commitment: bytes
    signature: bytes = b""

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("AdvertiseKeys is sent by a client")
        _check_bytes(self.c_pk, KEY_BYTES, "c_pk")
        _check_bytes(self.s_pk, KEY_BYTES, "s_pk")
        _check_bytes(self.commitment, KEY_BYTES, "commitment")
        _check_bytes(self.seed_commitment, KEY_BYTES, "seed_commitment")
        if self.signature != b"":
            _check_bytes(self.signature, SIGNATURE_BYTES, "signature")

    def _write_body(self, w: Writer) -> None:
        _write_keys(w, self.c_pk, self.s_pk, self.commitment, self.seed_commitment, self.signature)


def _write_keys(w: Writer, c_pk: bytes, s_pk: bytes, com: bytes, g: bytes, sig: bytes) -> None:
    w.raw(c_pk).raw(s_pk).raw(com).raw(g)
    w.u8(1 if sig else 0)
    if sig:
        w.raw(sig)


def _read_keys(r: Reader) -> tuple[bytes, bytes, bytes, bytes, bytes]:
    c_pk, s_pk, com, g = r.raw(KEY_BYTES), r.raw(KEY_BYTES), r.raw(KEY_BYTES), r.raw(KEY_BYTES)
    flag = r.u8()
    if flag not in (0, 1):
        raise DecodeError("signature flag must be 0 or 1")
    sig = r.raw(SIGNATURE_BYTES) if flag else b""
    return c_pk, s_pk, com, g, sig


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyEntry:
    """One neighbor's advertised keys, as forwarded by the server."""

    owner: int
    c_pk: bytes
    s_pk: bytes
    commitment: bytes
    seed_commitment: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_id(self.owner, "owner")
        _check_bytes(self.c_pk, KEY_BYTES, "c_pk")
        _check_bytes(self.s_pk, KEY_BYTES, "s_pk")
        _check_bytes(self.commitment, KEY_BYTES, "commitment")
        _check_bytes(self.seed_commitment, KEY_BYTES, "seed_commitment")
        if self.signature != b"":
            _check_bytes(self.signature, SIGNATURE_BYTES, "signature")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reveal:
    """One client's graph-seed contribution ``r_v`` (and, malicious mode, its signature
    over the ``U1`` view), as forwarded by the server."""

    owner: int
    reveal: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _check_id(self.owner, "owner")
        _check_bytes(self.reveal, KEY_BYTES, "reveal")
        if self.signature != b"":
            _check_bytes(self.signature, SIGNATURE_BYTES, "signature")


def _entry_record(e: KeyEntry) -> bytes:
    return (
        e.owner.to_bytes(4, "big")
        + e.c_pk
        + e.s_pk
        + e.commitment
        + e.seed_commitment
        + (b"\x01" + e.signature if e.signature else b"\x00")
    )


class EntryList(tuple):  # type: ignore[type-arg]
    """Key entries ascending by owner, picked from an :class:`EntryTable`: validated
    once, and encoded as one join of the table's records.  Equal to the plain tuple
    of the same entries."""

    _table: EntryTable
    _owners: Sequence[int]

    def records(self) -> bytes:
        """The wire records of the entries (what follows the ``u32`` count)."""
        return b"".join(self.record_parts())

    def record_parts(self) -> list[bytes]:
        """The wire record of each entry (joined once, by the message's writer)."""
        return list(map(self._table._records.__getitem__, self._owners))


class EntryTable:
    """Every advertised :class:`KeyEntry` of a round and its wire record, built once;
    :meth:`select` gives each client's list without checking or encoding an entry
    again (the server sends ``O(n k)`` entries in a round).

    Raises
    ------
    ParameterError
        If an item is not a KeyEntry or two entries have one owner.
    """

    def __init__(self, entries: Iterable[KeyEntry]) -> None:
        self._entries: dict[int, KeyEntry] = {}
        self._records: dict[int, bytes] = {}
        for e in entries:
            if not isinstance(e, KeyEntry):
                raise ParameterError("entries must be KeyEntry")
            if e.owner in self._entries:
                raise ParameterError(f"two key entries of owner {e.owner}")
            self._entries[e.owner] = e
            self._records[e.owner] = _entry_record(e)

    def select(self, owners: Sequence[int]) -> EntryList:
        """The entries of ``owners`` (strictly ascending ids of this table).

        Raises
        ------
        ParameterError
            If ``owners`` are not strictly ascending or one is not in the table.
        """
        owners = tuple(owners)
        if not all(map(lt, owners, owners[1:])):  # C-level; each id is a table key
            raise ParameterError("entry owners must be strictly ascending")
        try:
            out = EntryList(map(self._entries.__getitem__, owners))
        except KeyError as exc:
            raise ParameterError(f"no key entry of owner {exc.args[0]}") from None
        out._table = self
        out._owners = owners
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysBroadcast(Message):
    """Server -> client u: the keys of ``N(u) ∩ U1``, ascending by owner, and (SecAgg+)
    every graph-seed reveal of ``U1``, ascending by owner."""

    TYPE: ClassVar[MessageType] = MessageType.KEYS_BROADCAST
    ROUND: ClassVar[int] = 0
    entries: tuple[KeyEntry, ...]
    reveals: tuple[Reveal, ...] = ()

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("KeysBroadcast is sent by the server")
        if type(self.entries) is not EntryList:  # else validated by EntryTable.select
            object.__setattr__(self, "entries", tuple(self.entries))
            for e in self.entries:
                if not isinstance(e, KeyEntry):
                    raise ParameterError("entries must be KeyEntry")
            _check_sorted_ids([e.owner for e in self.entries], "entry owners")
        if _is_valid("reveals", self.reveals):
            return  # the same U1 list for every client: checked once
        reveals = tuple(self.reveals)
        for x in reveals:
            if not isinstance(x, Reveal):
                raise ParameterError("reveals must be Reveal")
        _check_sorted_ids([x.owner for x in reveals], "reveal owners")
        object.__setattr__(self, "reveals", reveals)
        if len(reveals) > 16:
            _mark_valid("reveals", reveals)

    def _write_body(self, w: Writer) -> None:
        def build() -> bytes:
            parts = [len(self.reveals).to_bytes(4, "big")]
            for x in self.reveals:
                parts.append(x.owner.to_bytes(4, "big") + x.reveal)
                parts.append(b"\x01" + x.signature if x.signature else b"\x00")
            return b"".join(parts)

        w.raw(_body("reveals", self.reveals, build) if len(self.reveals) > 16 else build())
        w.u32(len(self.entries))
        if type(self.entries) is EntryList:
            w.raw_parts(self.entries.record_parts())
        else:  # every field was checked by KeyEntry: join the records in one go
            w.raw(b"".join([_entry_record(e) for e in self.entries]))


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedRequest(Message):
    """Server -> client (SecAgg+, after round 0): ``U1`` with every seed commitment."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REQUEST
    ROUND: ClassVar[int] = 0
    commitments: tuple[tuple[int, bytes], ...]

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("SeedRequest is sent by the server")
        if _is_valid("commitments", self.commitments):
            return  # the same U1 list for every client: checked once
        out = _id_pairs(self.commitments)  # the caller's tuple if it is one: shared by all
        _check_sorted_ids([i for i, _ in out], "committers")
        for _, g in out:
            _check_bytes(g, KEY_BYTES, "seed commitment")
        object.__setattr__(self, "commitments", out)
        if len(out) > 16:
            _mark_valid("commitments", out)

    def _write_body(self, w: Writer) -> None:
        def build() -> bytes:
            return len(self.commitments).to_bytes(4, "big") + b"".join(
                [i.to_bytes(4, "big") + g for i, g in self.commitments]
            )

        w.raw(_body("commitments", self.commitments, build) if len(self.commitments) > 16
              else build())


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedReveal(Message):
    """Client -> server (SecAgg+): ``r_u`` and, malicious mode, u's signature over ``D1``."""

    TYPE: ClassVar[MessageType] = MessageType.SEED_REVEAL
    ROUND: ClassVar[int] = 0
    reveal: bytes
    signature: bytes = b""

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("SeedReveal is sent by a client")
        _check_bytes(self.reveal, KEY_BYTES, "reveal")
        if self.signature != b"":
            _check_bytes(self.signature, SIGNATURE_BYTES, "signature")

    def _write_body(self, w: Writer) -> None:
        w.raw(self.reveal).u8(1 if self.signature else 0)
        if self.signature:
            w.raw(self.signature)


_BOX_RECORD = struct.Struct(f">I{BOX_BYTES}s")
#: One wire record of a box list: ``u32_be id || box``.
BOX_RECORD_DTYPE = np.dtype([("id", ">u4"), ("box", f"V{BOX_BYTES}")])


class BoxList(Sequence[tuple[int, bytes]]):
    """A validated box list ``((id, box), ...)``, ids strictly ascending, kept as its
    wire records (``u32_be id || box`` each): encoding it is one copy, and its ids are
    one array (:attr:`ids`).  The ``(id, box)`` pairs are built only when someone
    iterates or indexes it (a server that forwards ``O(n k)`` boxes never does).

    Built only by :func:`box_list` (which validates); immutable; equal to (and hashes
    like) the plain tuple of the same pairs; slicing gives a plain tuple.
    """

    __slots__ = ("_array", "_items", "_raw")

    def __init__(self, array: np.ndarray, raw: Any) -> None:
        self._array = array  #: the records as a BOX_RECORD_DTYPE array
        self._raw = raw  #: bytes-like of ``len(self) * BOX_RECORD_DTYPE.itemsize`` bytes
        self._items: tuple[tuple[int, bytes], ...] | None = None

    def _tuple(self) -> tuple[tuple[int, bytes], ...]:
        items = self._items
        if items is None:
            items = self._items = tuple(_BOX_RECORD.iter_unpack(self._raw))
        return items

    def __len__(self) -> int:
        return len(self._array)

    def __getitem__(self, i: Any) -> Any:
        return self._tuple()[i]

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return iter(self._tuple())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BoxList):
            return self.records() == other.records()
        if isinstance(other, tuple):
            return self._tuple() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return repr(self._tuple())

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # pickle / copy: rebuilt (and checked again) from its wire records
        return box_list, (self.records(),)

    @property
    def ids(self) -> np.ndarray:
        """The ids, ascending, as a native ``uint32`` array (a copy)."""
        ids: np.ndarray = self._array["id"].astype(np.uint32)
        return ids

    @property
    def array(self) -> np.ndarray:
        """The records as a read-only :data:`BOX_RECORD_DTYPE` array."""
        a: np.ndarray = self._array.view()
        a.flags.writeable = False
        return a

    def records(self) -> bytes:
        """The wire records (what follows the ``u32`` count in a message body)."""
        raw = self._raw
        return raw.tobytes() if isinstance(raw, np.ndarray) else bytes(raw)


def box_list(records: bytes | bytearray | memoryview | np.ndarray) -> BoxList:
    """The :class:`BoxList` of wire records (``u32_be id || box``)*.

    ``records`` may be a :data:`BOX_RECORD_DTYPE` array (kept as is: not copied).

    Raises
    ------
    DecodeError
        If the bytes are not whole records or the ids are not >= 1 and strictly
        ascending.
    """
    if isinstance(records, np.ndarray):
        if records.dtype != BOX_RECORD_DTYPE or records.ndim != 1:
            raise ParameterError("box records must be a 1-D BOX_RECORD_DTYPE array")
        a = np.ascontiguousarray(records)
        raw: Any = a.view(np.uint8)
    else:
        raw = records if type(records) is bytes else bytes(records)
        if len(raw) % _BOX_RECORD.size:
            raise DecodeError("box records must be whole records")
        a = np.frombuffer(raw, dtype=BOX_RECORD_DTYPE)
    if not _ascending_u32(a["id"]):
        raise DecodeError("box ids must be >= 1 and strictly ascending")
    return BoxList(a, raw)


def box_lists(records: np.ndarray, bounds: Sequence[tuple[int, int]]) -> list[BoxList]:
    """:func:`box_list` of each ``records[a:b]`` for ``(a, b)`` in ``bounds``, the ids of
    every slice checked in one pass over ``records`` (a 1-D :data:`BOX_RECORD_DTYPE`
    array, kept: the lists are views of it).

    Raises
    ------
    DecodeError
        If the ids of a slice are not >= 1 and strictly ascending.
    ParameterError
        If ``records`` is not a 1-D ``BOX_RECORD_DTYPE`` array or a bound is out of range.
    """
    if (
        not isinstance(records, np.ndarray)
        or records.dtype != BOX_RECORD_DTYPE
        or records.ndim != 1
    ):
        raise ParameterError("box records must be a 1-D BOX_RECORD_DTYPE array")
    a = np.ascontiguousarray(records)
    n = len(a)
    ids = a["id"].astype(np.int64)
    # rising[i]: ids[i+1] > ids[i]; a slice is valid iff it starts >= 1 and rises inside
    rising = np.empty(n, dtype=bool)
    rising[:-1] = ids[1:] > ids[:-1]
    rising[-1:] = True
    bad = np.concatenate(([0], np.cumsum(~rising)))  # bad[j]: failures among rising[:j]
    out = []
    for lo, hi in bounds:
        if not 0 <= lo <= hi <= n:
            raise ParameterError("box list bounds out of range")
        if hi > lo and (ids[lo] < 1 or bad[hi - 1] - bad[lo]):
            raise DecodeError("box ids must be >= 1 and strictly ascending")
        part = a[lo:hi]
        out.append(BoxList(part, part.view(np.uint8)))
    return out


def box_records(boxes: Sequence[tuple[int, bytes]]) -> bytes:
    """The wire records of a validated box list (a :class:`BoxList`: no re-encoding)."""
    if type(boxes) is BoxList:
        return boxes.records()
    # ids and box lengths were checked by the message constructor
    return b"".join([i.to_bytes(4, "big") + b for i, b in boxes])


def _check_boxes(boxes: Sequence[tuple[int, bytes]], what: str) -> Sequence[tuple[int, bytes]]:
    if type(boxes) is BoxList:
        return boxes  # validated by box_list()
    fast = boxes if type(boxes) is tuple else tuple(boxes)
    prev = 0
    for item in fast:  # the common case in one tight pass: (int, bytes) pairs, ascending
        if type(item) is not tuple or len(item) != 2:
            break
        i, b = item
        if type(i) is not int or type(b) is not bytes or len(b) != BOX_BYTES:
            break
        if not prev < i <= MAX_ID:
            break
        prev = i
    else:
        return fast
    out = _id_pairs(fast)
    _check_sorted_ids([i for i, _ in out], what)
    for _, b in out:
        _check_bytes(b, BOX_BYTES, "share box")
    return out


def _write_boxes(w: Writer, boxes: Sequence[tuple[int, bytes]]) -> None:
    w.u32(len(boxes))
    w.raw(box_records(boxes))


def _read_boxes(r: Reader) -> BoxList:
    """Bulk decode: one slice, ids checked at once; the pairs are built lazily."""
    count = r.count(r.remaining // _BOX_RECORD.size)
    # a view, not a copy: a Reader's buffer is an immutable bytes object
    raw = r.raw_view(count * _BOX_RECORD.size)
    a = np.frombuffer(raw, dtype=BOX_RECORD_DTYPE)
    if not _ascending_u32(a["id"]):
        raise DecodeError("box ids must be >= 1 and strictly ascending")
    return BoxList(a, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareKeys(Message):
    """Round 1, client u -> server: one sealed share box per holder, ascending by receiver."""

    TYPE: ClassVar[MessageType] = MessageType.SHARE_KEYS
    ROUND: ClassVar[int] = 1
    boxes: Sequence[tuple[int, bytes]]  #: a tuple, or a BoxList (validated, lazy)

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("ShareKeys is sent by a client")
        object.__setattr__(self, "boxes", _check_boxes(self.boxes, "box receivers"))

    def _write_body(self, w: Writer) -> None:
        _write_boxes(w, self.boxes)


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedInputRequest(Message):
    """Server -> client u: the boxes addressed to u, ascending by sender."""

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT_REQUEST
    ROUND: ClassVar[int] = 1
    boxes: Sequence[tuple[int, bytes]]  #: a tuple, or a BoxList (validated, lazy)

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("MaskedInputRequest is sent by the server")
        object.__setattr__(self, "boxes", _check_boxes(self.boxes, "box senders"))

    def _write_body(self, w: Writer) -> None:
        _write_boxes(w, self.boxes)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskedInput(Message):
    """Round 2, client -> server: ``y_u`` in Z_{2^bits} and the digest of u's U2 view.

    ``view`` is ``view_digest(session_id, u, S_u)`` over the senders ``S_u`` whose
    pairwise masks are in ``y_u`` (:func:`secagg.masking._common.view_digest`); on the
    wire the vector is packed at ``bits`` bits per element.
    """

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT
    ROUND: ClassVar[int] = 2
    bits: int
    vector: UIntArray
    view: bytes

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("MaskedInput is sent by a client")
        _check_bytes(self.view, VIEW_BYTES, "view")
        dt = dtype_for_bits(self.bits)
        v = self.vector
        if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype != dt or len(v) < 1:
            raise ParameterError(f"vector must be a non-empty 1-D {np.dtype(dt).name} array")
        if self.bits < 8 * v.dtype.itemsize and int(v.max()) >> self.bits:
            raise ParameterError(f"vector holds values >= 2^{self.bits}")

    def _write_body(self, w: Writer) -> None:
        w.u8(self.bits).u64(len(self.vector)).raw(self.view)
        w.raw(bitpack.pack(self.vector, self.bits))


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MaskedInputView:
    """A decoded MaskedInput whose vector is still packed (``decode_masked_input``).

    The header and the packing were validated; :meth:`chunks` unpacks the vector a
    range at a time, so a server can add it to a running sum without holding the
    whole unpacked vector next to its packed bytes.
    """

    session_id: bytes
    sender: int
    recipient: int
    bits: int
    length: int
    view: bytes
    packed: memoryview

    TYPE: ClassVar[MessageType] = MessageType.MASKED_INPUT

    def chunks(
        self, chunk_elements: int = UNPACK_CHUNK_ELEMENTS
    ) -> Iterator[tuple[int, UIntArray]]:
        """``(offset, elements)`` for consecutive ranges of ``chunk_elements`` (a multiple of 8).

        At ``bits`` 8, 16, 32 or 64 the elements are a read-only little-endian view of
        the packed bytes (nothing is copied; add them into a sum, do not keep them).
        """
        if chunk_elements < 8 or chunk_elements % 8:
            raise ParameterError("chunk_elements must be a positive multiple of 8")
        step = chunk_elements * self.bits // 8
        aligned = f"<u{self.bits // 8}" if self.bits in (8, 16, 32, 64) else None
        for off in range(0, self.length, chunk_elements):
            n = min(chunk_elements, self.length - off)
            start = off // chunk_elements * step
            if aligned is not None:  # the packing is the little-endian words themselves
                yield off, np.frombuffer(self.packed[start : start + n * step // chunk_elements],
                                         dtype=aligned)
                continue
            yield (
                off,
                bitpack.unpack(
                    self.packed[start : start + bitpack.packed_size(n, self.bits)], self.bits, n
                ),
            )

    def to_message(self) -> MaskedInput:
        """The fully unpacked :class:`MaskedInput`."""
        return MaskedInput(
            session_id=self.session_id,
            sender=self.sender,
            recipient=self.recipient,
            bits=self.bits,
            vector=bitpack.unpack(self.packed, self.bits, self.length),
            view=self.view,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRequest(Message):
    """Round 3 (malicious), server -> client: the survivor set U3."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_REQUEST
    ROUND: ClassVar[int] = 3
    survivors: tuple[int, ...]

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("ConsistencyRequest is sent by the server")
        object.__setattr__(self, "survivors", tuple(self.survivors))
        _check_sorted_ids(self.survivors, "survivors")

    def _write_body(self, w: Writer) -> None:
        _write_ids(w, self.survivors)


def _write_ids(w: Writer, ids: Sequence[int]) -> None:
    w.u32(len(ids))
    last, wire = _LAST_IDS_WIRE[0]
    if ids is not last:
        wire = np.asarray(ids, dtype=">u4").tobytes()  # ids were checked: 1 <= id < 2^32
        if type(ids) is tuple:
            _LAST_IDS_WIRE[0] = (ids, wire)
    w.raw(wire)


def _read_ids(r: Reader) -> tuple[int, ...]:
    count = r.count(r.remaining // 4)
    a = np.frombuffer(r.raw_view(4 * count), dtype=">u4")
    if count and (int(a[0]) == 0 or not bool(np.all(a[1:] > a[:-1]))):
        raise DecodeError("ids must be >= 1 and strictly ascending")
    ids = tuple(a.tolist())
    if count > 16:
        _remember_valid(ids)
    return ids


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencySignature(Message):
    """Round 3 (malicious), client -> server: u's signature over U3."""

    TYPE: ClassVar[MessageType] = MessageType.CONSISTENCY_SIGNATURE
    ROUND: ClassVar[int] = 3
    signature: bytes

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("ConsistencySignature is sent by a client")
        _check_bytes(self.signature, SIGNATURE_BYTES, "signature")

    def _write_body(self, w: Writer) -> None:
        w.raw(self.signature)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskingRequest(Message):
    """Round 4, server -> client: survivors U3, dropped D = U2 minus U3, U4's signatures.

    The signatures are empty in semi-honest mode.
    """

    TYPE: ClassVar[MessageType] = MessageType.UNMASKING_REQUEST
    ROUND: ClassVar[int] = 4
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...] = field(default=())

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("UnmaskingRequest is sent by the server")
        object.__setattr__(self, "survivors", tuple(self.survivors))
        object.__setattr__(self, "dropped", tuple(self.dropped))
        object.__setattr__(self, "signatures", _id_pairs(self.signatures))
        _check_sorted_ids(self.survivors, "survivors")
        _check_sorted_ids(self.dropped, "dropped")
        _check_sorted_ids([i for i, _ in self.signatures], "signers")
        for _, s in self.signatures:
            _check_bytes(s, SIGNATURE_BYTES, "signature")

    def _write_body(self, w: Writer) -> None:
        _write_ids(w, self.survivors)
        _write_ids(w, self.dropped)
        w.u32(len(self.signatures))
        for i, s in self.signatures:
            w.u32(i).raw(s)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnmaskingResponse(Message):
    """Round 4, client -> server: ``(owner, kind, share)`` ascending by owner, one per owner."""

    TYPE: ClassVar[MessageType] = MessageType.UNMASKING_RESPONSE
    ROUND: ClassVar[int] = 4
    shares: tuple[tuple[int, ShareKind, int], ...]

    def _validate(self) -> None:
        if self.sender == SERVER_ID:
            raise ParameterError("UnmaskingResponse is sent by a client")
        if _was_decoded("shares", self.shares):
            return
        out = []
        for owner, kind, y in self.shares:
            if not isinstance(kind, ShareKind):
                raise ParameterError("share kind must be a ShareKind")
            if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < P:
                raise ParameterError("share is not a field element")
            out.append((owner, kind, y))
        _check_sorted_ids([o for o, _, _ in out], "share owners")
        object.__setattr__(self, "shares", tuple(out))

    def _write_body(self, w: Writer) -> None:
        w.u32(len(self.shares))
        # owners, kinds and elements were checked by the constructor
        w.raw(
            b"".join(
                [
                    owner.to_bytes(4, "big") + _KIND_BYTE[kind] + y.to_bytes(ELEMENT_BYTES, "big")
                    for owner, kind, y in self.shares
                ]
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort(Message):
    """Server -> client: the round is aborted, with a reason code and informative text."""

    TYPE: ClassVar[MessageType] = MessageType.ABORT
    ROUND: ClassVar[int] = 255
    code: AbortReason
    reason: str

    def _validate(self) -> None:
        if self.sender != SERVER_ID:
            raise ParameterError("Abort is sent by the server")
        if not isinstance(self.code, AbortReason):
            raise ParameterError("code must be an AbortReason")
        if not isinstance(self.reason, str) or len(self.reason.encode()) > MAX_REASON_BYTES:
            raise ParameterError("reason must be a string of at most 1024 UTF-8 bytes")

    def _write_body(self, w: Writer) -> None:
        w.u8(int(self.code)).blob(self.reason.encode())


_ABORT_CODES = {int(c): c for c in AbortReason}


_CLASSES: dict[int, type[Message]] = {
    int(c.TYPE): c
    for c in (
        AdvertiseKeys,
        KeysBroadcast,
        ShareKeys,
        MaskedInputRequest,
        MaskedInput,
        ConsistencyRequest,
        ConsistencySignature,
        UnmaskingRequest,
        UnmaskingResponse,
        Abort,
        SeedRequest,
        SeedReveal,
    )
}


def encode(msg: Message) -> bytes:
    """The wire bytes of ``msg`` (header, then body)."""
    if not isinstance(msg, Message) or type(msg) not in _CLASSES.values():
        raise ParameterError("not a secagg masking message")
    w = Writer()
    sid = msg.session_id
    if type(sid) is bytes and len(sid) == SESSION_BYTES:
        # fields checked by the message's constructor: the header in one C call (a
        # value struct cannot pack is refused like the Writer refuses it)
        try:
            w.raw(_HEADER.pack(WIRE_VERSION, msg.TYPE, msg.ROUND, sid, msg.sender, msg.recipient))
        except struct.error:
            raise ParameterError("header field out of range") from None
    else:
        w.u16(WIRE_VERSION).u8(int(msg.TYPE)).u8(msg.ROUND).raw(sid)
        w.u32(msg.sender).u32(msg.recipient)
    msg._write_body(w)
    return w.getvalue()


_SHARE_KINDS = {int(k): k for k in ShareKind}
_KIND_BYTE = {k: bytes([int(k)]) for k in ShareKind}
_SHARE_RECORD = struct.Struct(f">IB{ELEMENT_BYTES}s")  # u32 owner, u8 kind, field element
_SHARE_DTYPE = np.dtype([("owner", ">u4"), ("kind", "u1"), ("y", "u1", (ELEMENT_BYTES,))])
#: ``P`` as 33 big-endian bytes: an element is valid iff its bytes sort below these.
_P_BYTES = P.to_bytes(ELEMENT_BYTES, "big")


_ENTRY_RECORD = struct.Struct(f">I{KEY_BYTES}s{KEY_BYTES}s{KEY_BYTES}s{KEY_BYTES}sB")
_ENTRY_DTYPE = np.dtype([("owner", ">u4"), ("keys", f"V{4 * KEY_BYTES}"), ("flag", "u1")])


def _read_unsigned_entries(r: Reader, count: int) -> tuple[KeyEntry, ...] | None:
    """Bulk decode of ``count`` signature-less key entries; ``None`` if any has a signature."""
    raw = r.raw_view(count * _ENTRY_RECORD.size)
    a = np.frombuffer(raw, dtype=_ENTRY_DTYPE)
    if count and bool(np.any(a["flag"])):
        r.rewind(count * _ENTRY_RECORD.size)
        return None
    if not _ascending_u32(a["owner"]):
        raise DecodeError("entry owners must be >= 1 and strictly ascending")
    out = []
    new = object.__new__
    put = object.__setattr__
    for owner, c_pk, s_pk, com, g, _ in _ENTRY_RECORD.iter_unpack(raw):
        e = new(KeyEntry)  # every field is checked above: ids, fixed lengths, no signature
        put(e, "owner", owner)
        put(e, "c_pk", c_pk)
        put(e, "s_pk", s_pk)
        put(e, "commitment", com)
        put(e, "seed_commitment", g)
        put(e, "signature", b"")
        out.append(e)
    return tuple(out)


_SEED_RECORD = struct.Struct(f">I{KEY_BYTES}s")  # u32 committer, seed commitment
_SEED_DTYPE = np.dtype([("id", ">u4"), ("value", f"V{KEY_BYTES}")])
_REVEAL_RECORDS = (  # u32 owner, reveal, u8 flag (, signature): all unsigned or all signed
    (0, np.dtype([("id", ">u4"), ("value", f"V{KEY_BYTES}"), ("flag", "u1")])),
    (1, np.dtype([("id", ">u4"), ("value", f"V{KEY_BYTES}"), ("flag", "u1"),
                  ("sig", f"V{SIGNATURE_BYTES}")])),
)


def _read_commitments(r: Reader) -> tuple[tuple[int, bytes], ...]:
    """Bulk decode of a SeedRequest body (fixed 36-byte records)."""
    count = r.count(r.remaining // _SEED_RECORD.size)
    raw = r.raw_view(count * _SEED_RECORD.size)
    body = b""
    if count > 16:
        body, seen = _decoded_body("commitments", r, len(raw))
        if seen is not None:
            return seen  # type: ignore[return-value]
    a = np.frombuffer(raw, dtype=_SEED_DTYPE)
    if not _ascending_u32(a["id"]):
        raise DecodeError("committers must be >= 1 and strictly ascending")
    items = tuple(_SEED_RECORD.iter_unpack(raw))
    if count > 16:
        _keep("commitments", _List(items=items, valid=True, body=body,
                                   ids=a["id"].tobytes(), values=a["value"].tobytes()))
    return items


def _read_reveals(r: Reader) -> tuple[Reveal, ...]:
    """Decode the reveals of a KeysBroadcast: in bulk when every record has the same
    shape (all unsigned, or all signed), record by record otherwise."""
    count = r.count(r.remaining // (4 + KEY_BYTES + 1))
    for flag, dtype in _REVEAL_RECORDS:
        size = count * dtype.itemsize
        if r.remaining < size:
            continue
        raw = r.raw_view(size)
        a = np.frombuffer(raw, dtype=dtype)
        if count and not bool(np.all(a["flag"] == flag)):
            r.rewind(size)  # the records differ in shape: not this layout
            continue
        body = b""
        if count > 16:
            body, seen = _decoded_body("reveals", r, size)
            if seen is not None:
                return seen  # type: ignore[return-value]
        if not _ascending_u32(a["id"]):
            raise DecodeError("reveal owners must be >= 1 and strictly ascending")
        ids = a["id"].tolist()
        vals = a["value"].tobytes()
        sigs = a["sig"].tobytes() if flag else b""
        new = object.__new__
        put = object.__setattr__
        out = []
        for i, owner in enumerate(ids):
            x = new(Reveal)  # every field is checked above: ids, fixed lengths
            put(x, "owner", owner)
            put(x, "reveal", vals[32 * i : 32 * i + 32])
            put(x, "signature", sigs[64 * i : 64 * i + 64] if flag else b"")
            out.append(x)
        items = tuple(out)
        if count > 16:
            _keep("reveals", _List(items=items, valid=True, body=body, ids=a["id"].tobytes(),
                                   values=vals, signed=count if flag else 0))
        return items
    mixed = []
    for _ in range(count):
        owner, rev, flag = r.u32(), r.raw(KEY_BYTES), r.u8()
        if flag not in (0, 1):
            raise DecodeError("signature flag must be 0 or 1")
        sig = r.raw(SIGNATURE_BYTES) if flag else b""
        mixed.append(Reveal(owner=owner, reveal=rev, signature=sig))
    return tuple(mixed)


def _share_records(r: Reader) -> tuple[np.ndarray, memoryview]:
    """The records of an UnmaskingResponse body, owners, kinds and ranges checked at once."""
    count = r.count(r.remaining // _SHARE_RECORD.size)
    raw = r.raw_view(count * _SHARE_RECORD.size)
    a = np.frombuffer(raw, dtype=_SHARE_DTYPE)
    if not _ascending_u32(a["owner"]):
        raise DecodeError("share owners must be >= 1 and strictly ascending")
    kinds = a["kind"]
    if count and not bool(np.all((kinds == 1) | (kinds == 2))):
        raise DecodeError("unknown share kind")
    # y < P = 2^256 + 297: the top byte is 0, or it is 1 and the rest is below 297
    top = a["y"][:, 0]
    if count and int(top.max()) > 0:
        for i in np.flatnonzero(top).tolist():
            if bytes(a["y"][i]) >= _P_BYTES:
                raise DecodeError("field element out of range")
    return a, raw


def _read_shares(r: Reader) -> tuple[tuple[int, ShareKind, int], ...]:
    """Bulk decode of an UnmaskingResponse body (see :func:`_share_records`)."""
    _, raw = _share_records(r)
    k1, k2 = ShareKind.SELF_MASK, ShareKind.MASK_KEY
    shares = tuple(
        (owner, k1 if kind == 1 else k2, int.from_bytes(y, "big"))
        for owner, kind, y in _SHARE_RECORD.iter_unpack(raw)
    )
    return _remember_decoded("shares", shares)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class UnmaskingResponseView:
    """A decoded UnmaskingResponse whose shares stay in arrays
    (:func:`decode_unmasking_response`): what a server that collects ``O(n k)``
    shares keeps instead of one Python tuple per share.

    ``owners`` (uint32, strictly ascending, >= 1), ``kinds`` (uint8, 1 or 2, the
    :class:`ShareKind` values) and ``ys`` (``(count, 33)`` uint8, each row a
    big-endian field element ``< P``) were validated like :func:`decode` does.
    """

    session_id: bytes
    sender: int
    recipient: int
    owners: np.ndarray
    kinds: np.ndarray
    ys: np.ndarray

    TYPE: ClassVar[MessageType] = MessageType.UNMASKING_RESPONSE

    @classmethod
    def of(cls, msg: UnmaskingResponse) -> UnmaskingResponseView:
        """The array form of a (validated) message."""
        n = len(msg.shares)
        ys = np.frombuffer(
            b"".join(y.to_bytes(ELEMENT_BYTES, "big") for _, _, y in msg.shares), dtype=np.uint8
        ).reshape(n, ELEMENT_BYTES)
        return cls(
            session_id=msg.session_id,
            sender=msg.sender,
            recipient=msg.recipient,
            owners=np.array([o for o, _, _ in msg.shares], dtype=np.uint32),
            kinds=np.array([int(k) for _, k, _ in msg.shares], dtype=np.uint8),
            ys=ys,
        )

    def to_message(self) -> UnmaskingResponse:
        """The fully decoded :class:`UnmaskingResponse`."""
        k1, k2 = ShareKind.SELF_MASK, ShareKind.MASK_KEY
        return UnmaskingResponse(
            session_id=self.session_id,
            sender=self.sender,
            recipient=self.recipient,
            shares=tuple(
                (o, k1 if k == 1 else k2, int.from_bytes(y.tobytes(), "big"))
                for o, k, y in zip(self.owners.tolist(), self.kinds.tolist(), self.ys, strict=True)
            ),
        )


def decode_unmasking_response(data: bytes | bytearray | memoryview) -> UnmaskingResponseView:
    """Parse and validate an UnmaskingResponse but keep its shares in arrays (copied
    out of ``data``).

    Raises
    ------
    DecodeError
        As :func:`decode`, and if ``data`` is not an UnmaskingResponse.
    """
    r = Reader(data)
    cls, head = _read_header(r)
    if cls is not UnmaskingResponse:
        raise DecodeError("not an UnmaskingResponse")
    a, _ = _share_records(r)
    r.finish()
    try:
        _check_client_header(head["session_id"], head["sender"], head["recipient"])  # type: ignore[arg-type]
    except ParameterError as exc:
        raise DecodeError(str(exc)) from None
    return UnmaskingResponseView(
        owners=a["owner"].astype(np.uint32),
        kinds=a["kind"].copy(),
        ys=np.ascontiguousarray(a["y"]),
        **head,  # type: ignore[arg-type]
    )


def _read_body(cls: type[Message], r: Reader, head: dict[str, object]) -> Message:
    if cls is AdvertiseKeys:
        c_pk, s_pk, com, seed_com, sig = _read_keys(r)
        return AdvertiseKeys(
            c_pk=c_pk,
            s_pk=s_pk,
            commitment=com,
            seed_commitment=seed_com,
            signature=sig,
            **head,  # type: ignore[arg-type]
        )
    if cls is SeedRequest:
        return SeedRequest(commitments=_read_commitments(r), **head)  # type: ignore[arg-type]
    if cls is SeedReveal:
        rev = r.raw(KEY_BYTES)
        flag = r.u8()
        if flag not in (0, 1):
            raise DecodeError("signature flag must be 0 or 1")
        sig = r.raw(SIGNATURE_BYTES) if flag else b""
        return SeedReveal(reveal=rev, signature=sig, **head)  # type: ignore[arg-type]
    if cls is KeysBroadcast:
        reveals = _read_reveals(r)
        count = r.count(r.remaining // (4 + 4 * KEY_BYTES + 1))
        if r.remaining == count * _ENTRY_RECORD.size:  # no signatures (semi-honest)
            fast = _read_unsigned_entries(r, count)
            if fast is not None:
                return KeysBroadcast(entries=fast, reveals=reveals, **head)  # type: ignore[arg-type]
        entries = []
        for _ in range(count):
            owner = r.u32()
            c_pk, s_pk, com, g, sig = _read_keys(r)
            entries.append(
                KeyEntry(
                    owner=owner,
                    c_pk=c_pk,
                    s_pk=s_pk,
                    commitment=com,
                    seed_commitment=g,
                    signature=sig,
                )
            )
        return KeysBroadcast(entries=tuple(entries), reveals=reveals, **head)  # type: ignore[arg-type]
    if cls is ShareKeys:
        return ShareKeys(boxes=_read_boxes(r), **head)  # type: ignore[arg-type]
    if cls is MaskedInputRequest:
        return MaskedInputRequest(boxes=_read_boxes(r), **head)  # type: ignore[arg-type]
    if cls is MaskedInput:
        return _read_masked(r, head).to_message()
    if cls is ConsistencyRequest:
        return ConsistencyRequest(survivors=_read_ids(r), **head)  # type: ignore[arg-type]
    if cls is ConsistencySignature:
        return ConsistencySignature(signature=r.raw(SIGNATURE_BYTES), **head)  # type: ignore[arg-type]
    if cls is UnmaskingRequest:
        survivors = _read_ids(r)
        dropped = _read_ids(r)
        count = r.count(r.remaining // (4 + SIGNATURE_BYTES))
        sigs = tuple((r.u32(), r.raw(SIGNATURE_BYTES)) for _ in range(count))
        return UnmaskingRequest(survivors=survivors, dropped=dropped, signatures=sigs, **head)  # type: ignore[arg-type]
    if cls is UnmaskingResponse:
        return UnmaskingResponse(shares=_read_shares(r), **head)  # type: ignore[arg-type]
    if cls is Abort:
        code = _ABORT_CODES.get(r.u8())
        if code is None:
            raise DecodeError("unknown abort code")
        raw = r.blob(MAX_REASON_BYTES)
        try:
            reason = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("abort reason is not UTF-8") from None
        return Abort(code=code, reason=reason, **head)  # type: ignore[arg-type]
    raise DecodeError("unknown message type")  # pragma: no cover


def _read_masked(r: Reader, head: dict[str, object]) -> MaskedInputView:
    bits = r.u8()
    try:
        dtype_for_bits(bits)
    except ParameterError:
        raise DecodeError("bits out of range") from None
    length = r.u64()
    view = r.raw(VIEW_BYTES)
    if length < 1 or bitpack.packed_size(length, bits) != r.remaining:
        raise DecodeError("masked vector length does not match the bytes")
    packed = r.raw_view(r.remaining)
    if length * bits % 8 and packed[-1] >> (length * bits % 8):
        raise DecodeError("padding bits of a packed vector must be zero")
    return MaskedInputView(bits=bits, length=length, view=view, packed=packed, **head)  # type: ignore[arg-type]


#: The header ``u16 version | u8 type | u8 round | session id | u32 sender | u32 recipient``.
_HEADER = struct.Struct(f">HBB{SESSION_BYTES}sII")


def _read_header(r: Reader) -> tuple[type[Message], dict[str, object]]:
    if r.remaining >= _HEADER.size:  # one C-level unpack; the same checks in the same order
        version, tcode, rnd, sid, sender, recipient = _HEADER.unpack(r.raw_view(_HEADER.size))
        if version != WIRE_VERSION:
            raise DecodeError(f"unsupported wire version {version}")
        cls = _CLASSES.get(tcode)
        if cls is None:
            raise DecodeError(f"unknown message type {tcode}")
        if rnd != cls.ROUND:
            raise DecodeError("round field does not match the message type")
        return cls, {"session_id": sid, "sender": sender, "recipient": recipient}
    version = r.u16()
    if version != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {version}")
    tcode = r.u8()
    cls = _CLASSES.get(tcode)
    if cls is None:
        raise DecodeError(f"unknown message type {tcode}")
    if r.u8() != cls.ROUND:
        raise DecodeError("round field does not match the message type")
    head: dict[str, object] = {
        "session_id": r.raw(SESSION_BYTES),
        "sender": r.u32(),
        "recipient": r.u32(),
    }
    return cls, head


def _check_client_header(session_id: bytes, sender: int, recipient: int) -> None:
    _check_bytes(session_id, SESSION_BYTES, "session_id")
    _check_id(sender, "sender")
    if recipient != SERVER_ID:
        raise ParameterError("a client message goes to the server (0)")


def peek_type(data: bytes | bytearray | memoryview) -> MessageType:
    """The type of a message after validating its header only (version, type, round,
    session id length, party ids); the body is not read.

    Raises
    ------
    DecodeError
        On a wrong version, an unknown type, a round that does not match the type or
        a truncated header.
    """
    if isinstance(data, (bytes, bytearray)) or (
        isinstance(data, memoryview) and data.ndim == 1 and data.itemsize == 1
    ):
        data = data[: _HEADER.size]  # Reader copies what it gets: not a large body
    cls, _ = _read_header(Reader(data))
    return cls.TYPE


def decode_masked_input(data: bytes | bytearray | memoryview) -> MaskedInputView:
    """Parse and validate a MaskedInput but leave its vector packed.

    Raises
    ------
    DecodeError
        As :func:`decode`, and if ``data`` is not a MaskedInput.
    """
    r = Reader(data)
    cls, head = _read_header(r)
    if cls is not MaskedInput:
        raise DecodeError("not a MaskedInput")
    try:
        msg = _read_masked(r, head)
        _check_client_header(msg.session_id, msg.sender, msg.recipient)
    except ParameterError as exc:
        raise DecodeError(str(exc)) from None
    r.finish()
    return msg


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse and fully validate one message.

    Raises
    ------
    DecodeError
        On a wrong version, unknown type, wrong round for the type, truncation,
        trailing bytes, out-of-range or unordered fields.
    """
    r = Reader(data)
    cls, head = _read_header(r)
    try:
        msg = _read_body(cls, r, head)
    except ParameterError as exc:
        raise DecodeError(str(exc)) from None
    r.finish()
    return msg


def masked_input_prefix(
    *, session_id: bytes, sender: int, bits: int, length: int, view: bytes
) -> bytes:
    """The bytes of a MaskedInput before its packed vector, for streaming transports.

    ``masked_input_prefix(...) + b"".join(bitpack.pack(chunk, bits) for chunk in
    chunks)`` equals ``encode(MaskedInput(...))`` when every chunk but the last holds a
    multiple of 8 elements (see
    :meth:`secagg.masking.client.Client.masked_input_stream`).

    Raises
    ------
    ParameterError
        On a bad header field, ``bits`` outside 1..64, ``length < 1`` or a view
        digest that is not 32 bytes.
    """
    _check_client_header(session_id, sender, SERVER_ID)
    dtype_for_bits(bits)
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ParameterError("length must be a positive integer")
    _check_bytes(view, VIEW_BYTES, "view")
    w = Writer()
    w.u16(WIRE_VERSION).u8(int(MessageType.MASKED_INPUT)).u8(MaskedInput.ROUND).raw(session_id)
    w.u32(sender).u32(SERVER_ID).u8(bits).u64(length).raw(view)
    return w.getvalue()


def encode_share_plaintext(owner: int, holder: int, b_share: int, s_share: int) -> bytes:
    """``u32(owner) || u32(holder) || element(b_share) || element(s_share)`` (74 bytes)."""
    return (
        Writer()
        .u32(owner)
        .u32(holder)
        .raw(encode_element(b_share))
        .raw(encode_element(s_share))
        .getvalue()
    )


def decode_share_plaintext(data: bytes) -> tuple[int, int, int, int]:
    """Inverse of :func:`encode_share_plaintext`; :class:`DecodeError` if malformed."""
    r = Reader(data)
    out = (
        r.u32(),
        r.u32(),
        decode_element(r.raw(ELEMENT_BYTES)),
        decode_element(r.raw(ELEMENT_BYTES)),
    )
    r.finish()
    return out
