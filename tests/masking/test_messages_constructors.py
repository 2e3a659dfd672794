"""Every refusal of a message constructor, in its exact words, and what the constructors
accept and normalize (lists, numpy ids, the largest id): a caller building messages
reads these errors, and the server and clients rely on what a constructed message
holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from secagg.errors import DecodeError, ParameterError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason

SID = bytes(range(32))
K = b"k" * 32
S = b"s" * 64
BOX = b"b" * m.BOX_BYTES
MAX = 2**32 - 1

#: class -> the valid keyword arguments of one instance
VALID: dict[type, dict[str, Any]] = {
    m.AdvertiseKeys: dict(
        sender=3, recipient=0, c_pk=K, s_pk=K, commitment=K, seed_commitment=K, signature=S
    ),
    m.SeedRequest: dict(sender=0, recipient=3, commitments=((1, K), (2, K))),
    m.SeedReveal: dict(sender=3, recipient=0, reveal=K, signature=S),
    m.KeysBroadcast: dict(
        sender=0,
        recipient=3,
        entries=(m.KeyEntry(owner=1, c_pk=K, s_pk=K, commitment=K, seed_commitment=K),),
        reveals=(m.Reveal(owner=1, reveal=K),),
    ),
    m.ShareKeys: dict(sender=3, recipient=0, boxes=((1, BOX), (2, BOX))),
    m.MaskedInputRequest: dict(sender=0, recipient=3, boxes=((1, BOX), (2, BOX))),
    m.MaskedInput: dict(
        sender=3, recipient=0, bits=8, vector=np.arange(3, dtype=np.uint32), view=K
    ),
    m.ConsistencyRequest: dict(sender=0, recipient=3, survivors=(1, 2)),
    m.ConsistencySignature: dict(sender=3, recipient=0, signature=S),
    m.UnmaskingRequest: dict(
        sender=0, recipient=3, survivors=(1, 2), dropped=(4,), signatures=((1, S),)
    ),
    m.UnmaskingResponse: dict(sender=3, recipient=0, shares=((1, m.ShareKind.SELF_MASK, 5),)),
    m.Abort: dict(sender=0, recipient=3, code=AbortReason.TOO_FEW_KEYS, reason="why"),
}

FROM_CLIENT = {c for c, kw in VALID.items() if kw["sender"] != 0}


def make(cls: type, **changes: Any) -> Any:
    return cls(**{"session_id": SID, **VALID[cls], **changes})


def test_every_valid_instance_round_trips() -> None:
    for cls in VALID:
        msg = make(cls)
        again = m.decode(m.encode(msg))
        assert type(again) is cls and m.encode(again) == m.encode(msg)


# (class, changed fields, the exact refusal)
REFUSALS: list[tuple[type, dict[str, Any], str]] = [
    (m.AdvertiseKeys, dict(session_id=b"x" * 31), "session_id must be 32 bytes"),
    (m.AdvertiseKeys, dict(session_id="x" * 32), "session_id must be 32 bytes"),
    (m.AdvertiseKeys, dict(sender=MAX + 1), "sender must be an integer in [0, 2^32)"),
    (m.AdvertiseKeys, dict(sender=True), "sender must be an integer in [0, 2^32)"),
    (m.AdvertiseKeys, dict(recipient=-1), "recipient must be an integer in [0, 2^32)"),
    (m.AdvertiseKeys, dict(recipient=2.0), "recipient must be an integer in [0, 2^32)"),
    (m.AdvertiseKeys, dict(recipient=4), "exactly one of sender and recipient is the server (0)"),
    (m.AdvertiseKeys, dict(sender=0), "exactly one of sender and recipient is the server (0)"),
    (m.AdvertiseKeys, dict(c_pk=K[:31]), "c_pk must be 32 bytes"),
    (m.AdvertiseKeys, dict(s_pk=bytearray(K)), "s_pk must be 32 bytes"),
    (m.AdvertiseKeys, dict(commitment=K + K), "commitment must be 32 bytes"),
    (m.AdvertiseKeys, dict(seed_commitment=None), "seed_commitment must be 32 bytes"),
    (m.AdvertiseKeys, dict(signature=S[:63]), "signature must be 64 bytes"),
    (m.SeedRequest, dict(commitments=((2, K), (1, K))), "committers must be strictly ascending"),
    (m.SeedRequest, dict(commitments=((0, K),)), "committers must be an integer in [1, 2^32)"),
    (m.SeedRequest, dict(commitments=((1, K[:5]),)), "seed commitment must be 32 bytes"),
    (m.SeedReveal, dict(reveal=b""), "reveal must be 32 bytes"),
    (m.SeedReveal, dict(signature=S + b"!"), "signature must be 64 bytes"),
    (m.KeysBroadcast, dict(entries=("entry",)), "entries must be KeyEntry"),
    (m.KeysBroadcast, dict(reveals=(K,)), "reveals must be Reveal"),
    (
        m.KeysBroadcast,
        dict(
            entries=tuple(
                m.KeyEntry(owner=o, c_pk=K, s_pk=K, commitment=K, seed_commitment=K) for o in (2, 2)
            )
        ),
        "entry owners must be strictly ascending",
    ),
    (
        m.KeysBroadcast,
        dict(reveals=(m.Reveal(owner=5, reveal=K), m.Reveal(owner=4, reveal=K))),
        "reveal owners must be strictly ascending",
    ),
    (m.ShareKeys, dict(boxes=((2, BOX), (2, BOX))), "box receivers must be strictly ascending"),
    (m.ShareKeys, dict(boxes=((0, BOX),)), "box receivers must be an integer in [1, 2^32)"),
    (m.ShareKeys, dict(boxes=((MAX + 1, BOX),)), "box receivers must be an integer in [1, 2^32)"),
    (m.ShareKeys, dict(boxes=((1, BOX[1:]),)), "share box must be 102 bytes"),
    (m.ShareKeys, dict(boxes=[[1, bytearray(BOX)]]), "share box must be 102 bytes"),
    # an id that is a float or a bool is refused, not cut to an int (2.7 was id 2)
    (m.ShareKeys, dict(boxes=((2.7, BOX),)), "box receivers must be an integer in [1, 2^32)"),
    (m.ShareKeys, dict(boxes=[(True, BOX)]), "box receivers must be an integer in [1, 2^32)"),
    (m.SeedRequest, dict(commitments=((1.0, K),)), "committers must be an integer in [1, 2^32)"),
    (m.SeedRequest, dict(commitments=((True, K),)), "committers must be an integer in [1, 2^32)"),
    (m.UnmaskingRequest, dict(signatures=((1.9, S),)), "signers must be an integer in [1, 2^32)"),
    (
        m.MaskedInputRequest,
        dict(boxes=((3, BOX), (1, BOX))),
        "box senders must be strictly ascending",
    ),
    (m.MaskedInput, dict(view=K[1:]), "view must be 32 bytes"),
    (
        m.MaskedInput,
        dict(vector=np.arange(3, dtype=np.uint16)),
        "vector must be a non-empty 1-D uint32 array",
    ),
    (
        m.MaskedInput,
        dict(vector=np.zeros(0, dtype=np.uint32)),
        "vector must be a non-empty 1-D uint32 array",
    ),
    (
        m.MaskedInput,
        dict(vector=np.zeros((1, 1), dtype=np.uint32)),
        "vector must be a non-empty 1-D uint32 array",
    ),
    (
        m.MaskedInput,
        dict(bits=3, vector=np.array([0, 1, 9], dtype=np.uint32)),
        "vector holds values >= 2^3",
    ),
    (m.MaskedInput, dict(bits=65), "bits must be an integer in [1, 64], got 65"),
    (m.ConsistencyRequest, dict(survivors=(3, 3)), "survivors must be strictly ascending"),
    (m.ConsistencyRequest, dict(survivors=(0, 3)), "survivors must be an integer in [1, 2^32)"),
    (m.ConsistencyRequest, dict(survivors=(1, 2.5)), "survivors must be an integer in [1, 2^32)"),
    (m.ConsistencySignature, dict(signature=b""), "signature must be 64 bytes"),
    (m.UnmaskingRequest, dict(dropped=(5, 4)), "dropped must be strictly ascending"),
    (m.UnmaskingRequest, dict(survivors=(2, 1)), "survivors must be strictly ascending"),
    (m.UnmaskingRequest, dict(signatures=((2, S), (2, S))), "signers must be strictly ascending"),
    (m.UnmaskingRequest, dict(signatures=((1, S[1:]),)), "signature must be 64 bytes"),
    (m.UnmaskingResponse, dict(shares=((1, 1, 5),)), "share kind must be a ShareKind"),
    (
        m.UnmaskingResponse,
        dict(shares=((1, m.ShareKind.MASK_KEY, m.P),)),
        "share is not a field element",
    ),
    (
        m.UnmaskingResponse,
        dict(shares=((1, m.ShareKind.MASK_KEY, -1),)),
        "share is not a field element",
    ),
    (
        m.UnmaskingResponse,
        dict(shares=((1, m.ShareKind.MASK_KEY, True),)),
        "share is not a field element",
    ),
    (
        m.UnmaskingResponse,
        dict(shares=((2, m.ShareKind.MASK_KEY, 1), (1, m.ShareKind.SELF_MASK, 1))),
        "share owners must be strictly ascending",
    ),
    (m.Abort, dict(code=1), "code must be an AbortReason"),
    (m.Abort, dict(reason=b"bytes"), "reason must be a string of at most 1024 UTF-8 bytes"),
    (m.Abort, dict(reason="é" * 513), "reason must be a string of at most 1024 UTF-8 bytes"),
]


@pytest.mark.parametrize(
    ("cls", "changes", "text"), REFUSALS, ids=[f"{c.__name__}-{t}" for c, _, t in REFUSALS]
)
def test_a_constructor_refuses_in_its_exact_words(cls: type, changes: dict, text: str) -> None:
    with pytest.raises(ParameterError) as exc:
        make(cls, **changes)
    assert str(exc.value) == text


@pytest.mark.parametrize("cls", list(VALID), ids=lambda c: c.__name__)
def test_a_message_sent_the_wrong_way_is_refused_in_words(cls: type) -> None:
    swap = dict(sender=0, recipient=3) if cls in FROM_CLIENT else dict(sender=3, recipient=0)
    who = "a client" if cls in FROM_CLIENT else "the server"
    with pytest.raises(ParameterError) as exc:
        make(cls, **swap)
    assert str(exc.value) == f"{cls.__name__} is sent by {who}"


def test_the_largest_party_id_is_a_party_id() -> None:
    head = dict(sender=0, recipient=MAX)
    assert make(m.ConsistencyRequest, survivors=(1, MAX), **head).survivors == (1, MAX)
    assert make(m.ShareKeys, sender=MAX, boxes=((MAX, BOX),)).boxes == ((MAX, BOX),)
    assert m.Reveal(owner=MAX, reveal=K).owner == MAX
    with pytest.raises(ParameterError, match=r"^owner must be an integer in \[1, 2\^32\)$"):
        m.Reveal(owner=0, reveal=K)
    with pytest.raises(ParameterError, match=r"^owner must be an integer in \[1, 2\^32\)$"):
        m.KeyEntry(owner=0, c_pk=K, s_pk=K, commitment=K, seed_commitment=K)


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("c_pk", K[:1], "c_pk must be 32 bytes"),
        ("s_pk", K[:1], "s_pk must be 32 bytes"),
        ("commitment", K[:1], "commitment must be 32 bytes"),
        ("seed_commitment", K[:1], "seed_commitment must be 32 bytes"),
        ("signature", S[:1], "signature must be 64 bytes"),
        ("owner", MAX + 1, "owner must be an integer in [1, 2^32)"),
    ],
)
def test_a_key_entry_refuses_in_its_exact_words(field: str, value: Any, text: str) -> None:
    kw: dict[str, Any] = dict(owner=1, c_pk=K, s_pk=K, commitment=K, seed_commitment=K)
    with pytest.raises(ParameterError) as exc:
        m.KeyEntry(**{**kw, field: value})
    assert str(exc.value) == text


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("reveal", K[:3], "reveal must be 32 bytes"),
        ("signature", S[:63], "signature must be 64 bytes"),
        ("owner", MAX + 1, "owner must be an integer in [1, 2^32)"),
    ],
)
def test_a_reveal_refuses_in_its_exact_words(field: str, value: Any, text: str) -> None:
    kw: dict[str, Any] = dict(owner=1, reveal=K)
    with pytest.raises(ParameterError) as exc:
        m.Reveal(**{**kw, field: value})
    assert str(exc.value) == text


def test_box_lists_of_any_sequence_are_kept_as_tuples_of_int_and_bytes() -> None:
    for boxes in (
        [(1, BOX), (7, BOX)],
        [[1, BOX], [7, BOX]],
        ((np.uint32(1), BOX), (np.int64(7), BOX)),
    ):
        msg = make(m.ShareKeys, boxes=boxes)
        assert type(msg.boxes) is tuple and msg.boxes == ((1, BOX), (7, BOX))
        assert all(type(i) is int and type(b) is bytes for i, b in msg.boxes)
        assert m.encode(msg) == m.encode(make(m.ShareKeys, boxes=((1, BOX), (7, BOX))))
    given = ((1, BOX), (7, BOX))
    assert make(m.MaskedInputRequest, boxes=given).boxes is given  # nothing to copy


def test_seed_requests_keep_a_valid_tuple_and_normalize_anything_else() -> None:
    given = ((1, K), (2, K))
    assert make(m.SeedRequest, commitments=given).commitments is given
    for other in ([(1, K), (2, K)], ((np.uint32(1), K), (2, K))):
        msg = make(m.SeedRequest, commitments=other)
        got = msg.commitments
        assert type(got) is tuple and got == given and all(type(i) is int for i, _ in got)
        # (a tuple with a numpy id was kept as given, and encoding it raised AttributeError)
        assert m.encode(msg) == m.encode(make(m.SeedRequest, commitments=given))


def test_an_entry_table_selects_and_refuses_in_words() -> None:
    es = [m.KeyEntry(owner=o, c_pk=K, s_pk=K, commitment=K, seed_commitment=K) for o in (3, 4, 5)]
    table = m.EntryTable(es)
    got = table.select([3, 5])
    assert type(got) is m.EntryList and got == (es[0], es[2])
    msg = make(m.KeysBroadcast, entries=got, reveals=())
    assert type(msg.entries) is m.EntryList
    assert m.encode(msg) == m.encode(make(m.KeysBroadcast, entries=(es[0], es[2]), reveals=()))
    for bad in ([3, 5, 4], [4, 3], [3, 3]):
        with pytest.raises(ParameterError) as exc:
            table.select(bad)
        assert str(exc.value) == "entry owners must be strictly ascending"
    with pytest.raises(ParameterError) as exc:
        table.select([3, 9])
    assert str(exc.value) == "no key entry of owner 9"
    with pytest.raises(ParameterError) as exc:
        m.EntryTable([es[0], es[0]])
    assert str(exc.value) == "two key entries of owner 3"


def test_box_lists_check_each_slice_alone() -> None:
    rec = np.zeros(5, dtype=m.BOX_RECORD_DTYPE)
    rec["id"] = [1, 2, 2, 3, 1]  # rising inside [0, 2) and [2, 4); [4, 5) is one id
    lists = m.box_lists(rec, [(0, 2), (2, 4), (4, 5), (5, 5), (0, 0)])
    assert [x.ids.tolist() for x in lists] == [[1, 2], [2, 3], [1], [], []]
    for bounds in ([(0, 3)], [(1, 3)], [(3, 5)]):  # an equal or falling pair inside
        with pytest.raises(DecodeError) as exc:
            m.box_lists(rec, bounds)
        assert str(exc.value) == "box ids must be >= 1 and strictly ascending"
    rec["id"][2] = 0
    with pytest.raises(DecodeError, match=r"^box ids must be >= 1 and strictly ascending$"):
        m.box_lists(rec, [(2, 3)])
    for bounds in ([(0, 6)], [(3, 2)], [(-1, 2)]):
        with pytest.raises(ParameterError) as exc:
            m.box_lists(rec, bounds)
        assert str(exc.value) == "box list bounds out of range"
    for records in (rec.reshape(5, 1), rec["id"], list(rec)):
        with pytest.raises(ParameterError) as exc:
            m.box_lists(records, [(0, 1)])  # type: ignore[arg-type]
        assert str(exc.value) == "box records must be a 1-D BOX_RECORD_DTYPE array"


class _Bytes(bytes):
    pass


def test_encode_takes_the_slow_header_path_to_the_same_bytes() -> None:
    """A session id that is a ``bytes`` subclass is written field by field, to the same
    bytes; a header value out of range is refused either way."""
    for cls in VALID:
        plain = make(cls)
        odd = make(cls, session_id=_Bytes(SID))
        assert m.encode(odd) == m.encode(plain)
    msg = make(m.ConsistencySignature)
    object.__setattr__(msg, "sender", 2**32)
    with pytest.raises(ParameterError) as exc:
        m.encode(msg)
    assert str(exc.value) == "header field out of range"
    odd = make(m.ConsistencySignature, session_id=_Bytes(SID))
    object.__setattr__(odd, "recipient", 2**32)
    with pytest.raises(ParameterError, match=r"^value 4294967296 does not fit in u32$"):
        m.encode(odd)


def test_encode_refuses_what_is_not_one_of_its_messages() -> None:
    class Other(m.ConsistencySignature):
        pass

    for bad in (object(), b"bytes", Other(session_id=SID, sender=3, recipient=0, signature=S)):
        with pytest.raises(ParameterError) as exc:
            m.encode(bad)  # type: ignore[arg-type]
        assert str(exc.value) == "not a secagg masking message"
