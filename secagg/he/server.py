"""HE server: public context only, streaming running sum (``protocols/he_sum.md`` §5.4-5.5).

A sans-IO state machine: :meth:`HEServer.receive` takes the bytes of one client
envelope (and sends nothing back), :meth:`HEServer.finalize` returns the signed
aggregate envelopes (message objects; ``to_bytes()`` is what the key holder gets).  Its
phases are the project's one :class:`~secagg.phase.Phase`: ``MASKED_INPUT`` (the
upload) until :meth:`finalize`, then ``COMPLETED`` or ``ABORTED``.

Security notes
--------------
The server is built from a PUBLIC context envelope; :class:`HEContext` refuses
one that holds a secret key, so nothing the server holds can decrypt.  Every
envelope is fully validated (decode, header, signature, duplicate, payload
deserialization) before the state changes; a bad one raises and changes nothing.
Every ciphertext — the first upload's included, which becomes the running sum
without an addition — is checked to carry exactly a fresh ciphertext's SEAL
metadata (:meth:`HEContext.load`), so no upload can plant a running sum that
refuses the honest uploads after it; a signed upload that fails is blamed on its
sender alone (:class:`~secagg.errors.RejectedUploadError`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from secagg.errors import (
    AbortedError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RejectedUploadError,
    RemoteProtocolError,
)
from secagg.he.envelope import Envelope, EnvelopeKind, decode_envelope, sign_envelope
from secagg.he.keys import ContextKind, HEContext
from secagg.he.session import HESession
from secagg.phase import Phase
from secagg.primitives.sign import SigningKey

__all__ = ["HEServer"]


class HEServer:
    """Aggregates ciphertexts as they arrive.

    Parameters
    ----------
    session:
        The round configuration.
    public_context:
        The PUBLIC context envelope (bytes) from the key holder.
    signing_key:
        The server's Ed25519 key (its public half is ``session.server_key``).
    n_threads:
        TenSEAL threads used for deserialization and additions.

    Raises
    ------
    LocalProtocolError
        If handed a SECRET context (the server must never hold the secret key).
    DecodeError
        If the context envelope is malformed or holds a secret key.
    ParameterError
        If context, key or session do not match.
    """

    __slots__ = (
        "_contributors",
        "_ctx",
        "_key",
        "_pending",
        "_phase",
        "_session",
        "_sums",
        "bytes_received",
        "peak_ciphertexts",
    )

    def __init__(
        self,
        *,
        session: HESession,
        public_context: bytes,
        signing_key: SigningKey,
        n_threads: int = 2,
    ) -> None:
        if not isinstance(session, HESession):
            raise ParameterError("session must be an HESession")
        if not isinstance(signing_key, SigningKey) or signing_key.public != session.server_key:
            raise ParameterError("signing_key does not match session.server_key")
        ctx = HEContext.from_bytes(public_context, kind=ContextKind.PUBLIC, n_threads=n_threads)
        session.check_context(ctx, role="public context")
        self._session = session
        self._ctx = ctx
        self._key = signing_key
        self._phase = Phase.MASKED_INPUT
        self._sums: list[Any | None] = [None] * session.chunk_count
        self._pending: dict[int, dict[int, Any]] = {}
        self._contributors: list[int] = []
        self.bytes_received = 0
        #: Most ciphertexts held at once (running sums + pending uploads).
        self.peak_ciphertexts = 0

    # ------------------------------------------------------------------ queries
    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def collecting(self) -> Phase | None:
        """The phase whose client messages the server waits for: the upload
        (``MASKED_INPUT``) until :meth:`finalize`, then ``None``."""
        return Phase.MASKED_INPUT if self._phase is Phase.MASKED_INPUT else None

    @property
    def contributors(self) -> tuple[int, ...]:
        """Clients whose complete upload is in the running sum (sorted)."""
        return tuple(sorted(self._contributors))

    @property
    def count(self) -> int:
        return len(self._contributors)

    @property
    def context(self) -> HEContext:
        """The server's (public) context."""
        return self._ctx

    @property
    def held_ciphertexts(self) -> int:
        """Ciphertexts held now: the running sums plus buffered pending chunks."""
        s = self._session
        held = sum(s.chunk_ciphertexts(j) for j, t in enumerate(self._sums) if t is not None)
        for chunks in self._pending.values():
            held += sum(s.chunk_ciphertexts(j) for j in chunks)
        return held

    def state_digest(self) -> bytes:
        """SHA-256 over the running sums, contributors and pending uploads (for tests)."""
        h = hashlib.sha256()
        h.update(repr((self._phase.value, self.contributors)).encode())
        for t in self._sums:
            h.update(b"-" if t is None else hashlib.sha256(HEContext.serialize(t)).digest())
        for cid in sorted(self._pending):
            h.update(repr((cid, sorted(self._pending[cid]))).encode())
        return h.digest()

    # ------------------------------------------------------------------ steps
    def receive(self, data: bytes) -> list[Envelope]:
        """Validate one client envelope and add it to the round.

        A client's chunks are buffered until its upload is complete and then
        added to the running sums in one step.  Returns the messages to send:
        none (an HE round answers no upload; :meth:`finalize` sends the aggregate).

        Raises
        ------
        RejectedUploadError
            The envelope is validly signed by a registered client but its payload
            is not a ciphertext tensor for this round (malformed bytes, or SEAL
            metadata — level, NTT form, size, scale — other than a fresh
            encryption's).  Names the sender; nothing changed, the round goes on.
        DecodeError
            Malformed envelope.
        RemoteProtocolError
            Wrong round/parameters/key, not a client chunk, unknown sender,
            duplicate chunk, or the round is closed.
        CryptoError
            Bad signature (opaque).
        """
        if self._phase is not Phase.MASKED_INPUT:
            raise RemoteProtocolError("the round is closed")
        env = decode_envelope(data)
        s = self._session
        if env.kind is not EnvelopeKind.CLIENT_CHUNK:
            raise RemoteProtocolError("the server accepts only client chunks")
        s.check_header(env)
        pk = s.client_keys.get(env.sender)
        if pk is None:
            raise RemoteProtocolError(f"client {env.sender} is not registered")
        env.verify(pk)
        cid, j = env.sender, env.chunk_index
        if cid in self._contributors or j in self._pending.get(cid, {}):
            raise RemoteProtocolError(f"duplicate chunk {j} from client {cid}")
        try:
            tensor = self._ctx.load(env.payload, ciphertexts=s.chunk_ciphertexts(j))
        except DecodeError as exc:
            raise RejectedUploadError(str(exc), sender=cid, chunk_index=j) from None
        chunks = {**self._pending.get(cid, {}), j: tensor}
        if len(chunks) < s.chunk_count:
            self._pending[cid] = chunks
        else:
            try:
                new_sums = [
                    chunks[i] if cur is None else HEContext.add(cur, chunks[i])
                    for i, cur in enumerate(self._sums)
                ]
            except DecodeError as exc:  # unreachable after load's checks; still blamed
                raise RejectedUploadError(str(exc), sender=cid, chunk_index=j) from None
            # every check passed and every addition succeeded: commit
            self._sums = new_sums
            self._pending.pop(cid, None)
            self._contributors.append(cid)
        self.bytes_received += len(data)
        self.peak_ciphertexts = max(self.peak_ciphertexts, self.held_ciphertexts)
        return []

    def finalize(self) -> list[Envelope]:
        """Close the round and return the signed aggregate envelopes, one per chunk,
        addressed to the key holder.

        Clients whose upload is incomplete are dropped (their chunks discarded).

        Raises
        ------
        AbortedError
            If fewer than ``session.min_contributors`` clients contributed; the
            server then moves to ABORTED and releases nothing.
        LocalProtocolError
            If called twice.
        """
        if self._phase is not Phase.MASKED_INPUT:
            raise LocalProtocolError(f"finalize called in phase {self._phase.value}")
        s = self._session
        self._pending.clear()
        if self.count < s.min_contributors:
            self._phase = Phase.ABORTED
            self._sums = [None] * s.chunk_count
            raise AbortedError(
                f"{self.count} contributors < min_contributors={s.min_contributors}"
            )
        out = []
        for j, t in enumerate(self._sums):
            assert t is not None  # count >= 1 means every chunk sum exists
            env = s.envelope(
                kind=EnvelopeKind.AGGREGATE_CHUNK,
                sender=0,
                chunk_index=j,
                contributors=self.contributors,
                payload=HEContext.serialize(t),
            )
            out.append(sign_envelope(env, self._key))
        self._phase = Phase.COMPLETED
        return out
