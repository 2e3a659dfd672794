"""The SecAgg / SecAgg+ server as a sans-IO state machine.

Rules of this file:

* The project's one phase enum (:class:`~secagg.phase.Phase`) and, per
  security mode, one transition table (:data:`TRANSITIONS`, ``(phase, message
  type) -> handler``) plus one table of what closes each phase and which phase
  follows (:data:`DEADLINES`); both are data, read by :meth:`Server.handle` and
  :meth:`Server.deadline_passed`.  :attr:`Server.collecting` says which
  phase's client messages it waits for, :attr:`Server.awaiting` from whom.
* A client message that does not fit the phase, is a duplicate, comes from a
  client not in the current set, or fails validation raises
  :class:`RemoteProtocolError` (or :class:`DecodeError`) and changes nothing;
  that client simply does not enter the next set.  Dropouts are data.
* When every expected client has answered, the server closes the round at once;
  otherwise :meth:`Server.deadline_passed` closes it with whoever answered.
* The server keeps one running sum (memory ``O(m)``), never the individual
  masked vectors, and aborts only when a threshold can no longer be met — it
  then outputs nothing.
* The unmasking PRG work is a list of ``(seed, ±1)`` jobs that
  :meth:`Server.finalize` applies to disjoint chunk ranges through an injected
  ``map`` function (so a runtime may use threads; this module never does).

Normative description: ``protocols/secagg.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, cast

import numpy as np

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
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.graph import all_neighbors
from secagg.masking.phase import (
    SERVER_CLOSES,
    SERVER_TRANSITIONS,
    Close,
    Kind,
    Phase,
    Transition,
)
from secagg.primitives import kex
from secagg.primitives import sign as _sign
from secagg.primitives.field import ELEMENT_BYTES
from secagg.primitives.kex import KeyPair
from secagg.primitives.prg import UIntArray, apply_masks, dtype_for_bits

__all__ = [
    "DEADLINES",
    "TRANSITIONS",
    "UNMASK_RANGE_ELEMENTS",
    "UNMASK_UNITS",
    "Phase",
    "Server",
]

#: Elements per chunk range handed to the ``map`` function in :meth:`Server.finalize`.
UNMASK_RANGE_ELEMENTS = 1 << 18
#: At least this many work units for that ``map`` (a short vector's jobs are split).
UNMASK_UNITS = 8


#: mode -> (phase, message type) -> handler (the phase does not change on a message).
TRANSITIONS: Mapping[Kind, Mapping[tuple[Phase, m.MessageType], Transition]] = SERVER_TRANSITIONS
#: mode -> phase -> what closes it (a passed deadline, or everyone answered) and the
#: phase after it.
DEADLINES: Mapping[Kind, Mapping[Phase, Close]] = SERVER_CLOSES

Outgoing = list[tuple[int, m.Message]]


class Server:
    """The aggregation server of one round.

    Parameters
    ----------
    config:
        The round configuration the server distributed.
    map_fn:
        A ``map``-like callable (e.g. ``executor.map``) over which the X25519
        agreements that rebuild dropped clients' pairwise seeds are spread, in
        batches; the builtin :func:`map` by default.  The server never starts
        threads itself.  It must return one result per item, in order: one that
        returns fewer or more makes the round's close raise ``ParameterError``
        (never a sum with masks left in).

    Security notes
    --------------
    The server output is ``Σ_{u∈U3} x_u mod 2^b`` or nothing.  Reconstructed
    secrets are checked against the advertised commitment ``h_v`` and public key
    ``s_v^PK``; a lying share holder makes the round abort, never a wrong sum.
    """

    def __init__(self, *, config: RoundConfig, map_fn: _plane.MapFn | None = None) -> None:
        if not isinstance(config, RoundConfig):
            raise ParameterError("config must be a RoundConfig")
        self._config = config
        self._map_fn = map_fn
        self._kind: Kind = (config.protocol, config.security)
        # SecAgg+: fixed when the graph-seed reveals of U1 are in (``_close_seed``)
        self._graph: dict[int, frozenset[int]] = (
            all_neighbors(config) if config.protocol is ProtocolKind.SECAGG else {}
        )
        self._seed_view: tuple[tuple[int, bytes], ...] = ()
        self._seed_digest = b""
        self._reveals: dict[int, m.Reveal] = {}
        self._phase = Phase.ADVERTISE_KEYS
        self._abort_reason: str | None = None
        self._abort_code: AbortReason | None = None
        self._expected: set[int] = set(config.clients)  # who may answer in this phase
        self._keys: dict[int, m.AdvertiseKeys] = {}  # U1
        self._seen_keys: set[bytes] = set()
        self._key_owners: dict[int, np.ndarray] = {}  # u -> N(u) ∩ U1 (uint32), as sent to u
        self._boxes_from: dict[int, Sequence[tuple[int, bytes]]] = {}  # U2 -> boxes
        self._senders_to: dict[int, np.ndarray] = {}  # S_u (uint32, ascending) for u in U2
        self._u3_senders: np.ndarray = np.empty(0, dtype=np.uint32)  # ∪ S_u over U3, sorted
        self._fates: np.ndarray = np.empty(0, dtype=np.uint32)  # U3 ∪ D, sorted
        self._masked: set[int] = set()  # U3
        self._sum: UIntArray | None = None
        self._signatures: dict[int, bytes] = {}  # U4
        self._u3: tuple[int, ...] = ()
        self._dropped: tuple[int, ...] = ()
        self._u3_set: frozenset[int] = frozenset()
        self._dropped_set: frozenset[int] = frozenset()
        self._u4: tuple[int, ...] = ()
        # U5 -> (owners, shares) as received: uint32 ids and (count, 33) field elements
        self._shares_from: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._u3_array: np.ndarray = np.empty(0, dtype=np.uint32)
        self._responded: set[int] = set()  # U5
        self._jobs: list[tuple[bytes, int]] = []
        self._result: UIntArray | None = None

    # -- public view -------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def config(self) -> RoundConfig:
        return self._config

    @property
    def aborted(self) -> bool:
        return self._phase is Phase.ABORTED

    @property
    def abort_reason(self) -> str | None:
        """Why the round aborted, in words (``None`` unless ABORTED)."""
        return self._abort_reason

    @property
    def abort_code(self) -> AbortReason | None:
        """Why the round aborted, as a value (``None`` unless ABORTED)."""
        return self._abort_code

    @property
    def collecting(self) -> Phase | None:
        """The phase whose client messages the server waits for (``None`` in
        FINALIZING, COMPLETED and ABORTED)."""
        return None if self._phase.round is None else self._phase

    @property
    def awaiting(self) -> frozenset[int]:
        """Client ids whose message the current phase still waits for (empty in
        FINALIZING, COMPLETED and ABORTED)."""
        return frozenset(self._expected)

    @property
    def graph(self) -> dict[int, frozenset[int]] | None:
        """``N(u)`` for every registered client once fixed (SecAgg+: after the graph-seed
        reveals of ``U1``), else ``None``."""
        return dict(self._graph) if self._graph else None

    @property
    def survivors(self) -> tuple[int, ...]:
        """``U3`` (sorted) once the masked-input round is closed, else ``()``."""
        return self._u3

    @property
    def sets(self) -> dict[str, tuple[int, ...]]:
        """``U1 .. U5`` as known so far."""
        return {
            "U1": tuple(sorted(self._keys)),
            "U2": tuple(sorted(self._boxes_from)),
            "U3": self._u3 if self._u3 else tuple(sorted(self._masked)),
            "U4": self._u4,
            "U5": tuple(sorted(self._responded)),
        }

    @property
    def mask_jobs(self) -> tuple[tuple[bytes, int], ...]:
        """The ``(seed, sign)`` jobs :meth:`finalize` applies (phase FINALIZING)."""
        return tuple(self._jobs)

    @property
    def result(self) -> UIntArray | None:
        """``Σ_{u∈U3} x_u mod 2^b`` once COMPLETED, else ``None``."""
        return self._result

    @property
    def running_sum_bytes(self) -> int:
        return 0 if self._sum is None else int(self._sum.nbytes)

    # -- driving -------------------------------------------------------------------

    def receive(self, sender: int, data: bytes | bytearray | memoryview) -> Outgoing:
        """Decode a message from ``sender`` (transport-authenticated id) and handle it.

        Returns the messages to send, as ``(recipient, message)``.

        Raises
        ------
        DecodeError
            Malformed bytes, another session, or a header that does not match the
            transport sender; nothing changed.
        RemoteProtocolError, CryptoError
            The message does not fit the phase or failed validation; nothing changed.
        LocalProtocolError
            ``data`` is a decoded message object (pass it to :meth:`handle`), not bytes.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise LocalProtocolError(
                f"receive() takes the encoded bytes, got {type(data).__name__}; "
                "pass a decoded message to handle()"
            )
        kind = m.peek_type(data)
        if kind is m.MessageType.MASKED_INPUT:
            # stays packed: unpacked chunk by chunk into the running sum
            return self.handle(sender, m.decode_masked_input(data))
        if kind is m.MessageType.UNMASKING_RESPONSE:
            # shares stay in arrays: no Python object per share
            return self.handle(sender, m.decode_unmasking_response(data))
        return self.handle(sender, m.decode(data))

    def handle(
        self, sender: int, msg: m.Message | m.MaskedInputView | m.UnmaskingResponseView
    ) -> Outgoing:
        """Like :meth:`receive` for an already decoded message."""
        if msg.session_id != self._config.session_id:
            raise DecodeError("message from another session")
        if msg.sender != sender or msg.recipient != m.SERVER_ID:
            raise DecodeError("header does not match the transport sender")
        step = TRANSITIONS[self._kind].get((self._phase, msg.TYPE))
        if step is None:
            raise RemoteProtocolError(
                f"{type(msg).__name__} does not fit phase {self._phase.value}; ignored"
            )
        if sender not in self._expected:
            raise RemoteProtocolError(f"client {sender} is not expected now (duplicate or dropped)")
        handler: Callable[[int, Any], None] = getattr(self, step.handler)
        handler(sender, msg)  # validates, then records; raises without changing state
        self._expected.discard(sender)
        if not self._expected:
            return self._close()
        return []

    def deadline_passed(self) -> Outgoing:
        """Close the current round with whoever answered (missing replies = dropouts).

        Raises
        ------
        LocalProtocolError
            In a phase that waits for nobody (FINALIZING, COMPLETED, ABORTED).
        """
        if self._phase not in DEADLINES[self._kind]:
            raise LocalProtocolError(f"no deadline in phase {self._phase.value}")
        return self._close()

    def finalize(self, map_fn: _plane.MapFn | None = None) -> UIntArray:
        """Remove the masks from the running sum and return ``Σ_{u∈U3} x_u mod 2^b``.

        Parameters
        ----------
        map_fn:
            A ``map``-like callable (e.g. ``executor.map``) used to run the jobs on
            disjoint chunk ranges; the builtin :func:`map` by default.

        Raises
        ------
        LocalProtocolError
            Unless the phase is FINALIZING; or if ``map_fn`` did not run every unit
            it was handed (the partly unmasked sum is then wiped and discarded, and
            every later call refuses too).
        """
        if self._phase is not Phase.FINALIZING:
            raise LocalProtocolError(f"finalize() in phase {self._phase.value}")
        total = self._sum
        if total is None:
            raise LocalProtocolError("the sum was discarded by an earlier failed finalize()")
        bits = self._config.bits
        mod = (1 << bits) - 1
        if bits < 8 * total.dtype.itemsize:
            np.bitwise_and(total, total.dtype.type(mod), out=total)
        jobs = list(self._jobs)
        n = len(total)
        ranges = [
            (a, min(a + UNMASK_RANGE_ELEMENTS, n)) for a in range(0, n, UNMASK_RANGE_ELEMENTS)
        ]
        # Fewer ranges than UNMASK_UNITS (a short vector): the jobs are cut into groups
        # instead, each summed into its own zeroed range and added to ``total`` here,
        # so that a threaded ``map_fn`` still has UNMASK_UNITS units to spread (each
        # seed is still expanded once).  Extra memory: UNMASK_UNITS ranges at most.
        groups = max(1, min(len(jobs), -(-UNMASK_UNITS // max(1, len(ranges)))))
        if groups == 1:

            def work(r: tuple[int, int]) -> None:
                apply_masks(total[r[0] : r[1]], jobs, bits, offset=r[0])

            units_n = len(ranges)
            done = sum(1 for _ in (map_fn or map)(work, ranges))
        else:
            step = -(-len(jobs) // groups)
            units = [
                (a, b, jobs[i : i + step]) for a, b in ranges for i in range(0, len(jobs), step)
            ]

            def part(u: tuple[int, int, list[tuple[bytes, int]]]) -> tuple[int, UIntArray]:
                a, b, some = u
                acc = cast(UIntArray, np.zeros(b - a, dtype=total.dtype))
                apply_masks(acc, some, bits, offset=a)
                return a, acc

            done, units_n = 0, len(units)
            for a, acc in (map_fn or map)(part, units):
                np.add(total[a : a + len(acc)], acc, out=total[a : a + len(acc)])
                done += 1
            if bits < 8 * total.dtype.itemsize:
                np.bitwise_and(total, total.dtype.type(mod), out=total)
        if done != units_n:
            # some masks were not removed: never hand out (or keep) a partly unmasked sum
            total.fill(0)
            self._sum = None
            self._jobs = []
            raise LocalProtocolError(
                f"map_fn returned {done} results for {units_n} unmasking units; "
                "the sum was discarded"
            )
        self._result = total
        self._sum = None
        self._jobs = []
        self._phase = Phase.COMPLETED
        return total

    # -- message handlers (validate, then record) ------------------------------------

    def _on_advertise(self, sender: int, msg: m.AdvertiseKeys) -> None:
        cfg = self._config
        if cfg.security is SecurityMode.MALICIOUS:
            try:
                _sign.verify(
                    cfg.identity_key(sender),
                    msg.signature,
                    cm.advertise_signature_input(
                        session_id=cfg.session_id,
                        client=sender,
                        c_pk=msg.c_pk,
                        s_pk=msg.s_pk,
                        commitment=msg.commitment,
                        seed_commitment=msg.seed_commitment,
                    ),
                )
            except CryptoError:
                raise RemoteProtocolError("invalid advertise-keys signature") from None
        elif msg.signature:
            raise RemoteProtocolError("signature in a semi-honest round")
        try:  # a low-order key would make every honest neighbor abort
            kex.check_contributory(msg.c_pk)
            kex.check_contributory(msg.s_pk)
        except CryptoError:
            raise RemoteProtocolError("low-order public key") from None
        if msg.c_pk == msg.s_pk or msg.c_pk in self._seen_keys or msg.s_pk in self._seen_keys:
            # a copied key would make honest neighbors abort; keep the copier out instead
            raise RemoteProtocolError("public key already advertised")
        self._seen_keys.update((msg.c_pk, msg.s_pk))
        self._keys[sender] = msg

    def _on_seed_reveal(self, sender: int, msg: m.SeedReveal) -> None:
        cfg = self._config
        g = cm.seed_commitment(msg.reveal, session_id=cfg.session_id, client=sender)
        if g != self._keys[sender].seed_commitment:
            raise RemoteProtocolError("reveal does not open the seed commitment")
        if cfg.security is SecurityMode.MALICIOUS:
            try:
                _sign.verify(
                    cfg.identity_key(sender),
                    msg.signature,
                    cm.seed_reveal_signature_input(
                        session_id=cfg.session_id, client=sender, view=self._seed_digest
                    ),
                )
            except CryptoError:
                raise RemoteProtocolError("invalid seed-reveal signature") from None
        elif msg.signature:
            raise RemoteProtocolError("signature in a semi-honest round")
        self._reveals[sender] = m.Reveal(owner=sender, reveal=msg.reveal, signature=msg.signature)

    def _on_share_keys(self, sender: int, msg: m.ShareKeys) -> None:
        boxes = msg.boxes
        ids = (
            boxes.ids
            if type(boxes) is m.BoxList
            else np.fromiter(map(itemgetter(0), boxes), dtype=np.int64, count=len(boxes))
        )
        if not np.array_equal(ids, self._key_owners[sender]):
            raise RemoteProtocolError("share boxes must go to exactly N(u) ∩ U1")
        self._boxes_from[sender] = msg.boxes

    def _on_masked_input(self, sender: int, msg: m.MaskedInput | m.MaskedInputView) -> None:
        cfg = self._config
        length = msg.length if isinstance(msg, m.MaskedInputView) else len(msg.vector)
        if msg.bits != cfg.bits or length != cfg.length:
            raise RemoteProtocolError(
                f"masked input must have bits={cfg.bits} and {cfg.length} elements"
            )
        want = cm.view_digest_ids(
            session_id=cfg.session_id,
            client=sender,
            ids=self._senders_to[sender].astype(">u4").tobytes(),
        )
        if msg.view != want:
            # u masked with other neighbors than the boxes it was sent: its y_u would
            # not cancel; refuse it (u becomes a dropout, its masks are rebuilt)
            raise RemoteProtocolError("masked input was made with another U2 view")
        # range already checked by the decoder / message constructor
        acc = self._sum
        if acc is None:
            acc = cast(UIntArray, np.zeros(cfg.length, dtype=dtype_for_bits(cfg.bits)))
        # wraps mod 2^(8*itemsize); reduced mod 2^bits in finalize (2^bits divides it)
        if isinstance(msg, m.MaskedInputView):
            for off, part in msg.chunks():
                np.add(acc[off : off + len(part)], part, out=acc[off : off + len(part)])
        else:
            np.add(acc, msg.vector, out=acc)
        self._sum = acc
        self._masked.add(sender)

    def _on_signature(self, sender: int, msg: m.ConsistencySignature) -> None:
        cfg = self._config
        try:
            _sign.verify(
                cfg.identity_key(sender),
                msg.signature,
                cm.consistency_signature_input(
                    session_id=cfg.session_id,
                    client=sender,
                    survivors=self._u3,
                    view=self._seed_digest,
                ),
            )
        except CryptoError:
            raise RemoteProtocolError("invalid consistency signature") from None
        self._signatures[sender] = msg.signature

    def _on_unmasking(
        self, sender: int, msg: m.UnmaskingResponse | m.UnmaskingResponseView
    ) -> None:
        view = msg if isinstance(msg, m.UnmaskingResponseView) else m.UnmaskingResponseView.of(msg)
        # the owners must be exactly S_sender ∩ (U3 ∪ D), ascending, each with the kind
        # its owner's fate asks for (SELF_MASK if it survived, MASK_KEY if it dropped)
        senders = self._senders_to[sender]
        want = senders[_member(senders, self._fates)]
        if not np.array_equal(view.owners, want) or not np.array_equal(
            view.kinds, self._kinds_for(want)
        ):
            raise RemoteProtocolError(
                "unmasking response does not hold exactly the expected shares"
            )
        self._shares_from[sender] = (view.owners, view.ys)
        self._responded.add(sender)

    def _kinds_for(self, owners: np.ndarray) -> np.ndarray:
        """The :class:`~secagg.masking.messages.ShareKind` value each owner's fate asks for."""
        u3 = self._u3_array
        if not len(u3):
            return np.full(len(owners), int(m.ShareKind.MASK_KEY), dtype=np.uint8)
        at = np.minimum(np.searchsorted(u3, owners), len(u3) - 1)
        return np.where(
            u3[at] == owners, int(m.ShareKind.SELF_MASK), int(m.ShareKind.MASK_KEY)
        ).astype(np.uint8)

    # -- closing rounds ----------------------------------------------------------------

    def _close(self) -> Outgoing:
        step = DEADLINES[self._kind][self._phase]
        closer: Callable[[], Outgoing] = getattr(self, step.closer)
        out = closer()
        if self._phase is not Phase.ABORTED:
            self._phase = step.next
        return out

    def _abort(self, code: AbortReason, reason: str, notify: Iterable[int]) -> Outgoing:
        cfg = self._config
        self._phase = Phase.ABORTED
        self._abort_code = code
        self._abort_reason = reason
        self._sum = None
        self._jobs = []
        self._expected = set()
        return [
            (
                u,
                m.Abort(
                    session_id=cfg.session_id,
                    sender=m.SERVER_ID,
                    recipient=u,
                    code=code,
                    reason=reason,
                ),
            )
            for u in sorted(notify)
        ]

    def _close_keys(self) -> Outgoing:
        cfg = self._config
        u1 = sorted(self._keys)
        if len(u1) < cfg.threshold + 1:
            return self._abort(
                AbortReason.TOO_FEW_KEYS,
                f"only {len(u1)} clients advertised keys (t={cfg.threshold})",
                u1,
            )
        self._expected = set(u1)
        if cfg.protocol is ProtocolKind.SECAGG:
            return self._send_keys(())
        self._seed_view = tuple((u, self._keys[u].seed_commitment) for u in u1)
        self._seed_digest = cm.seed_view_digest(session_id=cfg.session_id, entries=self._seed_view)
        return [
            (
                u,
                m.SeedRequest(
                    session_id=cfg.session_id,
                    sender=m.SERVER_ID,
                    recipient=u,
                    commitments=self._seed_view,
                ),
            )
            for u in u1
        ]

    def _close_seed(self) -> Outgoing:
        cfg = self._config
        u1 = sorted(self._keys)
        missing = [u for u in u1 if u not in self._reveals]
        if missing:
            # every client of U1 must reveal: a seed over a subset would let the server
            # choose among subsets after seeing the reveals (protocols/secagg.md §2)
            return self._abort(
                AbortReason.SEED_REVEAL_MISSING,
                f"{len(missing)} clients of U1 did not reveal their graph-seed part",
                [u for u in u1 if u in self._reveals],
            )
        reveals = tuple(self._reveals[u] for u in u1)
        key = cm.graph_key(
            session_id=cfg.session_id,
            graph_seed=cfg.graph_seed,
            view=self._seed_digest,
            reveals=[(x.owner, x.reveal) for x in reveals],
        )
        self._graph = all_neighbors(cfg, seed=key)
        self._expected = set(u1)
        return self._send_keys(reveals)

    def _send_keys(self, reveals: tuple[m.Reveal, ...]) -> Outgoing:
        cfg = self._config
        out: Outgoing = []
        # one KeyEntry (and wire record) per owner, shared by every broadcast that lists it
        table = m.EntryTable(
            m.KeyEntry(
                owner=v,
                c_pk=k.c_pk,
                s_pk=k.s_pk,
                commitment=k.commitment,
                seed_commitment=k.seed_commitment,
                signature=k.signature,
            )
            for v, k in self._keys.items()
        )
        # a frozenset, so each intersection walks the smaller side (N(u), k ids), not U1
        u1 = frozenset(self._keys)
        for u in sorted(u1):
            # N(u) ∩ U1, ascending: whom u's ShareKeys must address
            owners = sorted(self._graph[u] & u1)
            self._key_owners[u] = np.fromiter(owners, dtype=np.uint32, count=len(owners))
            out.append(
                (
                    u,
                    m.KeysBroadcast(
                        session_id=cfg.session_id,
                        sender=m.SERVER_ID,
                        recipient=u,
                        entries=table.select(owners),
                        reveals=reveals,
                    ),
                )
            )
        return out

    def _close_shares(self) -> Outgoing:
        cfg = self._config
        u2 = sorted(self._boxes_from)
        if len(u2) < cfg.threshold + 1:
            return self._abort(
                AbortReason.TOO_FEW_SHARES,
                f"only {len(u2)} clients shared keys (t={cfg.threshold})",
                u2,
            )
        # ascending sender order within each inbox; boxes to clients outside U2 dropped
        inbox = _plane.route_boxes(self._boxes_from, u2)
        out: Outgoing = []
        for u in u2:
            boxes = inbox.pop(u)
            self._senders_to[u] = boxes.ids
            out.append(
                (
                    u,
                    m.MaskedInputRequest(
                        session_id=cfg.session_id,
                        sender=m.SERVER_ID,
                        recipient=u,
                        boxes=boxes,
                    ),
                )
            )
        self._boxes_from = {u: () for u in u2}  # boxes forwarded; keep only U2
        self._expected = set(u2)
        return out

    def _holder_counts(self, among: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(owners, counts)``: every owner in some ``S_w`` (``w`` in ``among``),
        ascending, and ``|{w in among : owner in S_w}|`` (holders of its shares)."""
        parts = [self._senders_to[w] for w in among if w in self._senders_to]
        if not parts:
            return np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.int64)
        # unique with counts by one sort (np.unique would import numpy.ma on first use)
        ids = np.sort(np.concatenate(parts))
        starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
        return ids[starts], np.diff(np.append(starts, len(ids)))

    def _close_masked(self) -> Outgoing:
        cfg = self._config
        t = cfg.threshold
        u3 = set(self._masked)
        u3_sorted = tuple(sorted(u3))
        if len(u3) < t + 1:
            return self._abort(
                AbortReason.TOO_FEW_MASKED_INPUTS,
                f"only {len(u3)} masked inputs (t={t})",
                u3_sorted,
            )
        dropped = tuple(sorted(set(self._boxes_from) - u3))
        # owners: every sender to some u in U3 (whose masks are in U3's inputs)
        owners, holders = self._holder_counts(u3_sorted)
        u3_array = np.asarray(u3_sorted, dtype=np.uint32)
        short = np.flatnonzero(_counts_of(u3_array, owners, holders) < t)
        if len(short):
            return self._abort(
                AbortReason.SELF_MASK_UNRECOVERABLE,
                f"client {u3_sorted[int(short[0])]}'s self mask cannot be recovered",
                u3_sorted,
            )
        d = np.asarray(dropped, dtype=np.uint32)
        short = np.flatnonzero(_member(d, owners) & (_counts_of(d, owners, holders) < t))
        if len(short):
            return self._abort(
                AbortReason.DROPPED_MASKS_UNRECOVERABLE,
                f"dropped client {dropped[int(short[0])]}'s masks cannot be recovered",
                u3_sorted,
            )
        self._u3_senders = owners
        self._fates = np.sort(np.concatenate([u3_array, d]))  # disjoint sets
        self._u3 = u3_sorted
        self._dropped = dropped
        self._u3_set = frozenset(u3_sorted)
        self._dropped_set = frozenset(dropped)
        self._u3_array = u3_array
        self._expected = set(u3)
        if cfg.security is SecurityMode.MALICIOUS:
            return [
                (
                    u,
                    m.ConsistencyRequest(
                        session_id=cfg.session_id,
                        sender=m.SERVER_ID,
                        recipient=u,
                        survivors=u3_sorted,
                    ),
                )
                for u in u3_sorted
            ]
        self._u4 = u3_sorted
        return self._send_unmasking(())

    def _close_signatures(self) -> Outgoing:
        cfg = self._config
        u4 = tuple(sorted(self._signatures))
        if len(u4) < cfg.signature_threshold:
            return self._abort(
                AbortReason.TOO_FEW_SIGNATURES,
                f"only {len(u4)} consistency signatures (need {cfg.signature_threshold})",
                u4,
            )
        self._u4 = u4
        self._expected = set(u4)
        return self._send_unmasking(tuple((u, self._signatures[u]) for u in u4))

    def _send_unmasking(self, sigs: tuple[tuple[int, bytes], ...]) -> Outgoing:
        cfg = self._config
        self._expected = set(self._u4)
        return [
            (
                u,
                m.UnmaskingRequest(
                    session_id=cfg.session_id,
                    sender=m.SERVER_ID,
                    recipient=u,
                    survivors=self._u3,
                    dropped=self._dropped,
                    signatures=sigs,
                ),
            )
            for u in self._u4
        ]

    def _close_unmasking(self) -> Outgoing:
        cfg = self._config
        t = cfg.threshold
        u5 = sorted(self._responded)
        u3 = self._u3
        dropped_arr = np.asarray(self._dropped, dtype=np.uint32)
        dropped_needed: list[int] = (
            dropped_arr[_member(dropped_arr, self._u3_senders)].tolist()
            if self._dropped
            else []
        )
        owners, holders, ys = self._shares_by_owner(u5)
        needed = np.asarray([*u3, *dropped_needed], dtype=np.int64)
        lo = np.searchsorted(owners, needed, "left")
        held = np.searchsorted(owners, needed, "right") - lo
        short = np.flatnonzero(held < t).tolist()
        if short:
            i = short[0]
            if i < len(u3):
                return self._abort(
                    AbortReason.MISSING_SELF_MASK_SHARES,
                    f"too few shares to remove client {u3[i]}'s self mask",
                    u5,
                )
            return self._abort(
                AbortReason.MISSING_MASK_KEY_SHARES,
                f"too few shares to rebuild dropped client {dropped_needed[i - len(u3)]}'s masks",
                u5,
            )
        # each secret from the t holders with the smallest ids (what reconstruct_many uses)
        pick = (lo[:, None] + np.arange(t)).reshape(-1)
        xs = holders[pick].reshape(-1, t)
        rows = ys[pick].reshape(-1, t, ELEMENT_BYTES)
        del owners, holders, ys
        jobs: list[tuple[bytes, int]] = []
        try:
            # every secret at once, no Python int per share (shamir.reconstruct_rows)
            secrets = _plane.reconstruct_secret_rows(xs, rows, t)
            for v, b in zip(u3, secrets[: len(u3)], strict=True):
                if (
                    cm.self_mask_commitment(b, session_id=cfg.session_id, client=v)
                    != self._keys[v].commitment
                ):
                    raise ParameterError("commitment mismatch")
                jobs.append((cm.self_mask_seed(b, session_id=cfg.session_id, client=v), -1))
            dropped_keys: dict[int, KeyPair] = {}
            for v, sk in zip(dropped_needed, secrets[len(u3) :], strict=True):
                kp = KeyPair.from_private_bytes(sk)
                if kp.public != self._keys[v].s_pk:
                    raise ParameterError("public key mismatch")
                dropped_keys[v] = kp
        except (ParameterError, CryptoError):
            return self._abort(
                AbortReason.RECONSTRUCTION_FAILED,
                "a reconstructed secret failed its check (a holder lied)",
                u5,
            )
        jobs.extend(self._dropped_mask_jobs(dropped_keys))
        self._jobs = jobs
        self._shares_from = {}
        self._expected = set()
        return []

    def _shares_by_owner(self, u5: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every share held by ``U5`` as ``(owners, holders, shares)``, sorted by owner
        and then holder (one sort instead of one Python step per share)."""
        if not u5:
            return (np.empty(0, np.uint32), np.empty(0, np.uint32),
                    np.empty((0, ELEMENT_BYTES), np.uint8))
        parts = [self._shares_from[w] for w in u5]
        owners = np.concatenate([o for o, _ in parts])
        ys = np.concatenate([y for _, y in parts])
        holders = np.repeat(np.asarray(u5, dtype=np.uint32), [len(o) for o, _ in parts])
        order = np.lexsort((holders, owners))
        return owners[order], holders[order], ys[order]

    def _dropped_mask_jobs(self, dropped_keys: dict[int, KeyPair]) -> list[tuple[bytes, int]]:
        """``(s_{u,v}, -ε_{u,v})`` for every survivor ``u`` masked with a dropped ``v``.

        The agreements run in batches through the injected ``map_fn`` (see
        :class:`Server`), in the order survivor, then sender.
        """
        pairs = []
        signs = []
        if not dropped_keys:
            return []  # no dropout: skip the O(|U3| k) scan
        for u in self._u3:
            pk = self._keys[u].s_pk
            for v in filter(dropped_keys.__contains__, self._senders_to[u].tolist()):
                pairs.append((dropped_keys[v].private, pk, u, v))
                signs.append(-cm.mask_sign(u, v))
        seeds = _plane.pairwise_seeds(pairs, _plane.labels(self._config.session_id), self._map_fn)
        return list(zip(seeds, signs, strict=True))


def _counts_of(ids: np.ndarray, owners: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``counts`` looked up for each of ``ids`` (0 for an id not in ``owners``)."""
    if not len(owners):
        return np.zeros(len(ids), dtype=np.int64)
    at = np.minimum(np.searchsorted(owners, ids), len(owners) - 1)
    return np.where(owners[at] == ids, counts[at], 0)


def _member(ids: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``ids`` are in ``sorted_set`` (ascending)."""
    if not len(sorted_set):
        return np.zeros(len(ids), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, ids), len(sorted_set) - 1)
    return np.asarray(sorted_set[at] == ids)
