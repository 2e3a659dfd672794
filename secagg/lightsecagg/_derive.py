"""Derivations shared by LightSecAgg parties (``protocols/lightsecagg.md`` §3)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from secagg.lightsecagg.field import Elements, lagrange_matrix, prg_elements
from secagg.primitives.aead import associated_data
from secagg.primitives.kdf import derive
from secagg.primitives.kex import derive_pairwise

__all__ = [
    "SHARE_CONTEXT",
    "SHARE_ROUND",
    "box_ad",
    "decoding_matrix",
    "encoding_matrix",
    "mask_elements",
    "mask_seed",
    "padding_elements",
    "padding_seed",
    "share_key",
]

#: ``round_`` and ``context`` bound into the associated data of every coded-share box.
SHARE_ROUND = 2
SHARE_CONTEXT = "lightsecagg-coded-share"


def mask_seed(secret: bytes, *, session_id: bytes, client: int) -> bytes:
    """Seed of the client's mask ``z_u`` (HKDF of its 32-byte round secret)."""
    return derive(secret, purpose="lightsecagg/mask-seed", session_id=session_id,
                  fields=(client,))


def padding_seed(secret: bytes, *, session_id: bytes, client: int) -> bytes:
    """Seed of the client's privacy padding ``n_{u,1..T}``."""
    return derive(secret, purpose="lightsecagg/padding-seed", session_id=session_id,
                  fields=(client,))


def mask_elements(secret: bytes, *, session_id: bytes, client: int, count: int) -> Elements:
    """The first ``count`` elements of ``z_u`` (pieces are consecutive ``L``-runs)."""
    return prg_elements(mask_seed(secret, session_id=session_id, client=client), count)


def padding_elements(secret: bytes, *, session_id: bytes, client: int, count: int) -> Elements:
    """``T * L`` padding elements (piece ``k`` is the ``k``-th ``L``-run)."""
    return prg_elements(padding_seed(secret, session_id=session_id, client=client), count)


def share_key(private: object, peer_public: bytes, *, session_id: bytes, a: int, b: int) -> bytes:
    """The AEAD key of coded-share boxes between ``a`` and ``b`` (symmetric)."""
    return derive_pairwise(
        private,  # type: ignore[arg-type]
        peer_public,
        purpose="lightsecagg/share-key",
        session_id=session_id,
        party_a=a,
        party_b=b,
    )


def box_ad(*, session_id: bytes, sender: int, receiver: int) -> bytes:
    """Associated data of the box ``sender -> receiver`` (the SecAgg share-box binding)."""
    return associated_data(session_id=session_id, round_=SHARE_ROUND, sender=sender,
                           receiver=receiver, context=SHARE_CONTEXT)


@lru_cache(maxsize=16)
def encoding_matrix(target: int, alphas: tuple[int, ...]) -> Elements:
    """``E[j, k] = l_k(alpha_j)`` on ``beta = 1..U``: row ``j`` encodes for ``alphas[j]``."""
    m = lagrange_matrix(range(1, target + 1), alphas)
    m.setflags(write=False)
    return m


@lru_cache(maxsize=16)
def decoding_matrix(target: int, privacy: int, alphas: tuple[int, ...]) -> Elements:
    """``D[k, j] = l_j(beta_k)`` on the responders' ``alphas``, for ``k = 1..U-T``."""
    m = lagrange_matrix(alphas, range(1, target - privacy + 1))
    m.setflags(write=False)
    return np.asarray(m)
