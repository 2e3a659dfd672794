"""Derivations shared by the client and the server (``protocols/secagg.md`` §3)."""

from __future__ import annotations

from collections.abc import Iterable

from secagg.primitives.kdf import derive, encode_info
from secagg.primitives.kex import derive_pairwise

__all__ = [
    "SHARE_CONTEXT",
    "SHARE_ROUND",
    "advertise_signature_input",
    "consistency_signature_input",
    "ids_bytes",
    "mask_sign",
    "pairwise_seed",
    "self_mask_commitment",
    "self_mask_seed",
    "share_key",
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
    return b"".join(i.to_bytes(4, "big") for i in sorted(ids))


def advertise_signature_input(
    *, session_id: bytes, client: int, c_pk: bytes, s_pk: bytes, commitment: bytes
) -> bytes:
    return encode_info("advertise-keys-signature", session_id, (client, c_pk, s_pk, commitment))


def consistency_signature_input(
    *, session_id: bytes, client: int, survivors: Iterable[int]
) -> bytes:
    return encode_info("consistency-check-signature", session_id, (client, ids_bytes(survivors)))


def mask_sign(u: int, v: int) -> int:
    """``ε_{u,v}``: +1 if ``u < v``, -1 if ``u > v``."""
    return 1 if u < v else -1
