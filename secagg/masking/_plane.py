"""The key-and-share plane of a SecAgg round, batched per round.

Everything a party pays *per neighbor* or *per share* — the pairwise X25519
agreements and HKDF derivations, the AEAD share boxes, the Shamir shares, the
server's reconstructions and its per-dropped-client seeds — in loops that build
their labels once per round and then append only the per-peer fields.  Every
function here returns exactly the bytes the one-at-a-time helpers of
:mod:`secagg.masking._common`, :mod:`secagg.primitives.aead` and
:mod:`secagg.primitives.kex` return (``tests/masking/test_plane.py`` checks it;
the vectors in ``protocols/vectors`` pin them): nothing on the wire or in a
derivation changes.

No I/O and no threads: work that may run in parallel is handed to a ``map``-like
callable the caller injects (:func:`pairwise_seeds`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg.errors import CryptoError, ParameterError
from secagg.masking import _common as cm
from secagg.masking import messages as m
from secagg.primitives import aead, shamir
from secagg.primitives.field import ELEMENT_BYTES, P
from secagg.primitives.kdf import derive_info, info_prefix, int_field
from secagg.primitives.kex import PUBLIC_KEY_BYTES
from secagg.primitives.rand import RandomSource

__all__ = [
    "RoundLabels",
    "labels",
    "open_share_boxes",
    "pairwise_seeds",
    "reconstruct_secret_rows",
    "reconstruct_secrets",
    "route_boxes",
    "seal_share_boxes",
    "share_keys",
]

_CONTEXT = cm.SHARE_CONTEXT.encode("utf-8")
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True, slots=True)
class RoundLabels:
    """The label prefixes of one session, built once (see :func:`labels`)."""

    session_id: bytes
    share_key: bytes  #: info prefix of ``k_{a,b}`` (purpose share-encryption-key, 2 fields)
    pairwise_seed: bytes  #: info prefix of ``s_{a,b}`` (purpose pairwise-mask-seed, 2 fields)
    share_ad: bytes  #: AD prefix of share boxes, up to the sender field exclusive
    share_ad_tail: bytes  #: ``LP(context)``, the AD's last field

    def pair_info(self, prefix: bytes, a: int, b: int) -> bytes:
        """``prefix || LP(u64 min) || LP(u64 max)``: the info of a symmetric pairwise key."""
        if a == b:
            raise ParameterError("a party cannot agree a pairwise key with itself")
        lo, hi = (a, b) if a < b else (b, a)
        return prefix + int_field(lo) + int_field(hi)

    def box_ad(self, sender: int, receiver: int) -> bytes:
        """``associated_data(round_=SHARE_ROUND, sender, receiver, context=SHARE_CONTEXT)``."""
        return self.share_ad + int_field(sender) + int_field(receiver) + self.share_ad_tail


@lru_cache(maxsize=64)
def labels(session_id: bytes) -> RoundLabels:
    """The round's label prefixes (cached per session id)."""
    sid = bytes(session_id)
    return RoundLabels(
        session_id=sid,
        share_key=info_prefix("share-encryption-key", sid, 2),
        pairwise_seed=info_prefix("pairwise-mask-seed", sid, 2),
        share_ad=info_prefix("aead-ad", sid, 4) + int_field(cm.SHARE_ROUND),
        share_ad_tail=len(_CONTEXT).to_bytes(4, "big") + _CONTEXT,
    )


