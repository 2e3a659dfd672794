"""Derivations shared by the client and the server (``protocols/secagg.md`` §3)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from cryptography.hazmat.primitives import hashes

from secagg.errors import ParameterError
from secagg.primitives.kdf import derive, derive_info_many, encode_info, info_prefix
from secagg.primitives.kex import derive_pairwise

__all__ = [
    "SHARE_CONTEXT",
    "SHARE_ROUND",
    "advertise_signature_input",
    "consistency_signature_input",
    "graph_key",
    "graph_key_joined",
    "ids_bytes",
    "mask_sign",
    "pairwise_seed",
    "seed_commitment",
    "seed_commitments_many",
    "seed_commitments_shared",
    "seed_reveal_signature_input",
    "seed_view_digest",
    "seed_view_digest_columns",
    "self_mask_commitment",
    "self_mask_seed",
    "share_key",
    "view_digest",
    "view_digest_ids",
]

SHARE_ROUND = 1
SHARE_CONTEXT = "secagg-shares"


def self_mask_seed(b: bytes, *, session_id: bytes, client: int) -> bytes:
    """PRG seed of the self mask ``PRG(b_u)``."""
    return derive(b, purpose="self-mask-seed", session_id=session_id, fields=(client,))


def self_mask_commitment(b: bytes, *, session_id: bytes, client: int) -> bytes:
    """``h_u``: binds ``b_u`` so a reconstructed value can be checked."""
    return derive(b, purpose="self-mask-commitment", session_id=session_id, fields=(client,))


def pairwise_seed(
    private: object, peer_public: bytes, *, session_id: bytes, a: int, b: int
) -> bytes:
    """``s_{a,b}``: the pairwise mask seed (symmetric in ``a``, ``b``)."""
    return derive_pairwise(
        private,  # type: ignore[arg-type]
        peer_public,
        purpose="pairwise-mask-seed",
        session_id=session_id,
        party_a=a,
        party_b=b,
    )


def share_key(private: object, peer_public: bytes, *, session_id: bytes, a: int, b: int) -> bytes:
    """``k_{a,b}``: the AEAD key for share boxes between ``a`` and ``b``."""
    return derive_pairwise(
        private,  # type: ignore[arg-type]
        peer_public,
        purpose="share-encryption-key",
        session_id=session_id,
        party_a=a,
        party_b=b,
    )


def ids_bytes(ids: Iterable[int]) -> bytes:
    """``IDS(S)``: ascending ids, each ``u32_be``, concatenated."""
    s = sorted(ids)
    if s and set(map(type, s)) == {int} and s[0] >= 0 and s[-1] < 2**32:
        return np.array(s, dtype=">u4").tobytes()  # one C pass (the server runs this n times)
    return b"".join(i.to_bytes(4, "big") for i in s)


def advertise_signature_input(
    *,
    session_id: bytes,
    client: int,
    c_pk: bytes,
    s_pk: bytes,
    commitment: bytes,
    seed_commitment: bytes,
) -> bytes:
    return encode_info(
        "advertise-keys-signature",
        session_id,
        (client, c_pk, s_pk, commitment, seed_commitment),
    )


def consistency_signature_input(
    *, session_id: bytes, client: int, survivors: Iterable[int], view: bytes = b""
) -> bytes:
    """What a client signs in round 3: ``U3`` and (SecAgg+) the U1 view ``D1`` whose
    reveals fixed its graph (empty for the complete graph)."""
    return encode_info(
        "consistency-check-signature", session_id, (client, ids_bytes(survivors), view)
    )


def mask_sign(u: int, v: int) -> int:
    """``ε_{u,v}``: +1 if ``u < v``, -1 if ``u > v``."""
    return 1 if u < v else -1


def view_digest(*, session_id: bytes, client: int, senders: Iterable[int]) -> bytes:
    """The U2 view ``u`` masked with, bound into its MaskedInput (32 bytes).

    ``SHA-256(encode_info("masked-input-view", session_id, (u, IDS(S_u))))`` where
    ``S_u`` are the senders of the share boxes ``u`` accepted, i.e. exactly the
    neighbors whose pairwise masks are in ``y_u``.
    """
    return view_digest_ids(session_id=session_id, client=client, ids=ids_bytes(senders))


def view_digest_ids(*, session_id: bytes, client: int, ids: bytes) -> bytes:
    """:func:`view_digest` from ``IDS(S_u)`` already built (ascending, ``u32_be`` each)."""
    h = hashes.Hash(hashes.SHA256())
    h.update(encode_info("masked-input-view", session_id, (client, ids)))
    return h.finalize()


def seed_commitment(r: bytes, *, session_id: bytes, client: int) -> bytes:
    """``g_u``: commits client ``u`` to its graph-seed contribution ``r_u`` (32 bytes)."""
    return derive(r, purpose="graph-seed-commitment", session_id=session_id, fields=(client,))


def seed_view_digest(*, session_id: bytes, entries: Iterable[tuple[int, bytes]]) -> bytes:
    """``D1``: SHA-256 over ``U1`` and its seed commitments, ascending by id."""
    pairs = sorted(entries)
    return seed_view_digest_columns(
        session_id=session_id,
        ids=ids_bytes(u for u, _ in pairs),
        commitments=b"".join(g for _, g in pairs),
    )


def seed_view_digest_columns(*, session_id: bytes, ids: bytes, commitments: bytes) -> bytes:
    """:func:`seed_view_digest` from the two columns of an ascending view: ``ids`` is
    ``IDS(U1)`` (``u32_be`` each) and ``commitments`` the 32-byte ``g_v`` in that order."""
    h = hashes.Hash(hashes.SHA256())
    h.update(encode_info("graph-seed-view", session_id, (ids, commitments)))
    return h.finalize()


def seed_commitments_many(*, session_id: bytes, ids: bytes, reveals: bytes) -> bytes:
    """:func:`seed_commitment` of every ``(v, r_v)``, concatenated: ``ids`` is ``u32_be``
    each, ``reveals`` the 32-byte ``r_v`` in the same order.  One label prefix for all,
    one HMAC pair per client (:func:`~secagg.primitives.kdf.derive_info_many`)."""
    n = len(ids) // 4
    if len(ids) != 4 * n or len(reveals) != 32 * n:
        raise ParameterError("ids and reveals must hold the same number of 4- and 32-byte items")
    # the label of client v is prefix || LP(u64_be(v)); build the n tails in one go
    tails = np.zeros(n, dtype=[("len", ">u4"), ("id", ">u8")])
    tails["len"] = 8
    tails["id"] = np.frombuffer(ids, dtype=">u4")
    raw = tails.tobytes()
    prefix = info_prefix("graph-seed-commitment", session_id, 1)
    infos = [prefix + raw[i : i + 12] for i in range(0, 12 * n, 12)]
    ikms = [reveals[i : i + 32] for i in range(0, 32 * n, 32)]
    return derive_info_many(ikms, infos)


#: ``((session_id, IDS, reveals), commitments)`` for the last few lists, newest first; an
#: immutable tuple replaced in one assignment, so threads sharing it need no lock.
_OPENED: tuple[tuple[tuple[bytes, bytes, bytes], bytes], ...] = ()
_OPENED_KEPT = 4


def seed_commitments_shared(*, session_id: bytes, ids: bytes, reveals: bytes) -> bytes:
    """:func:`seed_commitments_many`, computed once per process for the same arguments.

    A process that hosts many clients of one round (a simulator's worker, a Ray actor)
    hands every one of them the same reveal list; the commitments that list opens are a
    public, deterministic function of it, so they are derived once and each client
    compares them with the commitments of *its own* SeedRequest.  Only this function's
    own outputs are kept (the last four argument triples, compared by value), so a
    different list, session or id column is derived afresh.  A device hosting one
    client pays the full ``n`` derivations (two HMAC-SHA256 each).
    """
    global _OPENED
    key = (session_id, ids, reveals)
    for kept, out in _OPENED:
        if kept == key:
            return out
    out = seed_commitments_many(session_id=session_id, ids=ids, reveals=reveals)
    _OPENED = ((key, out), *_OPENED[: _OPENED_KEPT - 1])
    return out


def seed_reveal_signature_input(*, session_id: bytes, client: int, view: bytes) -> bytes:
    return encode_info("graph-seed-reveal-signature", session_id, (client, view))


def graph_key(
    *, session_id: bytes, graph_seed: bytes, view: bytes, reveals: Iterable[tuple[int, bytes]]
) -> bytes:
    """The Harary permutation key: every reveal of ``U1`` (ascending by id) through HKDF,
    with the view ``D1`` and the server's ``graph_seed`` in the label."""
    return graph_key_joined(
        session_id=session_id,
        graph_seed=graph_seed,
        view=view,
        reveals=b"".join(r for _, r in sorted(reveals)),
    )


def graph_key_joined(*, session_id: bytes, graph_seed: bytes, view: bytes, reveals: bytes) -> bytes:
    """:func:`graph_key` from the reveals of ``U1`` already joined in ascending id order."""
    return derive(reveals, purpose="graph-seed", session_id=session_id, fields=(graph_seed, view))
