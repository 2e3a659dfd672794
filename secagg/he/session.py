"""The round configuration every HE party is built from (``protocols/he_sum.md`` §5.2)."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secagg.errors import ParameterError, RemoteProtocolError
from secagg.he.envelope import MAX_CHUNKS, Envelope, EnvelopeKind
from secagg.he.params import HEParams, KeyCustody
from secagg.primitives.sign import PUBLIC_KEY_BYTES

if TYPE_CHECKING:
    from secagg.he.keys import HEContext

__all__ = ["HESession"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HESession:
    """One round of homomorphic summation.

    Parameters
    ----------
    params:
        The parameter set (its ``param_set_id`` goes into every envelope).
    key_id:
        Id of the key pair (from :func:`~secagg.he.keys.generate_keys`).
    custody:
        :class:`~secagg.he.params.KeyCustody`.
    session_id:
        16 bytes chosen uniformly by the server.
    round:
        Round number, ``0 <= round < 2^32``.
    vector_length:
        ``m``, elements per client update.
    client_keys:
        Ed25519 public identity key of every registered client (ids ``>= 1``).
    server_key:
        The server's Ed25519 public key (signs aggregates).
    max_ciphertexts_per_chunk:
        ``K``: ciphertexts per envelope.
    min_contributors:
        Fewest contributors for which an aggregate is released (``>= 1``; the
        default 2 keeps a lone client's update from being decrypted).

    Raises
    ------
    ParameterError
        On any out-of-range field.
    """

    params: HEParams
    key_id: bytes
    custody: KeyCustody
    session_id: bytes
    round: int
    vector_length: int
    client_keys: Mapping[int, bytes]
    server_key: bytes
    max_ciphertexts_per_chunk: int = 64
    min_contributors: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.params, HEParams):
            raise ParameterError("params must be HEParams")
        if not isinstance(self.custody, KeyCustody):
            raise ParameterError("custody must be a KeyCustody")
        for name in ("key_id", "session_id"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 16:
                raise ParameterError(f"{name} must be 16 bytes")
        for name, lo, hi in (
            ("round", 0, (1 << 32) - 1),
            ("vector_length", 1, (1 << 32) - 1),
            ("max_ciphertexts_per_chunk", 1, 1 << 16),
            ("min_contributors", 1, self.params.max_clients),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ParameterError(f"{name} must be an integer in [{lo}, {hi}]")
        keys = dict(self.client_keys)
        if not keys:
            raise ParameterError("at least one client must be registered")
        if len(keys) > self.params.max_clients:
            raise ParameterError(
                f"{len(keys)} clients exceed the parameter set's max_clients="
                f"{self.params.max_clients} (the sum could overflow)"
            )
        for cid, pk in keys.items():
            if isinstance(cid, bool) or not isinstance(cid, int) or not 1 <= cid < 1 << 32:
                raise ParameterError("client ids must be integers in [1, 2^32)")
            if not isinstance(pk, bytes) or len(pk) != PUBLIC_KEY_BYTES:
                raise ParameterError("client keys must be 32-byte Ed25519 public keys")
        object.__setattr__(self, "client_keys", types.MappingProxyType(keys))
        if not isinstance(self.server_key, bytes) or len(self.server_key) != PUBLIC_KEY_BYTES:
            raise ParameterError("server_key must be a 32-byte Ed25519 public key")
        if self.chunk_count > MAX_CHUNKS:
            raise ParameterError("vector too long for the envelope's chunk count")

    @property
    def ciphertext_count(self) -> int:
        """``C = ceil(m / slots)``."""
        return -(-self.vector_length // self.params.slots)

    @property
    def chunk_count(self) -> int:
        """``ceil(C / K)``."""
        return -(-self.ciphertext_count // self.max_ciphertexts_per_chunk)

    def chunk_ciphertexts(self, j: int) -> int:
        """Ciphertexts in chunk ``j``."""
        k = self.max_ciphertexts_per_chunk
        return min(k, self.ciphertext_count - j * k)

    def check_header(self, env: Envelope) -> None:
        """Rule 2 of ``protocols/he_sum.md`` §6: the envelope belongs to this round.

        Raises
        ------
        RemoteProtocolError
            If scheme, parameter set, key, session, round, length or chunk count differ.
        """
        p = self.params
        if env.scheme is not p.scheme or env.param_set_id != p.param_set_id:
            raise RemoteProtocolError("envelope is for another parameter set")
        if env.key_id != self.key_id:
            raise RemoteProtocolError("envelope is for another key (foreign context)")
        if env.session_id != self.session_id or env.round != self.round:
            raise RemoteProtocolError("envelope is for another session or round")
        if env.vector_length != self.vector_length or env.chunk_count != self.chunk_count:
            raise RemoteProtocolError("envelope length or chunk count does not match the round")

    def check_context(self, ctx: HEContext, *, role: str) -> None:
        """The context ``role`` is handed holds this round's key and parameter set.

        Raises
        ------
        ParameterError
            If its key id or parameter set differs from the session's.
        """
        if ctx.key_id != self.key_id or ctx.params.param_set_id != self.params.param_set_id:
            raise ParameterError(f"{role} does not belong to the session's key/parameters")

    def envelope(
        self,
        *,
        kind: EnvelopeKind,
        sender: int,
        chunk_index: int,
        contributors: tuple[int, ...],
        payload: bytes,
    ) -> Envelope:
        """Chunk ``chunk_index`` of this round (unsigned): the header that
        :meth:`check_header` accepts, with the given sender, contributors and payload.

        Raises
        ------
        ParameterError
            On an out-of-range field (see :class:`~secagg.he.envelope.Envelope`).
        """
        return Envelope(
            kind=kind,
            scheme=self.params.scheme,
            param_set_id=self.params.param_set_id,
            key_id=self.key_id,
            session_id=self.session_id,
            round=self.round,
            sender=sender,
            vector_length=self.vector_length,
            chunk_index=chunk_index,
            chunk_count=self.chunk_count,
            contributors=contributors,
            payload=payload,
        )