def _exchange(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    if not isinstance(peer_public, (bytes, bytearray)) or len(peer_public) != PUBLIC_KEY_BYTES:
        raise ParameterError("an X25519 public key is exactly 32 bytes")
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:  # low-order point: all-zero shared secret
        raise CryptoError() from None


def share_keys(
    private: X25519PrivateKey, me: int, peers: Iterable[tuple[int, bytes]], lab: RoundLabels
) -> dict[int, bytes]:
    """``{v: k_{me,v}}`` for ``(v, c_pk_v)`` in ``peers`` (= :func:`_common.share_key`).

    Raises
    ------
    CryptoError
        A peer key is a low-order point.
    ParameterError
        A peer key is not 32 bytes, or a peer id equals ``me``.
    """
    prefix = lab.share_key
    return {
        v: derive_info(_exchange(private, pk), lab.pair_info(prefix, me, v)) for v, pk in peers
    }


def seal_share_boxes(
    me: int,
    owners: Sequence[int],
    keys: Mapping[int, bytes],
    b_row: Sequence[int],
    s_row: Sequence[int],
    lab: RoundLabels,
    rng: RandomSource,
) -> list[tuple[int, bytes]]:
    """One sealed box per holder ``v`` with ``encode_share_plaintext(me, v, b, s)``.

    Byte-for-byte what ``aead.seal(keys[v], pt, round_=SHARE_ROUND, sender=me,
    receiver=v, context=SHARE_CONTEXT, rng=rng)`` returns, nonces drawn from ``rng``
    in the same order.
    """
    head = lab.share_ad + int_field(me)
    tail = lab.share_ad_tail
    me4 = me.to_bytes(4, "big")
    boxes = []
    for v, b, s in zip(owners, b_row, s_row, strict=True):
        pt = me4 + v.to_bytes(4, "big") + b.to_bytes(ELEMENT_BYTES, "big")
        pt += s.to_bytes(ELEMENT_BYTES, "big")
        ad = head + int_field(v) + tail
        boxes.append((v, aead.seal_with_ad(keys[v], pt, ad, rng=rng)))
    return boxes


def open_share_boxes(
    me: int, boxes: Iterable[tuple[int, bytes]], keys: Mapping[int, bytes], lab: RoundLabels
) -> dict[int, tuple[int, int]]:
    """``{v: (b_share, s_share)}`` from the boxes addressed to ``me``.

    Raises
    ------
    CryptoError
        A box fails to open, or its plaintext is malformed, out of the field, or names
        another owner or holder (one opaque error for all of them).
    """
    me4 = me.to_bytes(4, "big")
    tail = int_field(me) + lab.share_ad_tail
    held: dict[int, tuple[int, int]] = {}
    for v, box in boxes:
        pt = aead.open_with_ad(keys[v], box, lab.share_ad + int_field(v) + tail)
        if len(pt) != 8 + 2 * ELEMENT_BYTES or pt[0:4] != v.to_bytes(4, "big") or pt[4:8] != me4:
            raise CryptoError()
        b = int.from_bytes(pt[8 : 8 + ELEMENT_BYTES], "big")
        s = int.from_bytes(pt[8 + ELEMENT_BYTES :], "big")
        if b >= P or s >= P:
            raise CryptoError()
        held[v] = (b, s)
    return held


def pairwise_seeds(
    pairs: Sequence[tuple[X25519PrivateKey, bytes, int, int]],
    lab: RoundLabels,
    map_fn: MapFn | None = None,
    *,
    batch: int = 256,
) -> list[bytes]:
    """``s_{a,b}`` for each ``(private_a, public_b, a, b)`` (= :func:`_common.pairwise_seed`).

    The pairs are cut into batches of ``batch`` and the batches handed to ``map_fn``
    (``executor.map`` spreads the agreements over cores; builtin :func:`map` by
    default); results come back in order.

    Raises
    ------
    CryptoError
        A public key is a low-order point.
    ParameterError
        A public key is not 32 bytes, or ``a == b``, or ``map_fn`` did not return one
        result per batch.
    """
    prefix = lab.pairwise_seed
    # each distinct public key is parsed, and each id's label field built, once (the
    # server pairs every survivor with every dropped neighbor: O(n k) pairs, O(n) keys)
    publics: dict[bytes, X25519PublicKey] = {}
    fields: dict[int, bytes] = {}
    jobs: list[tuple[X25519PrivateKey, X25519PublicKey, bytes]] = []
    for sk, pk, a, b in pairs:
        if not isinstance(pk, (bytes, bytearray)) or len(pk) != PUBLIC_KEY_BYTES:
            raise ParameterError("an X25519 public key is exactly 32 bytes")
        key = pk if type(pk) is bytes else bytes(pk)
        pub = publics.get(key)
        if pub is None:
            pub = publics[key] = X25519PublicKey.from_public_bytes(key)
        if a == b:
            raise ParameterError("a party cannot agree a pairwise key with itself")
        lo, hi = (a, b) if a < b else (b, a)
        f_lo = fields.get(lo)
        if f_lo is None:
            f_lo = fields[lo] = int_field(lo)
        f_hi = fields.get(hi)
        if f_hi is None:
            f_hi = fields[hi] = int_field(hi)
        jobs.append((sk, pub, prefix + f_lo + f_hi))

    def work(part: Sequence[tuple[X25519PrivateKey, X25519PublicKey, bytes]]) -> list[bytes]:
        out = []
        for sk, pub, info in part:
            try:
                shared = sk.exchange(pub)
            except ValueError:  # low-order point: all-zero shared secret
                raise CryptoError() from None
            out.append(derive_info(shared, info))
        return out

    parts = [jobs[i : i + batch] for i in range(0, len(jobs), batch)]
    out: list[bytes] = []
    for seeds in (map_fn or map)(work, parts):
        out.extend(seeds)
    if len(out) != len(jobs):  # a map_fn that dropped or added a batch
        raise ParameterError(f"map_fn returned {len(out)} seeds for {len(pairs)} pairs")
    return out


def reconstruct_secrets(point_lists: Sequence[Sequence[tuple[int, int]]], t: int) -> list[bytes]:
    """32-byte secrets from their shares, all at once (:func:`shamir.reconstruct_many`).

    Raises
    ------
    ParameterError
        Too few or malformed shares, or a reconstructed value that is not a 32-byte
        secret (the shares were inconsistent).
    """
    out = []
    for v in shamir.reconstruct_many(point_lists, t):
        if v >= 2**256:
            raise ParameterError("reconstructed value is not a 32-byte secret")
        out.append(v.to_bytes(32, "big"))
    return out


def reconstruct_secret_rows(xs: np.ndarray, ys: np.ndarray, t: int) -> list[bytes]:
    """:func:`reconstruct_secrets` from ``(S, t)`` ascending x-coordinates and
    ``(S, t, 33)`` share bytes (:func:`shamir.reconstruct_rows`).

    Raises
    ------
    ParameterError
        As :func:`reconstruct_secrets`.
    """
    out = []
    for v in shamir.reconstruct_rows(xs, ys, t):
        if v >= 2**256:
            raise ParameterError("reconstructed value is not a 32-byte secret")
        out.append(v.to_bytes(32, "big"))
    return out


def route_boxes(
    sent: Mapping[int, Sequence[tuple[int, bytes]]], receivers: Sequence[int]
) -> dict[int, m.BoxList]:
    """The server's forwarding step, in one pass over the wire records.

    ``sent[v]`` are the boxes ``v`` sent, ``(receiver, box)`` ascending by receiver.
    Returns, for each ``u`` of ``receivers``, ``((v, box_{v->u}), ...)`` ascending by
    sender ``v`` — exactly the list a loop over the senders in ascending order builds;
    boxes addressed to anyone not in ``receivers`` are dropped.  One stable sort of
    all records by receiver instead of one Python step per box; each list keeps a
    view of its records, so encoding it is one copy.
    """
    senders = sorted(sent)
    size = m.BOX_RECORD_DTYPE.itemsize
    parts = [_record_array(sent[v]) for v in senders]
    # rows of raw record bytes: one gather of whole rows (a structured-field gather
    # copies element by element, ~3x slower)
    raw = (
        np.concatenate([p.view(np.uint8) for p in parts]).reshape(-1, size)
        if parts
        else np.empty((0, size), dtype=np.uint8)
    )
    origin = np.repeat(np.asarray(senders, dtype=np.uint32), [len(p) for p in parts])
    to = raw[:, :4].copy().view(">u4").ravel().astype(np.uint32)
    order = np.argsort(to, kind="stable")  # by receiver; senders stay ascending within
    to = to[order]
    out = np.take(raw, order, axis=0)
    out[:, :4] = origin[order].astype(">u4").view(np.uint8).reshape(-1, 4)  # id := sender
    del raw, origin, order
    records = out.view(m.BOX_RECORD_DTYPE).reshape(-1)
    rs = np.asarray(receivers, dtype=np.int64)
    lo = np.searchsorted(to, rs, "left").tolist()
    hi = np.searchsorted(to, rs, "right").tolist()
    lists = m.box_lists(records, list(zip(lo, hi, strict=True)))
    return dict(zip(receivers, lists, strict=True))


def _record_array(boxes: Sequence[tuple[int, bytes]]) -> np.ndarray:
    """The wire records of a validated box list as a ``BOX_RECORD_DTYPE`` array (a
    :class:`~secagg.masking.messages.BoxList`'s own, not copied)."""
    if type(boxes) is m.BoxList:
        return boxes.array
    return np.frombuffer(m.box_records(boxes), dtype=m.BOX_RECORD_DTYPE)
