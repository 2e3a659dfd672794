"""``secaggplus_mod``: a drop-in for Flower's client mod, backed by secagg's SecAgg+.

Use it exactly where Flower's is used::

    from secagg.integrations.flower import secaggplus_mod
    app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])

Rules of this file:

* The client's protocol state lives in ``context.state.config_records[STATE_RECORD]``
  as bytes and ints: the round setup, a 32-byte seed from ``os.urandom``, every
  server frame handled so far, the client's own small replies, and (after the
  masked-input stage) its encoded input.  ``cryptography`` key objects do not
  pickle, so each message rebuilds the sans-IO :class:`secagg.masking.Client` by
  replaying those frames into a fresh client whose randomness is the seeded stream
  (:class:`~secagg.primitives.rand.InsecureDeterministicRandom` keyed by the secret
  seed) and checks that every replayed reply equals the one it sent.  Past the
  masked-input stage the replay uses a one-element stand-in for the input (nothing
  but the masked vector depends on it), and falls back to the stored input if the
  stand-in replay diverges.
* A server frame is handled by that client: a frame that does not decode, names
  another session or does not fit the phase raises (Flower turns it into an error
  reply, which the server counts as a dropout).  Decode errors change nothing; a
  protocol violation stores ``aborted`` and every later frame of the round is
  refused.  A new ``setup`` starts a new round with a new seed.
* The reply keeps the ClientApp's ``FitRes`` (status, metrics) with its arrays
  cleared and ``num_examples`` set to 1: the update and its weight travel only inside
  the masked vector.  (Flower's own mod leaves ``num_examples`` in the clear.)
* A train message without our record is refused: the mod never lets the
  ClientApp answer in the clear.  Flower's own workflow record, or another
  protocol version, raises :class:`ProtocolMismatchError` naming both sides.

Security notes
--------------
The seed is as secret as the private keys Flower's own mod keeps in the same
Context; anyone who reads the node's Context during the round can rebuild its keys
and self-mask seed (exactly as with Flower's mod).  The state is wiped when the
round completes or aborts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from secagg.errors import (
    AbortedError,
    CryptoError,
    DecodeError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.integrations.flower import _flwr
from secagg.integrations.flower._scheme import encode_dp_delta, encode_update
from secagg.integrations.flower._wire import (
    FLOWER_RECORD,
    PROTOCOL,
    RECORD,
    REPLY_OF,
    STAGE_OF,
    STATE_RECORD,
    RoundSetup,
    Stage,
    decode_setup,
    mismatch,
)
from secagg.masking import Client, SecurityMode
from secagg.masking import messages as m
from secagg.primitives.prg import dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey

__all__ = ["SecAggPlusMod", "secaggplus_mod"]

_SEED_BYTES = 32
_LOCAL = f"secagg's secaggplus_mod ({PROTOCOL})"
IdentityKeyFn = Callable[[Any], SigningKey]

#: Parsed round setups by their exact bytes (a few rounds' worth, newest last).
_SETUP_CACHE: OrderedDict[bytes, RoundSetup] = OrderedDict()
_SETUP_CACHE_SIZE = 8
_SETUP_LOCK = threading.Lock()


def _setup_of(data: bytes) -> RoundSetup:
    """``decode_setup(data)``, parsed once per process for the same bytes.

    Every message of a round replays from the setup kept in the Context; its parse
    (JSON, the canonical RoundConfig, with DP the rotation signs of ``D`` elements) is
    a pure function of the bytes, so equal bytes share one immutable
    :class:`RoundSetup`.  Bytes that do not decode are not cached (the error is raised
    every time).
    """
    key = bytes(data)
    with _SETUP_LOCK:
        hit = _SETUP_CACHE.get(key)
        if hit is not None:
            _SETUP_CACHE.move_to_end(key)
            return hit
    setup = decode_setup(key)
    with _SETUP_LOCK:
        _SETUP_CACHE[key] = setup
        while len(_SETUP_CACHE) > _SETUP_CACHE_SIZE:
            _SETUP_CACHE.popitem(last=False)
    return setup


@dataclasses.dataclass(slots=True)
class _State:
    """The per-round state kept in the Context (bytes and ints only)."""

    setup: bytes
    seed: bytes
    node: int
    received: list[bytes]  # server frames handled after setup, in order
    sent: list[bytes]  # our replies; the MaskedInput as its SHA-256
    x: bytes = b""  # encoded input (little-endian), after the masked-input stage

    def to_record(self) -> Any:
        return _flwr.ConfigRecord(
            {
                "protocol": PROTOCOL,
                "status": "active",
                "setup": self.setup,
                "seed": self.seed,
                "node": self.node,
                "received": list(self.received),
                "sent": list(self.sent),
                "x": self.x,
            }
        )


def _closed(status: str) -> Any:
    """A state record for a finished or aborted round: every secret is gone."""
    return _flwr.ConfigRecord({"protocol": PROTOCOL, "status": status})


def _load(ctxt: Any) -> _State:
    rec = ctxt.state.config_records.get(STATE_RECORD)
    if rec is None:
        raise RemoteProtocolError("no SecAgg+ round in progress on this node (setup missing)")
    status = rec.get("status")
    if status != "active":
        raise RemoteProtocolError(f"the SecAgg+ round on this node is {status}; frame refused")
    try:
        st = _State(
            setup=rec["setup"], seed=rec["seed"], node=rec["node"],
            received=list(rec["received"]), sent=list(rec["sent"]), x=rec["x"],
        )
    except KeyError as exc:
        raise LocalProtocolError(f"SecAgg+ state in the Context lacks {exc}") from None
    ok = (
        isinstance(st.setup, bytes) and isinstance(st.seed, bytes)
        and len(st.seed) == _SEED_BYTES and isinstance(st.node, int)
        and isinstance(st.x, bytes)
        and all(isinstance(b, bytes) for b in st.received + st.sent)
    )
    if not ok:
        raise LocalProtocolError("SecAgg+ state in the Context is malformed")
    return st


class SecAggPlusMod:
    """The mod as an object, for clients that need an identity key (malicious mode).

    Parameters
    ----------
    identity_key:
        ``context -> SigningKey``: this node's Ed25519 identity key, whose public
        part the server registered (a PKI input).  Required only when the server
        runs ``security="malicious"``.
    dp_max_epsilon, dp_delta:
        This node's own DP policy: refuse a round without distributed DP, or whose
        noise gives more than ``dp_max_epsilon`` per round at ``dp_delta`` (the
        server chooses the noise; a client that cares checks it).

    Raises
    ------
    ParameterError
        On a non-positive ``dp_max_epsilon`` or a ``dp_delta`` outside (0, 0.5).
    """

    def __init__(
        self,
        *,
        identity_key: IdentityKeyFn | None = None,
        dp_max_epsilon: float | None = None,
        dp_delta: float = 1e-5,
    ) -> None:
        if dp_max_epsilon is not None and not (
            isinstance(dp_max_epsilon, int | float) and dp_max_epsilon > 0
        ):
            raise ParameterError("dp_max_epsilon must be a positive number")
        if not (isinstance(dp_delta, float) and 0 < dp_delta < 0.5):
            raise ParameterError("dp_delta must be in (0, 0.5)")
        self._identity = identity_key
        self._dp_max_epsilon = dp_max_epsilon
        self._dp_delta = dp_delta

    # -- Flower's Mod signature -------------------------------------------------------

    def __call__(self, msg: Any, ctxt: Any, call_next: Callable[[Any, Any], Any]) -> Any:
        if msg.metadata.message_type != _flwr.MessageType.TRAIN:
            return call_next(msg, ctxt)
        stage, payload = _read_record(msg)
        if stage is Stage.SETUP:
            return self._setup(msg, ctxt, payload)
        st = _load(ctxt)
        setup = _setup_of(st.setup)
        frame = m.decode(payload)  # DecodeError: nothing changed
        if frame.session_id != setup.config.session_id:
            raise DecodeError("frame from another SecAgg+ session")
        if STAGE_OF.get(frame.TYPE) is not stage:
            raise DecodeError(f"{type(frame).__name__} in stage {stage.value}")
        try:
            ident = self._ident(ctxt, setup)
            if stage is Stage.MASKED_INPUT:
                return self._masked_input(msg, ctxt, call_next, st, setup, ident, payload)
            client = self._rebuild(st, setup, ident, full=False)
            replies = client.receive(payload)
        except DecodeError:
            raise
        except (RemoteProtocolError, CryptoError) as exc:
            ctxt.state.config_records[STATE_RECORD] = _closed("aborted")
            raise RemoteProtocolError(f"SecAgg+ round aborted on this node: {exc}") from exc
        if not replies:  # an Abort from the server
            ctxt.state.config_records[STATE_RECORD] = _closed("aborted")
            raise AbortedError(client.abort_reason or "the server aborted the round")
        data = m.encode(replies[0])
        if stage is Stage.UNMASK:
            ctxt.state.config_records[STATE_RECORD] = _closed("completed")
        else:
            st.received.append(bytes(payload))
            st.sent.append(data)
            ctxt.state.config_records[STATE_RECORD] = st.to_record()
        return _reply(msg, _flwr.RecordDict(), stage, data)

    # -- stages ---------------------------------------------------------------------------

    def _setup(self, msg: Any, ctxt: Any, payload: bytes) -> Any:
        setup = _setup_of(payload)
        node = int(msg.metadata.dst_node_id)
        setup.client_id(node)  # RemoteProtocolError if this node is not in the round
        if self._dp_max_epsilon is not None:
            if setup.dp is None:
                raise RemoteProtocolError("this node requires distributed DP; the round has none")
            eps = setup.dp.params.epsilon(delta=self._dp_delta)
            if eps > self._dp_max_epsilon:
                raise RemoteProtocolError(
                    f"the round's DP noise gives epsilon {eps:.3g} per round at delta "
                    f"{self._dp_delta:g}; this node allows at most {self._dp_max_epsilon:g}"
                )
        st = _State(
            setup=bytes(payload), seed=os.urandom(_SEED_BYTES), node=node, received=[], sent=[]
        )
        client = self._client(st, setup, None, self._ident(ctxt, setup))
        data = m.encode(client.start())
        st.sent.append(data)
        ctxt.state.config_records[STATE_RECORD] = st.to_record()
        return _reply(msg, _flwr.RecordDict(), Stage.SETUP, data)

    def _masked_input(
        self, msg: Any, ctxt: Any, call_next: Callable[[Any, Any], Any], st: _State,
        setup: RoundSetup, ident: SigningKey | None, payload: bytes,
    ) -> Any:
        if st.x:
            raise RemoteProtocolError("a second MaskedInputRequest in one round")
        out = call_next(msg, ctxt)
        if out.has_error():
            return out
        fitres = _flwr.recorddict_to_fitres(out.content, keep_input=True)
        if fitres.status.code != _flwr.Code.OK:
            raise LocalProtocolError(f"fit failed on this node: {fitres.status.message}")
        arrays = _flwr.parameters_to_ndarrays(fitres.parameters)
        if setup.dp is not None:
            fitins = _flwr.recorddict_to_fitins(msg.content, keep_input=True)
            old = _flwr.parameters_to_ndarrays(fitins.parameters)
            x = encode_dp_delta(setup.encoding, setup.dp, arrays, old)
        else:
            rng = InsecureDeterministicRandom(st.seed, "secagg/flower/update", warn=False)
            x = encode_update(setup.encoding, arrays, int(fitres.num_examples), rng)
        client = self._rebuild(st, setup, ident, full=True, x=x)
        replies = client.receive(payload)
        reply = replies[0] if replies else None
        if not isinstance(reply, m.MaskedInput):
            raise RemoteProtocolError("the masked-input stage produced no masked input")
        data = m.encode(reply)
        st.received.append(bytes(payload))
        st.sent.append(hashlib.sha256(data).digest())
        st.x = x.astype(x.dtype.newbyteorder("<"), copy=False).tobytes()
        ctxt.state.config_records[STATE_RECORD] = st.to_record()
        content = out.content
        for arr_record in content.array_records.values():
            arr_record.clear()  # the plain update never leaves the node
        counts = content.metric_records.get("fitres.num_examples")
        if counts is not None:  # the weight travels only inside the masked vector
            counts["num_examples"] = 1
        return _reply(msg, content, Stage.MASKED_INPUT, data)

    # -- rebuilding the sans-IO client ---------------------------------------------------

    def _ident(self, ctxt: Any, setup: RoundSetup) -> SigningKey | None:
        if setup.config.security is not SecurityMode.MALICIOUS:
            return None
        if self._identity is None:
            raise ParameterError(
                "the server runs malicious mode; build the mod with "
                "SecAggPlusMod(identity_key=...) to sign with this node's identity key"
            )
        return self._identity(ctxt)

    @staticmethod
    def _client(
        st: _State, setup: RoundSetup, x: Any, ident: SigningKey | None, *, stand_in: bool = False
    ) -> Client:
        cfg = setup.config
        if stand_in:
            cfg = dataclasses.replace(cfg, length=1)
        if x is None:
            x = np.zeros(cfg.length, dtype=dtype_for_bits(cfg.bits))
        rng = InsecureDeterministicRandom(st.seed, "secagg/flower/client", warn=False)
        return Client(
            config=cfg, client_id=setup.client_id(st.node), input_vector=x, rng=rng,
            identity_key=ident,
        )

    def _rebuild(
        self, st: _State, setup: RoundSetup, ident: SigningKey | None, *, full: bool,
        x: Any = None,
    ) -> Client:
        """A client in the phase reached after ``st.received``; checks every replay."""
        if full or not st.x:
            return self._replay(st, setup, ident, x=x, stand_in=False)
        try:
            return self._replay(st, setup, ident, x=None, stand_in=True)
        except (LocalProtocolError, RemoteProtocolError, CryptoError):
            dt = np.dtype(dtype_for_bits(setup.config.bits)).newbyteorder("<")
            stored = np.frombuffer(st.x, dtype=dt).astype(dtype_for_bits(setup.config.bits))
            return self._replay(st, setup, ident, x=stored, stand_in=False)

    def _replay(
        self, st: _State, setup: RoundSetup, ident: SigningKey | None, *, x: Any, stand_in: bool
    ) -> Client:
        client = self._client(st, setup, x, ident, stand_in=stand_in)
        mine = [m.encode(client.start())]
        for frame in st.received:
            for r in client.receive(frame):
                if isinstance(r, m.MaskedInput):
                    mine.append(b"" if stand_in else hashlib.sha256(m.encode(r)).digest())
                else:
                    mine.append(m.encode(r))
        for a, b in zip(mine, st.sent, strict=False):
            if a and a != b:
                raise LocalProtocolError("replaying the stored SecAgg+ state diverged")
        if len(mine) != len(st.sent):
            raise LocalProtocolError("replaying the stored SecAgg+ state diverged")
        return client


def _read_record(msg: Any) -> tuple[Stage, bytes]:
    records = msg.content.config_records
    if RECORD not in records:
        if FLOWER_RECORD in records:
            raise mismatch(_LOCAL, "Flower's SecAggPlusWorkflow (flwr record 'secaggplus_configs')")
        raise RemoteProtocolError(
            "a train message without the secagg SecAgg+ record; refusing to train and reply "
            "in the clear (run secagg.integrations.flower.SecAggPlusWorkflow on the server)"
        )
    rec = records[RECORD]
    protocol = rec.get("protocol")
    if protocol != PROTOCOL:
        raise mismatch(_LOCAL, f"a server speaking {protocol!r}")
    try:
        stage = Stage(rec.get("stage"))
    except ValueError:
        raise DecodeError(f"unknown SecAgg+ stage {rec.get('stage')!r}") from None
    payload = rec.get("payload")
    if not isinstance(payload, bytes):
        raise DecodeError("SecAgg+ payload must be bytes")
    return stage, payload


def _reply(msg: Any, content: Any, stage: Stage, data: bytes) -> Any:
    assert REPLY_OF[stage] == m.MessageType(data[2])
    content.config_records[RECORD] = _flwr.ConfigRecord(
        {"protocol": PROTOCOL, "stage": stage.value, "payload": data}
    )
    return _flwr.Message(content, reply_to=msg)


_DEFAULT = SecAggPlusMod()


def secaggplus_mod(msg: Any, ctxt: Any, call_next: Callable[[Any, Any], Any]) -> Any:
    """Flower ``Mod``: run this ClientApp's train messages through secagg's SecAgg+.

    Replaces ``flwr.client.mod.secaggplus_mod``; the server must run
    :class:`secagg.integrations.flower.SecAggPlusWorkflow`.

    Raises
    ------
    ProtocolMismatchError
        The server runs Flower's workflow or another protocol version.
    DecodeError, RemoteProtocolError, CryptoError
        A bad or hostile frame (Flower replies with an error: a dropout).
    """
    return _DEFAULT(msg, ctxt, call_next)
