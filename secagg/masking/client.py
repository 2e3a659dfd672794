"""The SecAgg / SecAgg+ client as a sans-IO state machine.

Rules of this file (h11 style):

* The project's one phase enum (:class:`~secagg.phase.Phase`) and one
  transition table per security mode (:data:`TRANSITIONS`):
  ``(phase, message type) -> (handler, next phase)``.  A server message whose type
  is not in the table for the current phase is a protocol violation: the client
  moves to ``ABORTED`` (``abort_code`` UNEXPECTED_MESSAGE) and raises
  :class:`RemoteProtocolError`.  A handler returns the reply; the table, not the
  handler, sets the next phase.
* Bytes that cannot be decoded, or that name another session, another recipient
  or a sender other than the server, raise :class:`DecodeError` and change nothing
  (they are not part of this round).
* Handlers validate everything first and commit the new state last; any failed
  check moves the client to ``ABORTED`` (and wipes its secrets) before raising.
* Nothing here does I/O, sleeps or starts threads.

Normative description: ``protocols/secagg.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from secagg.encoding import bitpack
from secagg.encoding.modular import check_in_range
from secagg.errors import (
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.masking import _common as cm
from secagg.masking import _plane
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason, Violation
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.graph import neighbors
from secagg.masking.phase import CLIENT_TRANSITIONS, TERMINAL, Kind, Phase, Transition
from secagg.masking.policy import ClientPolicy
from secagg.primitives import shamir
from secagg.primitives import sign as _sign
from secagg.primitives.field import secret_to_element
from secagg.primitives.kex import KeyPair
from secagg.primitives.prg import CHUNK_ELEMENTS, UIntArray, apply_masks
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = ["TRANSITIONS", "Client"]

#: The client's transition table: mode -> (phase, message type) -> handler, next phase.
TRANSITIONS: Mapping[Kind, Mapping[tuple[Phase, m.MessageType], Transition]] = CLIENT_TRANSITIONS


@lru_cache(maxsize=8)
def _registered_array(clients: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """``U0`` (ascending) as an array, for checking a U1 list against it in one go."""
    return np.asarray(clients, dtype=np.int64)


@lru_cache(maxsize=8)
def _registered(clients: tuple[int, ...]) -> frozenset[int]:
    """``U0`` as a set (built once per round, not once per check)."""
    return frozenset(clients)


class Client:
    """One client of one round.

    Parameters
    ----------
    config:
        The round configuration (checked by the caller against its policy).
    client_id:
        This client's id; must be in ``config.clients``.
    input_vector:
        ``x_u``: a 1-D array in Z_{2^bits} (uint32 for bits <= 32, else uint64) of
        ``config.length`` elements.  Not copied; it must not change during the round.
    rng:
        Source of keys, ``b_u``, Shamir coefficients and AEAD nonces.
    identity_key:
        Ed25519 identity key; required in malicious mode, and its public part must
        equal ``config.identity_key(client_id)``.
    policy:
        What this client accepts (:class:`~secagg.masking.policy.ClientPolicy`);
        checked first, before anything is built or sent.

    Raises
    ------
    PolicyError
        If ``config`` is below ``policy``.
    ParameterError
        On a bad id, input or identity key.

    Security notes
    --------------
    The client reveals, per peer, at most one share (of ``b_v`` or of ``s_v^SK``),
    answers at most one UnmaskingRequest, and never unmasks when fewer than ``t``
    survivors (or fewer than ``t`` surviving neighbors) are claimed.
    """

    def __init__(
        self,
        *,
        config: RoundConfig,
        client_id: int,
        input_vector: UIntArray,
        rng: RandomSource | None = None,
        identity_key: _sign.SigningKey | None = None,
        policy: ClientPolicy | None = None,
    ) -> None:
        if not isinstance(config, RoundConfig):
            raise ParameterError("config must be a RoundConfig")
        if policy is not None:
            if not isinstance(policy, ClientPolicy):
                raise ParameterError("policy must be a ClientPolicy")
            policy.check(config)  # refuse before anything exists to send
        if client_id not in config.clients:
            raise ParameterError(f"client {client_id} is not registered in this round")
        try:
            check_in_range(input_vector, config.bits)
        except ParameterError as exc:
            raise ParameterError(
                f"input_vector: {exc}; encode float updates with QuantizationSpec.quantize "
                "or the scheme API (secagg.runtime.schemes.MaskedClientHalf.encode)"
            ) from None
        if len(input_vector) != config.length:
            raise ParameterError(
                f"input has {len(input_vector)} elements, expected {config.length}"
            )
        if not input_vector.flags.c_contiguous:
            raise ParameterError("input must be C-contiguous")
        if config.security is SecurityMode.MALICIOUS and (
            identity_key is None or identity_key.public != config.identity_key(client_id)
        ):
            raise ParameterError("malicious mode needs this client's registered identity key")
        self._config = config
        self._id = client_id
        self._x = input_vector
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self._identity = identity_key
        # SecAgg+: known once the graph-seed reveals of U1 arrive with the KeysBroadcast
        self._neighbors: frozenset[int] = (
            neighbors(config, client_id) if config.protocol is ProtocolKind.SECAGG else frozenset()
        )
        # SecAgg+: U1 as (IDS(U1), g_1 || g_2 || ...), ascending by id
        self._seed_view: tuple[bytes, bytes] = (b"", b"")
        self._seed_digest = b""
        self._phase = Phase.INIT
        self._abort_reason: str | None = None
        self._abort_code: AbortReason | None = None
        # secrets (wiped on completion or abort)
        self._c: KeyPair | None = None
        self._s: KeyPair | None = None
        self._b: bytes | None = None
        self._r = b""  # graph-seed contribution (public once revealed)
        self._g = b""
        self._peers: dict[int, m.KeyEntry] = {}
        self._share_keys: dict[int, bytes] = {}
        self._held: dict[int, tuple[int, int]] = {}
        self._jobs: list[tuple[bytes, int]] = []
        self._view: bytes = b""
        self._signed: tuple[int, ...] | None = None

    # -- public view -----------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def client_id(self) -> int:
        return self._id

    @property
    def abort_reason(self) -> str | None:
        """Why the client aborted, in words (``None`` unless ABORTED)."""
        return self._abort_reason

    @property
    def abort_code(self) -> AbortReason | None:
        """Why the client aborted, as a value (``None`` unless ABORTED)."""
        return self._abort_code

    @property
    def neighbors(self) -> frozenset[int]:
        """``N(u)``; in SecAgg+ empty until the KeysBroadcast fixed the graph."""
        return self._neighbors

    # -- driving ---------------------------------------------------------------

    def start(self) -> m.AdvertiseKeys:
        """Round 0: draw keys and ``b_u``; return AdvertiseKeys.

        Raises
        ------
        LocalProtocolError
            If called in any phase but ``INIT``.
        """
        if self._phase is not Phase.INIT:
            raise LocalProtocolError(f"start() in phase {self._phase.value}")
        cfg = self._config
        c = KeyPair.generate(self._rng)
        s = KeyPair.generate(self._rng)
        b = self._rng.random_bytes(32)
        r = self._rng.random_bytes(32)
        com = cm.self_mask_commitment(b, session_id=cfg.session_id, client=self._id)
        g = cm.seed_commitment(r, session_id=cfg.session_id, client=self._id)
        sig = b""
        if cfg.security is SecurityMode.MALICIOUS:
            assert self._identity is not None  # checked in __init__
            sig = self._identity.sign(
                cm.advertise_signature_input(
                    session_id=cfg.session_id,
                    client=self._id,
                    c_pk=c.public,
                    s_pk=s.public,
                    commitment=com,
                    seed_commitment=g,
                )
            )
        msg = m.AdvertiseKeys(
            session_id=cfg.session_id,
            sender=self._id,
            recipient=m.SERVER_ID,
            c_pk=c.public,
            s_pk=s.public,
            commitment=com,
            seed_commitment=g,
            signature=sig,
        )
        self._c, self._s, self._b = c, s, b
        self._r, self._g = r, g
        self._phase = Phase.ADVERTISE_KEYS
        return msg

    def receive(self, data: bytes | bytearray | memoryview) -> list[m.Message]:
        """Decode one server message and handle it; returns the replies (0 or 1).

        Raises
        ------
        DecodeError
            Malformed bytes, another session, recipient or a non-server sender;
            nothing changed.
        RemoteProtocolError, CryptoError
            The server violated the protocol; the client is now ``ABORTED``.
        """
        return self.handle(m.decode(data))

    def handle(self, msg: m.Message) -> list[m.Message]:
        """Like :meth:`receive` for an already decoded message."""
        cfg = self._config
        if msg.session_id != cfg.session_id:
            raise DecodeError("message from another session")
        if msg.sender != m.SERVER_ID or msg.recipient != self._id:
            raise DecodeError("message is not from the server to this client")
        if self._phase in TERMINAL:
            raise RemoteProtocolError(
                f"{type(msg).__name__} after the round ended ({self._phase.value}); refused"
            )
        step = TRANSITIONS[(cfg.protocol, cfg.security)].get((self._phase, msg.TYPE))
        if step is None:
            self._abort(
                AbortReason.UNEXPECTED_MESSAGE,
                f"{type(msg).__name__} does not fit phase {self._phase.value}",
            )
            raise RemoteProtocolError(self._abort_reason)
        handler: Callable[[m.Message], list[m.Message]] = getattr(self, step.handler)
        try:
            replies = handler(msg)
        except Violation as exc:
            self._abort(exc.code, str(exc))
            raise
        except CryptoError as exc:
            code = (
                AbortReason.BAD_SHARE_BOX
                if msg.TYPE is m.MessageType.MASKED_INPUT_REQUEST
                else AbortReason.BAD_SIGNATURE
            )
            self._abort(code, str(exc))
            raise
        except RemoteProtocolError as exc:  # pragma: no cover - handlers raise Violation
            self._abort(AbortReason.INVALID_VALUE, str(exc))
            raise
        except ParameterError as exc:  # hostile values that a primitive refused
            self._abort(AbortReason.INVALID_VALUE, str(exc))
            raise RemoteProtocolError(str(exc)) from exc
        if step.next is not Phase.ABORTED:
            self._phase = step.next
        return replies

    def masked_input_chunks(self, chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[UIntArray]:
        """``y_u`` in consecutive chunks of ``chunk_elements`` (the last may be shorter).

        Available once the MaskedInputRequest has been handled and until the
        round ends; peak extra memory is one chunk plus one keystream buffer.
        ``chunk_elements`` is a multiple of 8, so every chunk but the last packs into
        whole bytes at any ``bits`` (wire version 2).

        Raises
        ------
        LocalProtocolError
            Before the masks are known or after the round ended.
        ParameterError
            If ``chunk_elements`` is not a positive multiple of 8.
        """
        if not self._jobs:
            raise LocalProtocolError(f"no masked input in phase {self._phase.value}")
        if (
            isinstance(chunk_elements, bool)
            or not isinstance(chunk_elements, int)
            or chunk_elements < 8
            or chunk_elements % 8
        ):
            raise ParameterError("chunk_elements must be a positive multiple of 8")
        jobs = list(self._jobs)
        return self._chunks(jobs, chunk_elements)

    def masked_input_stream(self, chunk_elements: int = CHUNK_ELEMENTS) -> Iterator[bytes]:
        """The wire bytes of this client's MaskedInput, piece by piece.

        The header and ``bits, length, view`` prefix first, then each chunk of
        :meth:`masked_input_chunks` packed at ``bits`` bits; the concatenation equals
        ``encode`` of the MaskedInput the client returned.

        Raises
        ------
        LocalProtocolError, ParameterError
            As :meth:`masked_input_chunks`.
        """
        chunks = self.masked_input_chunks(chunk_elements)
        cfg = self._config
        prefix = m.masked_input_prefix(
            session_id=cfg.session_id,
            sender=self._id,
            bits=cfg.bits,
            length=cfg.length,
            view=self._view,
        )
        return self._stream(prefix, chunks)

    def _stream(self, prefix: bytes, chunks: Iterator[UIntArray]) -> Iterator[bytes]:
        yield prefix
        for part in chunks:
            yield bitpack.pack(part, self._config.bits)

    def _chunks(self, jobs: list[tuple[bytes, int]], chunk: int) -> Iterator[UIntArray]:
        bits = self._config.bits
        n = len(self._x)
        for start in range(0, n, chunk):
            part = self._x[start : start + chunk].copy()
            apply_masks(part, jobs, bits, offset=start)
            yield part

    # -- handlers ----------------------------------------------------------------

    def _on_abort(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.Abort)
        self._abort(
            AbortReason.SERVER_ABORTED,
            f"server aborted the round ({msg.code.name}): {msg.reason}",
        )
        return []

    def _on_seed_request(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.SeedRequest)
        cfg = self._config
        # U1 as two columns (ascending ids, their commitments); the decoder shares one
        # immutable copy among the clients that got the same bytes, the checks are mine
        ids, coms = m.seed_columns(msg.commitments)
        members = np.frombuffer(ids, dtype=">u4")
        registered = _registered_array(cfg.clients)
        at = np.searchsorted(registered, members)
        if len(members) and (
            int(at[-1]) >= len(registered) or not bool(np.all(registered[at] == members))
        ):
            raise Violation(AbortReason.BAD_SEED, "seed request names unregistered clients")
        j = int(np.searchsorted(members, self._id))
        mine = coms[32 * j : 32 * j + 32] if j < len(members) and members[j] == self._id else b""
        if mine != self._g:
            raise Violation(AbortReason.BAD_SEED, "seed request without my seed commitment")
        if len(members) < cfg.threshold + 1:
            raise Violation(
                AbortReason.TOO_FEW_NEIGHBORS,
                f"only {len(members)} clients in U1; threshold is {cfg.threshold}",
            )
        digest = cm.seed_view_digest_columns(session_id=cfg.session_id, ids=ids, commitments=coms)
        sig = b""
        if cfg.security is SecurityMode.MALICIOUS:
            assert self._identity is not None
            sig = self._identity.sign(
                cm.seed_reveal_signature_input(
                    session_id=cfg.session_id, client=self._id, view=digest
                )
            )
        reply = m.SeedReveal(
            session_id=cfg.session_id,
            sender=self._id,
            recipient=m.SERVER_ID,
            reveal=self._r,
            signature=sig,
        )
        self._seed_view = (ids, coms)
        self._seed_digest = digest
        return [reply]

    def _seed_commitment_of(self, owner: int) -> bytes | None:
        """``g_owner`` from the U1 view I signed (``None`` if ``owner`` is not in U1)."""
        ids, coms = self._seed_view
        members = np.frombuffer(ids, dtype=">u4")
        j = int(np.searchsorted(members, owner))
        if j == len(members) or int(members[j]) != owner:
            return None
        return coms[32 * j : 32 * j + 32]

    def _graph_from_reveals(self, reveals: tuple[m.Reveal, ...]) -> frozenset[int]:
        """SecAgg+: check every reveal of U1 against the view I signed; my neighbors.

        One pass over U1 in C-level columns: the owners must be exactly U1 (one bytes
        comparison), every ``r_v`` must open ``g_v`` (one HMAC pair each, compared in
        one go; the first failure is named; a process hosting many clients derives one
        list's commitments once, :func:`~secagg.masking._common.seed_commitments_shared`),
        then, malicious mode, every signature.
        """
        cfg = self._config
        ids, coms = self._seed_view
        owners, opened, signed = m.reveal_columns(reveals)
        if owners != ids:
            raise Violation(AbortReason.BAD_SEED, "reveals do not cover exactly U1")
        recomputed = cm.seed_commitments_shared(session_id=cfg.session_id, ids=ids, reveals=opened)
        if recomputed != coms:
            bad = next(
                i for i in range(0, len(coms), 32) if recomputed[i : i + 32] != coms[i : i + 32]
            )
            raise Violation(
                AbortReason.BAD_SEED,
                f"reveal of {reveals[bad // 32].owner} does not open its commitment",
            )
        if cfg.security is SecurityMode.MALICIOUS:
            for x in reveals:
                _sign.verify(
                    cfg.identity_key(x.owner),
                    x.signature,
                    cm.seed_reveal_signature_input(
                        session_id=cfg.session_id, client=x.owner, view=self._seed_digest
                    ),
                )
        elif signed:
            raise Violation(AbortReason.BAD_SIGNATURE, "signature in a semi-honest round")
        key = cm.graph_key_joined(
            session_id=cfg.session_id,
            graph_seed=cfg.graph_seed,
            view=self._seed_digest,
            reveals=opened,
        )
        return neighbors(cfg, self._id, seed=key)

    def _on_keys(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.KeysBroadcast)
        cfg = self._config
        assert self._c is not None and self._s is not None and self._b is not None
        if cfg.protocol is ProtocolKind.SECAGG_PLUS:
            nbrs = self._graph_from_reveals(msg.reveals)
        elif msg.reveals:
            raise Violation(AbortReason.BAD_SEED, "graph-seed reveals in a complete-graph round")
        else:
            nbrs = self._neighbors
        owners = [e.owner for e in msg.entries]
        if not set(owners) <= nbrs:
            raise Violation(
                AbortReason.NOT_A_NEIGHBOR, "KeysBroadcast lists a client that is not my neighbor"
            )
        if len(owners) < cfg.threshold:
            raise Violation(
                AbortReason.TOO_FEW_NEIGHBORS,
                f"only {len(owners)} neighbors advertised keys; threshold is {cfg.threshold}",
            )
        if cfg.protocol is ProtocolKind.SECAGG_PLUS and any(
            e.seed_commitment != self._seed_commitment_of(e.owner) for e in msg.entries
        ):
            raise Violation(AbortReason.BAD_SEED, "key entry with another seed commitment")
        seen = {self._c.public, self._s.public}
        for e in msg.entries:
            if e.c_pk in seen or e.s_pk in seen or e.c_pk == e.s_pk:
                raise Violation(AbortReason.DUPLICATE_KEY, "duplicated public key in KeysBroadcast")
            seen.add(e.c_pk)
            seen.add(e.s_pk)
        for e in msg.entries:
            if cfg.security is SecurityMode.MALICIOUS:
                _sign.verify(
                    cfg.identity_key(e.owner),
                    e.signature,
                    cm.advertise_signature_input(
                        session_id=cfg.session_id,
                        client=e.owner,
                        c_pk=e.c_pk,
                        s_pk=e.s_pk,
                        commitment=e.commitment,
                        seed_commitment=e.seed_commitment,
                    ),
                )
            elif e.signature:
                raise Violation(AbortReason.BAD_SIGNATURE, "signature in a semi-honest round")
        lab = _plane.labels(cfg.session_id)
        try:
            share_keys = _plane.share_keys(
                self._c.private, self._id, ((e.owner, e.c_pk) for e in msg.entries), lab
            )
        except CryptoError:
            raise Violation(AbortReason.INVALID_VALUE, "low-order public key") from None
        rows = shamir.split_many(
            [secret_to_element(self._b), secret_to_element(self._s.private_bytes())],
            cfg.threshold,
            owners,
            self._rng,
        )
        boxes = _plane.seal_share_boxes(
            self._id, owners, share_keys, rows[0], rows[1], lab, self._rng
        )
        reply = m.ShareKeys(
            session_id=cfg.session_id, sender=self._id, recipient=m.SERVER_ID, boxes=tuple(boxes)
        )
        self._peers = {e.owner: e for e in msg.entries}
        self._share_keys = share_keys
        self._neighbors = nbrs
        return [reply]

    def _on_boxes(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.MaskedInputRequest)
        cfg = self._config
        assert self._s is not None and self._b is not None
        senders = [v for v, _ in msg.boxes]
        if not set(senders) <= set(self._peers):
            raise Violation(
                AbortReason.NOT_A_NEIGHBOR,
                "share box from a client that did not advertise keys to me",
            )
        if len(senders) < cfg.threshold:
            raise Violation(
                AbortReason.TOO_FEW_NEIGHBORS,
                f"only {len(senders)} neighbors shared keys; threshold is {cfg.threshold}",
            )
        lab = _plane.labels(cfg.session_id)
        held = _plane.open_share_boxes(self._id, msg.boxes, self._share_keys, lab)
        jobs = [(cm.self_mask_seed(self._b, session_id=cfg.session_id, client=self._id), 1)]
        try:
            seeds = _plane.pairwise_seeds(
                [(self._s.private, self._peers[v].s_pk, self._id, v) for v in senders], lab
            )
        except CryptoError:
            raise Violation(AbortReason.INVALID_VALUE, "low-order public key") from None
        jobs.extend(
            (seed, cm.mask_sign(self._id, v)) for v, seed in zip(senders, seeds, strict=True)
        )
        view = cm.view_digest(session_id=cfg.session_id, client=self._id, senders=senders)
        y = self._x.copy()
        apply_masks(y, jobs, cfg.bits)
        reply = m.MaskedInput(
            session_id=cfg.session_id,
            sender=self._id,
            recipient=m.SERVER_ID,
            bits=cfg.bits,
            vector=y,
            view=view,
        )
        self._held = held
        self._jobs = jobs
        self._view = view
        return [reply]

    def _check_survivors(self, survivors: tuple[int, ...]) -> None:
        cfg = self._config
        if not _registered(cfg.clients).issuperset(survivors):
            raise Violation(AbortReason.BAD_SURVIVOR_SET, "survivor set names unregistered clients")
        if self._id not in survivors:
            raise Violation(AbortReason.BAD_SURVIVOR_SET, "survivor set does not contain me")
        if len(survivors) < cfg.threshold:
            raise Violation(
                AbortReason.TOO_FEW_SURVIVORS,
                f"only {len(survivors)} survivors; threshold is {cfg.threshold}; "
                "refusing to unmask",
            )
        near = len(self._neighbors.intersection(survivors))
        if near < cfg.threshold:
            raise Violation(
                AbortReason.TOO_FEW_NEIGHBORS,
                f"only {near} surviving neighbors; threshold is {cfg.threshold}; "
                "refusing to unmask",
            )

    def _on_consistency(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.ConsistencyRequest)
        assert self._identity is not None
        cfg = self._config
        self._check_survivors(msg.survivors)
        sig = self._identity.sign(
            cm.consistency_signature_input(
                session_id=cfg.session_id,
                client=self._id,
                survivors=msg.survivors,
                view=self._seed_digest,
            )
        )
        reply = m.ConsistencySignature(
            session_id=cfg.session_id, sender=self._id, recipient=m.SERVER_ID, signature=sig
        )
        self._signed = msg.survivors
        return [reply]

    def _on_unmasking(self, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.UnmaskingRequest)
        cfg = self._config
        survivors = set(msg.survivors)
        dropped = set(msg.dropped)
        if survivors & dropped:
            raise Violation(
                AbortReason.BAD_SURVIVOR_SET, "a client is listed both as survivor and as dropped"
            )
        if not _registered(cfg.clients).issuperset(dropped):
            raise Violation(AbortReason.BAD_SURVIVOR_SET, "dropped set names unregistered clients")
        self._check_survivors(msg.survivors)
        if cfg.security is SecurityMode.MALICIOUS:
            if msg.survivors != self._signed:
                raise Violation(
                    AbortReason.SURVIVORS_CHANGED, "survivor set differs from the one I signed"
                )
            signers = [v for v, _ in msg.signatures]
            if not set(signers) <= survivors:
                raise Violation(
                    AbortReason.BAD_SIGNATURE, "a consistency signature from a non-survivor"
                )
            if len(signers) < cfg.signature_threshold:
                raise Violation(
                    AbortReason.TOO_FEW_SIGNERS,
                    f"only {len(signers)} consistency signatures; need {cfg.signature_threshold}",
                )
            for v, sig in msg.signatures:
                _sign.verify(
                    cfg.identity_key(v),
                    sig,
                    cm.consistency_signature_input(
                        session_id=cfg.session_id,
                        client=v,
                        survivors=msg.survivors,
                        view=self._seed_digest,
                    ),
                )
        elif msg.signatures:
            raise Violation(
                AbortReason.BAD_SIGNATURE, "consistency signatures in a semi-honest round"
            )
        shares: list[tuple[int, m.ShareKind, int]] = []
        for v in sorted(self._held):
            b_share, s_share = self._held[v]
            if v in survivors:
                shares.append((v, m.ShareKind.SELF_MASK, b_share))
            elif v in dropped:
                shares.append((v, m.ShareKind.MASK_KEY, s_share))
        reply = m.UnmaskingResponse(
            session_id=cfg.session_id, sender=self._id, recipient=m.SERVER_ID, shares=tuple(shares)
        )
        self._wipe()
        return [reply]

    # -- helpers -------------------------------------------------------------------

    def _wipe(self) -> None:
        self._c = self._s = None
        self._b = None
        self._share_keys = {}
        self._held = {}
        self._jobs = []
        self._view = b""

    def _abort(self, code: AbortReason, reason: str) -> None:
        self._wipe()
        self._abort_code = code
        self._abort_reason = reason
        self._phase = Phase.ABORTED
