"""The key holder's side: verify and decrypt aggregate envelopes (``protocols/he_sum.md`` §5.6).

Used by the decryptor party (SEPARATE_DECRYPTOR) and by a client holding the
shared key (SHARED_CLIENT_KEY).

Security notes
--------------
Only ``AGGREGATE_CHUNK`` envelopes signed by the server are accepted; a client's
own chunk is refused before anything is deserialized or decrypted, and so is an
aggregate over fewer than ``min_contributors`` clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError
from secagg.he.envelope import Envelope, EnvelopeKind, decode_envelope
from secagg.he.keys import ContextKind, HEContext
from secagg.he.params import Scheme
from secagg.he.session import HESession

__all__ = ["HEAggregate", "HEDecryptor"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HEAggregate:
    """A decrypted aggregate.

    ``values`` is float64 (CKKS, approximate) or int64 (BFV, exact integer sum).
    """

    values: npt.NDArray[Any]
    contributors: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.values, np.ndarray) or self.values.ndim != 1:
            raise ParameterError("values must be a 1-D array")

    @property
    def count(self) -> int:
        return len(self.contributors)


class HEDecryptor:
    """Collects the aggregate envelopes of one round and decrypts them.

    Parameters
    ----------
    session:
        The round configuration.
    secret_context:
        The SECRET context envelope.
    n_threads:
        TenSEAL threads.

    Raises
    ------
    LocalProtocolError
        If handed a PUBLIC context (it could not decrypt).
    ParameterError
        If the context does not match the session.
    """

    __slots__ = ("_chunks", "_contributors", "_ctx", "_session", "received_kinds")

    def __init__(self, *, session: HESession, secret_context: bytes, n_threads: int = 2) -> None:
        if not isinstance(session, HESession):
            raise ParameterError("session must be an HESession")
        ctx = HEContext.from_bytes(secret_context, kind=ContextKind.SECRET, n_threads=n_threads)
        session.check_context(ctx, role="secret context")
        self._session = session
        self._ctx = ctx
        self._chunks: dict[int, Any] = {}
        self._contributors: tuple[int, ...] | None = None
        #: Kind of every envelope this party was handed, accepted or not.
        self.received_kinds: list[EnvelopeKind] = []

    def receive(self, data: bytes) -> list[Envelope]:
        """Accept one aggregate envelope.  Returns the messages to send: none (the
        key holder only decrypts; :meth:`result` is the sum).

        Raises
        ------
        DecodeError
            Malformed envelope or payload.
        RemoteProtocolError
            A client chunk (never decrypted), another round, too few or
            inconsistent contributors, unregistered contributors, a duplicate.
        CryptoError
            The server's signature does not verify.
        """
        env = decode_envelope(data)
        self.received_kinds.append(env.kind)
        s = self._session
        if env.kind is not EnvelopeKind.AGGREGATE_CHUNK:
            raise RemoteProtocolError(
                "the key holder accepts only aggregates, never a client chunk"
            )
        s.check_header(env)
        env.verify(s.server_key)
        if len(env.contributors) < s.min_contributors:
            raise RemoteProtocolError(
                f"aggregate over {len(env.contributors)} < min_contributors={s.min_contributors}"
            )
        if any(c not in s.client_keys for c in env.contributors):
            raise RemoteProtocolError("aggregate lists an unregistered client")
        if self._contributors is not None and env.contributors != self._contributors:
            raise RemoteProtocolError("aggregate chunks list different contributors")
        if env.chunk_index in self._chunks:
            raise RemoteProtocolError(f"duplicate aggregate chunk {env.chunk_index}")
        tensor = self._ctx.load(env.payload, ciphertexts=s.chunk_ciphertexts(env.chunk_index))
        self._chunks[env.chunk_index] = tensor
        self._contributors = env.contributors
        return []

    @property
    def complete(self) -> bool:
        return len(self._chunks) == self._session.chunk_count

    def result(self) -> HEAggregate:
        """Decrypt the complete aggregate.

        Raises
        ------
        LocalProtocolError
            If chunks are missing.
        RemoteProtocolError
            An aggregate chunk from the server does not decrypt under this key, or
            (BFV only) a slot decodes outside ``[0, t/2)`` — some client sent
            out-of-range values (the sum is then not trustworthy).
        """
        s = self._session
        if not self.complete or self._contributors is None:
            raise LocalProtocolError(
                f"have {len(self._chunks)} of {s.chunk_count} aggregate chunks"
            )
        try:  # our context can decrypt (checked in __init__): a failure is the server's chunk
            parts = [
                self._ctx.decrypt(self._chunks[j]).T.reshape(-1) for j in range(s.chunk_count)
            ]
        except LocalProtocolError as exc:
            raise RemoteProtocolError(f"the server's aggregate does not decrypt: {exc}") from None
        values = np.concatenate(parts)[: s.vector_length]
        if s.params.scheme is Scheme.BFV and values.size and int(values.min()) < 0:
            raise RemoteProtocolError("aggregate out of range: a client sent out-of-range values")
        return HEAggregate(values=values, contributors=self._contributors)
