"""The LightSecAgg server as a sans-IO, streaming state machine
(``protocols/lightsecagg.md`` §5).

Rules of this file:

* The project's one phase enum (:class:`~secagg.phase.Phase`) and one transition
  table (:data:`TRANSITIONS`): ``(phase, message type) -> handler``; each collecting
  phase (``ADVERTISE_KEYS``, ``SHARE_KEYS``, ``MASKED_INPUT``, ``UNMASKING``)
  closes into the next by :data:`NEXT` (or ``ABORTED``).
* A client message is decoded, checked against the header, the phase and the
  round state, and only then recorded; anything wrong raises a typed error and
  changes nothing (one bad client never aborts the round).
* Dropouts are data: a phase closes when every expected client answered or on
  :meth:`deadline_passed`; with fewer than ``U`` survivors the round aborts and
  nothing is computed.
* Streaming: masked inputs are added into one running sum mod ``p`` as they
  arrive (``O(m)``); of the unmasking responses only the first ``U`` are kept
  (``U * L = O(m U / (U - T))`` elements).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from secagg.errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SecAggError,
)
from secagg.lightsecagg import _derive as dv
from secagg.lightsecagg import messages as m
from secagg.lightsecagg.config import LightSecAggConfig
from secagg.lightsecagg.field import Elements, P, matmul
from secagg.phase import Phase
from secagg.primitives.kex import check_contributory

__all__ = ["NEXT", "TRANSITIONS", "Server", "decode_aggregate_mask"]

_P64 = np.uint64(P)
Outgoing = list[tuple[int, m.Message]]
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]
#: Columns of the decode per job handed to ``map_fn``.
_DECODE_COLUMNS = 1 << 15


_S = Phase
_T = m.MessageType
TRANSITIONS: dict[tuple[Phase, m.MessageType], str] = {
    (_S.ADVERTISE_KEYS, _T.ADVERTISE_KEY): "_on_key",
    (_S.SHARE_KEYS, _T.CODED_SHARES): "_on_shares",
    (_S.MASKED_INPUT, _T.MASKED_INPUT): "_on_masked",
    (_S.UNMASKING, _T.UNMASK_RESPONSE): "_on_unmask",
}
#: A collecting phase closes (with at least ``U`` survivors) into the next phase.
NEXT: dict[Phase, Phase] = {
    _S.ADVERTISE_KEYS: _S.SHARE_KEYS,
    _S.SHARE_KEYS: _S.MASKED_INPUT,
    _S.MASKED_INPUT: _S.UNMASKING,
    _S.UNMASKING: _S.FINALIZING,
}


class Server:
    """The LightSecAgg aggregation server for one round.

    Parameters
    ----------
    config:
        The round's public configuration.

    Security notes
    --------------
    Semi-honest: the server is trusted to forward boxes and to send every survivor
    the same ``U3``.  It learns ``sum_{u in U3} x_u`` (exact, reduced mod
    ``2^bits``) and nothing more about any input, even with ``T`` colluding clients.
    """

    def __init__(self, *, config: LightSecAggConfig) -> None:
        if not isinstance(config, LightSecAggConfig):
            raise LocalProtocolError("config must be a LightSecAggConfig")
        self.config = config
        self._phase = Phase.ADVERTISE_KEYS
        self._expected: set[int] = set(config.clients)
        self._keys: dict[int, bytes] = {}
        self._u1: tuple[int, ...] = ()
        self._boxes_to: dict[int, dict[int, bytes]] = {}
        self._shares_senders: list[int] = []
        self._u2: tuple[int, ...] = ()
        self._sum: Elements | None = None
        self._masked: list[int] = []
        self._u3: tuple[int, ...] = ()
        self._responses: dict[int, Elements] = {}
        self._responded: list[int] = []
        self._result: np.ndarray[Any, Any] | None = None
        self.abort_reason: str | None = None

    # -- state ---------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def collecting(self) -> Phase | None:
        """The phase whose client messages the server waits for (``None`` in
        FINALIZING, COMPLETED and ABORTED)."""
        return self._phase if self._phase in NEXT else None

    @property
    def aborted(self) -> bool:
        return self._phase is Phase.ABORTED

    @property
    def result(self) -> np.ndarray[Any, Any] | None:
        """``sum_{u in U3} x_u mod 2^bits`` (``uint32``) once COMPLETED, else ``None``."""
        return self._result

    @property
    def survivors(self) -> tuple[int, ...]:
        """``U3``: the clients whose input is in the result."""
        return self._u3

    @property
    def running_sum_bytes(self) -> int:
        held = sum(v.nbytes for v in self._responses.values())
        return held + (self._sum.nbytes if self._sum is not None else 0)

    def sets(self) -> dict[str, tuple[int, ...]]:
        """``U1`` (keys), ``U2`` (coded shares), ``U3`` (masked inputs), ``U4`` (responses)."""
        return {
            "U1": self._u1 or tuple(sorted(self._keys)),
            "U2": self._u2 or tuple(sorted(self._shares_senders)),
            "U3": self._u3 or tuple(sorted(self._masked)),
            "U4": tuple(sorted(self._responded)),
        }

    # -- input ---------------------------------------------------------------------

    def receive(self, sender: int, data: bytes | bytearray | memoryview) -> Outgoing:
        """Handle one message from ``sender`` (the transport-authenticated id).

        Raises
        ------
        DecodeError
            Malformed bytes, another session, a header that does not match the
            sender; nothing changed.
        RemoteProtocolError
            A message that does not fit the phase, a duplicate, a client not
            expected now, or contents that fail validation; nothing changed.
        """
        msg = m.decode(data)
        cfg = self.config
        if msg.session_id != cfg.session_id:
            raise DecodeError("message from another session")
        if msg.sender != sender or msg.recipient != m.SERVER:
            raise DecodeError("header does not match the transport sender")
        name = TRANSITIONS.get((self._phase, msg.TYPE))
        if name is None:
            raise RemoteProtocolError(f"{msg.TYPE.name} does not fit phase {self._phase.value}")
        if sender not in self._expected:
            raise RemoteProtocolError(f"client {sender} is not expected now")
        handler: Callable[[int, Any], None] = getattr(self, name)
        handler(sender, msg)  # validates, then records
        self._expected.discard(sender)
        if not self._expected:
            return self._close()
        return []

    def deadline_passed(self) -> Outgoing:
        """Close the collecting phase with whoever answered (the rest dropped out).

        Raises
        ------
        LocalProtocolError
            In a phase that collects nothing.
        """
        if self._phase not in NEXT:
            raise LocalProtocolError(f"no deadline in phase {self._phase.value}")
        return self._close()

    def _on_key(self, sender: int, msg: m.AdvertiseKey) -> None:
        try:
            check_contributory(msg.public_key)  # a low-order key would abort every peer
        except SecAggError:
            raise RemoteProtocolError("not a usable X25519 public key") from None
        self._keys[sender] = msg.public_key

    def _on_shares(self, sender: int, msg: m.CodedShares) -> None:
        want = [v for v in self._u1 if v != sender]
        if [v for v, _ in msg.boxes] != want:
            raise RemoteProtocolError("coded shares must address every other client of U1")
        size = 4 * self.config.piece_length + 28
        if any(len(b) != size for _, b in msg.boxes):
            raise RemoteProtocolError("coded-share box of the wrong size")
        for v, box in msg.boxes:
            self._boxes_to.setdefault(v, {})[sender] = box
        self._shares_senders.append(sender)

    def _on_masked(self, sender: int, msg: m.MaskedInput) -> None:
        if len(msg.vector) != self.config.length:
            raise RemoteProtocolError("masked input of the wrong length")
        if self._sum is None:
            self._sum = np.zeros(self.config.length, dtype=np.uint64)
        self._sum += msg.vector
        self._sum %= _P64
        self._masked.append(sender)

    def _on_unmask(self, sender: int, msg: m.UnmaskResponse) -> None:
        if len(msg.vector) != self.config.piece_length:
            raise RemoteProtocolError("unmasking response of the wrong length")
        if len(self._responses) < self.config.target:
            self._responses[sender] = msg.vector
        self._responded.append(sender)

    # -- phase changes -------------------------------------------------------------

    def _close(self) -> Outgoing:
        cfg = self.config
        sid = cfg.session_id
        phase = self._phase
        if phase is _S.ADVERTISE_KEYS:
            got = tuple(sorted(self._keys))
        elif phase is _S.SHARE_KEYS:
            got = tuple(sorted(self._shares_senders))
        elif phase is _S.MASKED_INPUT:
            got = tuple(sorted(self._masked))
        else:
            got = tuple(sorted(self._responded))
        if len(got) < cfg.target:
            return self._abort(f"{len(got)} clients answered in {phase.value} < U = "
                               f"{cfg.target}", got)
        out: Outgoing = []
        if phase is _S.ADVERTISE_KEYS:
            self._u1 = got
            keys = tuple((u, self._keys[u]) for u in got)
            out = [(u, m.KeysBroadcast(session_id=sid, sender=m.SERVER, recipient=u, keys=keys))
                   for u in got]
        elif phase is _S.SHARE_KEYS:
            self._u2 = got
            u2 = set(got)
            for u in got:
                boxes = self._boxes_to.pop(u, {})
                fwd = tuple((v, boxes[v]) for v in sorted(boxes) if v in u2)
                out.append((u, m.SharesForward(session_id=sid, sender=m.SERVER, recipient=u,
                                               boxes=fwd)))
            self._boxes_to = {}
        elif phase is _S.MASKED_INPUT:
            self._u3 = got
            out = [(u, m.UnmaskRequest(session_id=sid, sender=m.SERVER, recipient=u,
                                       survivors=got)) for u in got]
        self._phase = NEXT[phase]
        self._expected = set(got) if phase is not _S.UNMASKING else set()
        return out

    def _abort(self, reason: str, notify: Iterable[int]) -> Outgoing:
        self._phase = Phase.ABORTED
        self.abort_reason = reason
        self._sum = None
        self._responses = {}
        self._boxes_to = {}
        self._expected = set()
        sid = self.config.session_id
        return [(u, m.Abort(session_id=sid, sender=m.SERVER, recipient=u, reason=reason))
                for u in notify]

    # -- the one-shot decode ---------------------------------------------------------

    def finalize(self, map_fn: MapFn | None = None) -> np.ndarray[Any, Any] | None:
        """Decode ``sum_{u in U3} z_u`` from the first ``U`` responses, remove it
        from the running sum and return ``sum_{u in U3} x_u mod 2^bits``.

        Parameters
        ----------
        map_fn:
            A ``map``-like callable over column ranges of the decode (BLAS releases
            the GIL); the builtin :func:`map` by default.

        Returns ``None`` (and the server is ABORTED) if the sum lies outside what
        ``|U3|`` valid inputs can add up to (a client bypassed the range check).

        Raises
        ------
        LocalProtocolError
            Outside the FINALIZING phase.
        """
        if self._phase is not Phase.FINALIZING:
            raise LocalProtocolError(f"finalize() in phase {self._phase.value}")
        cfg = self.config
        zsum = decode_aggregate_mask(cfg, self._responses, map_fn)
        assert self._sum is not None
        total = (self._sum + _P64 - zsum) % _P64
        self._sum = None
        self._responses = {}
        bound = len(self._u3) * ((1 << cfg.bits) - 1)
        if total.size and int(total.max()) > bound:
            self._abort("the sum exceeds what |U3| valid inputs can add up to", ())
            return None
        res: np.ndarray[Any, Any] = (total & np.uint64((1 << cfg.bits) - 1)).astype(np.uint32)
        self._result = res
        self._phase = Phase.COMPLETED
        return res


def decode_aggregate_mask(config: LightSecAggConfig, responses: Mapping[int, Elements],
                          map_fn: MapFn | None = None) -> Elements:
    """``sum_{u in U3} z_u`` (``m`` elements) from the unmasking responses of the ``U``
    smallest responder ids: one ``(U-T) x U`` by ``U x L`` product over GF(p), cut
    into column ranges mapped with ``map_fn`` — the same work whatever the dropouts.

    Raises
    ------
    LocalProtocolError
        With fewer than ``U`` responses or a response of the wrong length.
    """
    cfg = config
    responders = tuple(sorted(responses))[: cfg.target]
    big_l = cfg.piece_length
    if len(responders) < cfg.target or any(len(responses[u]) != big_l for u in responders):
        raise LocalProtocolError("decoding needs U responses of L elements")
    dec = dv.decoding_matrix(cfg.target, cfg.privacy, tuple(cfg.alpha(u) for u in responders))
    resp = np.stack([responses[u] for u in responders])
    ranges = [(a, min(big_l, a + _DECODE_COLUMNS)) for a in range(0, big_l, _DECODE_COLUMNS)]
    pieces = np.empty((cfg.pieces, big_l), dtype=np.uint64)

    def job(r: tuple[int, int]) -> None:
        pieces[:, r[0]:r[1]] = matmul(dec, np.ascontiguousarray(resp[:, r[0]:r[1]]))

    list((map_fn or map)(job, ranges))
    out: Elements = pieces.reshape(-1)[: cfg.length]
    return out
