"""The LightSecAgg client as a sans-IO state machine (``protocols/lightsecagg.md``).

Rules of this file (the same as ``secagg/masking/client.py``):

* The project's one phase enum (:class:`~secagg.phase.Phase`) and one transition
  table (:data:`TRANSITIONS`): ``(phase, message type) -> (handler, next phase)``.
  The client is in ``ADVERTISE_KEYS`` once its key is sent, ``SHARE_KEYS`` once its
  coded shares are sent, ``MASKED_INPUT`` once its masked input is sent.  A
  server message whose type is not in the table for the current phase is a
  protocol violation: the client moves to ``ABORTED`` and raises
  :class:`RemoteProtocolError`.
* Bytes that cannot be decoded, or that name another session, another recipient
  or a sender other than the server, raise :class:`DecodeError` and change nothing.
* Handlers validate everything first and commit the new state last; a failed
  check moves the client to ``ABORTED`` (and drops its secrets) before raising.
* Randomness is injected (one 32-byte round secret drawn from the
  :class:`~secagg.primitives.rand.RandomSource`); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import (
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.lightsecagg import _derive as dv
from secagg.lightsecagg import messages as m
from secagg.lightsecagg.config import LightSecAggConfig
from secagg.lightsecagg.field import Elements, P, matmul
from secagg.phase import Phase
from secagg.primitives import aead
from secagg.primitives.kex import KeyPair
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = ["TRANSITIONS", "Client"]

SECRET_BYTES = 32
_P64 = np.uint64(P)


_T = m.MessageType
_C = Phase
#: ``(phase, message type) -> (handler, next phase)``.
TRANSITIONS: dict[tuple[Phase, m.MessageType], tuple[str, Phase]] = {
    (_C.ADVERTISE_KEYS, _T.KEYS_BROADCAST): ("_on_keys", _C.SHARE_KEYS),
    (_C.SHARE_KEYS, _T.SHARES_FORWARD): ("_on_shares", _C.MASKED_INPUT),
    (_C.MASKED_INPUT, _T.UNMASK_REQUEST): ("_on_unmask", _C.COMPLETED),
    (_C.ADVERTISE_KEYS, _T.ABORT): ("_on_abort", _C.ABORTED),
    (_C.SHARE_KEYS, _T.ABORT): ("_on_abort", _C.ABORTED),
    (_C.MASKED_INPUT, _T.ABORT): ("_on_abort", _C.ABORTED),
    # the server may still fail to decode after this client answered
    (_C.COMPLETED, _T.ABORT): ("_on_abort", _C.ABORTED),
}
_TERMINAL = (_C.COMPLETED, _C.ABORTED)


class Client:
    """One LightSecAgg client.

    Parameters
    ----------
    config:
        The round's public configuration.
    client_id:
        This client's id (in ``config.clients``).
    input_vector:
        ``m`` integers in ``[0, 2^bits)`` (any unsigned/signed integer dtype).
    rng:
        Where the client's round secret and X25519 key come from
        (:class:`~secagg.primitives.rand.SystemRandom` by default).

    Raises
    ------
    ParameterError
        On an unknown id or an input of the wrong length or range.

    Security notes
    --------------
    The mask and the privacy padding are expanded by the AES-CTR PRG from seeds
    derived (HKDF, domain-separated) from a 32-byte secret drawn from ``rng``; the
    padding is what keeps ``T`` colluders' coded shares independent of the mask,
    so ``rng`` must be a CSPRNG in production.
    """

    def __init__(self, *, config: LightSecAggConfig, client_id: int,
                 input_vector: npt.NDArray[Any], rng: RandomSource | None = None) -> None:
        if not isinstance(config, LightSecAggConfig):
            raise ParameterError("config must be a LightSecAggConfig")
        config.alpha(client_id)  # raises for an unregistered id
        x = np.asarray(input_vector)
        if x.ndim != 1 or x.dtype.kind not in "ui" or len(x) != config.length:
            raise ParameterError(f"input must be a 1-D integer vector of length {config.length}")
        if x.size and (int(x.min()) < 0 or int(x.max()) >= 1 << config.bits):
            raise ParameterError(f"input elements must lie in [0, 2^{config.bits})")
        self.config = config
        self.id = client_id
        self._x: Elements | None = x.astype(np.uint64)
        self._rng = rng if rng is not None else SystemRandom()
        self._phase = Phase.INIT
        self._keypair: KeyPair | None = None
        self._secret: bytes | None = None
        self._peer_keys: dict[int, bytes] = {}
        self._u1: tuple[int, ...] = ()
        self._own_piece: Elements | None = None
        self._received: dict[int, Elements] = {}
        self.abort_reason: str | None = None

    # -- public -------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    def start(self) -> m.AdvertiseKey:
        """The first message: this client's X25519 public key.

        Raises
        ------
        LocalProtocolError
            If called twice.
        """
        if self._phase is not Phase.INIT:
            raise LocalProtocolError("start() was already called")
        kp = KeyPair.generate(self._rng)
        secret = self._rng.random_bytes(SECRET_BYTES)
        self._keypair, self._secret = kp, secret
        self._phase = Phase.ADVERTISE_KEYS
        return m.AdvertiseKey(session_id=self.config.session_id, sender=self.id,
                              recipient=m.SERVER, public_key=kp.public)

    def receive(self, data: bytes | bytearray | memoryview) -> list[m.Message]:
        """Handle one server message; return the replies.

        Raises
        ------
        DecodeError
            Undecodable bytes or a header not addressed to this client in this
            session from the server; nothing changed.
        LocalProtocolError
            Called before :meth:`start` or after the round ended.
        RemoteProtocolError, CryptoError
            The message does not fit the phase or failed validation; the client
            is ``ABORTED``.
        """
        msg = m.decode(data)
        cfg = self.config
        if msg.session_id != cfg.session_id or msg.recipient != self.id or msg.sender != m.SERVER:
            raise DecodeError("message is not for this client in this session")
        if self._phase is Phase.INIT or self._phase is Phase.ABORTED or (
                self._phase is Phase.COMPLETED and msg.TYPE is not m.MessageType.ABORT):
            raise LocalProtocolError(f"no message is expected in phase {self._phase.value}")
        entry = TRANSITIONS.get((self._phase, msg.TYPE))
        if entry is None:
            self._abort(f"{msg.TYPE.name} does not fit phase {self._phase.value}")
            raise RemoteProtocolError(f"{msg.TYPE.name} does not fit phase {self._phase.value}")
        name, nxt = entry
        handler: Callable[[Any], list[m.Message]] = getattr(self, name)
        try:
            out = handler(msg)
        except (RemoteProtocolError, CryptoError, ParameterError) as exc:
            self._abort(str(exc))
            if isinstance(exc, ParameterError):  # a peer's bad value, seen by a helper
                raise RemoteProtocolError(str(exc)) from None
            raise
        self._phase = nxt
        return out

    # -- handlers (validate, then commit) --------------------------------------------

    def _on_keys(self, msg: m.KeysBroadcast) -> list[m.Message]:
        cfg = self.config
        assert self._keypair is not None and self._secret is not None
        keys = dict(msg.keys)
        ids = tuple(keys)
        if not set(ids) <= set(cfg.clients):
            raise RemoteProtocolError("key list names unregistered clients")
        if keys.get(self.id) != self._keypair.public:
            raise RemoteProtocolError("key list misses or alters this client's key")
        if len(ids) < cfg.target:
            raise RemoteProtocolError(f"only {len(ids)} clients < U = {cfg.target}")
        share_keys = {
            v: dv.share_key(self._keypair.private, keys[v], session_id=cfg.session_id,
                            a=self.id, b=v)
            for v in ids if v != self.id
        }  # CryptoError on a low-order key
        big_l, pieces = cfg.piece_length, cfg.pieces
        mask = dv.mask_elements(self._secret, session_id=cfg.session_id, client=self.id,
                                count=pieces * big_l)
        pad = dv.padding_elements(self._secret, session_id=cfg.session_id, client=self.id,
                                  count=cfg.privacy * big_l)
        coeffs = np.concatenate([mask, pad]).reshape(cfg.target, big_l)
        del mask, pad
        enc = dv.encoding_matrix(cfg.target, tuple(cfg.alpha(v) for v in ids))
        coded = matmul(enc, coeffs)
        del coeffs
        boxes = []
        own = None
        for j, v in enumerate(ids):
            row = coded[j]
            if v == self.id:
                own = row.copy()
                continue
            pt = row.astype("<u4").tobytes()
            box = aead.seal_with_ad(share_keys[v], pt, dv.box_ad(
                session_id=cfg.session_id, sender=self.id, receiver=v), rng=self._rng)
            boxes.append((v, box))
        # commit
        self._peer_keys = share_keys
        self._u1 = ids
        self._own_piece = own
        return [m.CodedShares(session_id=cfg.session_id, sender=self.id, recipient=m.SERVER,
                              boxes=tuple(boxes))]

    def _on_shares(self, msg: m.SharesForward) -> list[m.Message]:
        cfg = self.config
        assert self._secret is not None and self._x is not None
        senders = [v for v, _ in msg.boxes]
        if self.id in senders or not set(senders) <= set(self._u1):
            raise RemoteProtocolError("forwarded boxes name a sender outside U1 (or this client)")
        if len(senders) + 1 < cfg.target:
            raise RemoteProtocolError(f"only {len(senders) + 1} clients < U = {cfg.target}")
        nbytes = 4 * cfg.piece_length
        received: dict[int, Elements] = {}
        for v, box in msg.boxes:
            pt = aead.open_with_ad(self._peer_keys[v], box, dv.box_ad(
                session_id=cfg.session_id, sender=v, receiver=self.id))
            if len(pt) != nbytes:
                raise CryptoError()
            piece = np.frombuffer(pt, dtype="<u4")
            if int(piece.max()) >= P:
                raise CryptoError()
            received[v] = piece.astype(np.uint64)
        z = dv.mask_elements(self._secret, session_id=cfg.session_id, client=self.id,
                             count=cfg.length)
        y = (self._x + z) % _P64
        # commit: the input and the secret are no longer needed
        self._received = received
        self._x = None
        self._secret = None
        return [m.MaskedInput(session_id=cfg.session_id, sender=self.id, recipient=m.SERVER,
                              vector=y)]

    def _on_unmask(self, msg: m.UnmaskRequest) -> list[m.Message]:
        cfg = self.config
        u3 = msg.survivors
        if self.id not in u3:
            raise RemoteProtocolError("U3 does not contain this client")
        if len(u3) < cfg.target:
            raise RemoteProtocolError(f"|U3| = {len(u3)} < U = {cfg.target}")
        unknown = [v for v in u3 if v != self.id and v not in self._received]
        if unknown:
            raise RemoteProtocolError("U3 names clients whose coded share this client lacks")
        assert self._own_piece is not None
        acc = self._own_piece.copy()
        for v in u3:
            if v != self.id:
                acc += self._received[v]  # < 2^32 terms of < 2^31: no overflow
        acc %= _P64
        self._wipe()
        return [m.UnmaskResponse(session_id=cfg.session_id, sender=self.id, recipient=m.SERVER,
                                 vector=acc)]

    def _on_abort(self, msg: m.Abort) -> list[m.Message]:
        self._wipe()
        self.abort_reason = msg.reason
        return []

    def _abort(self, reason: str) -> None:
        self._wipe()
        self._phase = Phase.ABORTED
        self.abort_reason = reason

    def _wipe(self) -> None:
        self._secret = None
        self._keypair = None
        self._x = None
        self._own_piece = None
        self._received = {}
        self._peer_keys = {}
