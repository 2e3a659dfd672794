"""Shared helpers for the HE tests: sessions and parties built around a key pair
(the ``keys`` / ``bfv_keys`` fixtures of conftest.py, generated once per session)."""

from __future__ import annotations

from dataclasses import dataclass

from secagg.he import (
    ContextKind,
    HEClient,
    HEContext,
    HEKeys,
    HEServer,
    HESession,
    KeyCustody,
)
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey


@dataclass
class Round:
    session: HESession
    keys: HEKeys
    server: HEServer
    clients: dict[int, HEClient]
    signing: dict[int, SigningKey]
    server_key: SigningKey


def make_round(
    keys: HEKeys,
    *,
    n: int = 3,
    length: int = 100,
    chunk: int = 64,
    min_contributors: int = 2,
    seed: int = 0,
    custody: KeyCustody = KeyCustody.SEPARATE_DECRYPTOR,
    session_id: bytes | None = None,
    round_: int = 0,
) -> Round:
    rng = InsecureDeterministicRandom(seed, warn=False)
    signing = {i: SigningKey.generate(rng.child(f"id/{i}")) for i in range(1, n + 1)}
    server_key = SigningKey.generate(rng.child("server"))
    session = HESession(
        params=keys.params,
        key_id=keys.key_id,
        custody=custody,
        session_id=session_id if session_id is not None else rng.random_bytes(16),
        round=round_,
        vector_length=length,
        client_keys={i: k.public for i, k in signing.items()},
        server_key=server_key.public,
        max_ciphertexts_per_chunk=chunk,
        min_contributors=min_contributors,
    )
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC)
    clients = {
        i: HEClient(client_id=i, session=session, context=ctx, signing_key=k,
                    rng=rng.child(f"c/{i}"))
        for i, k in signing.items()
    }
    server = HEServer(session=session, public_context=keys.public_context, signing_key=server_key)
    return Round(session, keys, server, clients, signing, server_key)

