"""Rounds for property tests: dropout schedules, byte mutations, malicious-server
actions, the oracle, and a reference round runner over pluggable parties.

Nothing here needs hypothesis.  The runner talks to every party through two small
interfaces (:class:`ClientEndpoint`, :class:`ServerEndpoint`) that carry *wire
bytes* only, so one party can be our reference state machine
(:class:`LocalClient`, :class:`LocalServer`) and another an outside
implementation behind a pipe (:mod:`secagg.testing.process`).  Messages are looked
at only through the public codec (:func:`secagg.masking.messages.decode` /
``encode``) — never by byte offsets — so a new wire version needs no change here.

The oracle (:func:`predict`) is the model of ``protocols/secagg.md`` §4: it
computes ``U1..U5`` from who leaves before which phase and says whether each
threshold check passes.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import numpy as np

from secagg.errors import DecodeError, ParameterError, SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.graph import all_neighbors
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.kex import KeyPair
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom, RandomSource

__all__ = [
    "ATTACKS_NEEDING_MALICIOUS_MODE",
    "ClientEndpoint",
    "Expected",
    "LocalClient",
    "LocalServer",
    "Mutation",
    "MutationKind",
    "RoundRecord",
    "Schedule",
    "ServerAttack",
    "ServerEndpoint",
    "ServerStep",
    "Step",
    "asked_phase",
    "exact_sum",
    "expected_matches",
    "mutate",
    "play_round",
    "predict",
    "predict_leaves",
    "reference_clients",
    "reference_graph",
    "reproducible_rng",
]

#: The phase a server message asks its recipient to answer (``None``: abort notice).
_ASKS: dict[m.MessageType, Phase | None] = {
    m.MessageType.SEED_REQUEST: Phase.GRAPH_SEED,
    m.MessageType.KEYS_BROADCAST: Phase.SHARE_KEYS,
    m.MessageType.MASKED_INPUT_REQUEST: Phase.MASKED_INPUT,
    m.MessageType.CONSISTENCY_REQUEST: Phase.CONSISTENCY,
    m.MessageType.UNMASKING_REQUEST: Phase.UNMASKING,
    m.MessageType.ABORT: None,
}
#: ``leave`` rounds of the model: the phase a client misses first -> round number.
_LEAVE = {
    Phase.ADVERTISE_KEYS: 0,
    Phase.GRAPH_SEED: 1,  # SecAgg+ (v2): advertised, never revealed -> the round aborts
    Phase.SHARE_KEYS: 1,
    Phase.MASKED_INPUT: 2,
    Phase.CONSISTENCY: 3,
    Phase.UNMASKING: 4,
}
_NEVER = 5


def asked_phase(data: bytes) -> Phase | None:
    """The phase a server message asks for (decoded with the public codec).

    Raises
    ------
    DecodeError
        Bytes that are no valid server message.
    """
    t = m.decode(data).TYPE
    if t not in _ASKS:
        raise DecodeError(f"{t.name} is not a server message")
    return _ASKS[t]


def reproducible_rng(seed: bytes, label: str) -> RandomSource:
    """``InsecureDeterministicRandom(seed).child(label)`` without the warning: the
    randomness a party uses in a reproducible (conformance or vector) run."""
    return InsecureDeterministicRandom(seed, warn=False).child(label)


# -- schedules and the oracle ------------------------------------------------------------


class MutationKind(enum.Enum):
    """Byte-level changes that need no knowledge of the message layout."""

    TRUNCATE = "truncate"  #: keep a strict prefix (a strict decoder refuses it)
    EXTEND = "extend"  #: append bytes (trailing bytes: refused)
    FLIP = "flip"  #: flip one bit anywhere (may be refused, or caught later)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutation:
    """One byte-level change; :func:`mutate` applies it to any message."""

    kind: MutationKind
    position: int = 0  #: taken modulo the message length
    value: int = 1  #: FLIP: the bit (mod 8); EXTEND: how many bytes (1..)

    @property
    def must_refuse(self) -> bool:
        """True for changes every strict decoder refuses whatever the layout."""
        return self.kind is not MutationKind.FLIP


def mutate(data: bytes, mutation: Mutation) -> bytes:
    """``data`` changed by ``mutation`` (always different from ``data``)."""
    n = len(data)
    if mutation.kind is MutationKind.TRUNCATE:
        return data[: mutation.position % n] if n else b""
    if mutation.kind is MutationKind.EXTEND:
        return data + bytes((i * 37 + 1) & 0xFF for i in range(max(1, mutation.value)))
    if not n:
        return b"\x00"
    i = mutation.position % n
    return data[:i] + bytes([data[i] ^ (1 << (mutation.value % 8))]) + data[i + 1 :]


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """What happens to the round besides the protocol.

    Attributes
    ----------
    drops:
        Client -> the first phase it misses (it sends nothing from then on and
        never reads another message).  A client dropped before
        ``ADVERTISE_KEYS`` never starts.
    corruptions:
        ``(phase, client, mutation)``: before the client's genuine message of
        ``phase`` reaches the server, a mutated copy is sent from the same
        (authenticated) sender.  Property: refused bytes change nothing.
    """

    drops: Mapping[int, Phase] = field(default_factory=dict)
    corruptions: tuple[tuple[Phase, int, Mutation], ...] = ()

    def leaves(self, config: RoundConfig) -> dict[int, int]:
        """Model rounds: client -> the round before which it leaves (5: never)."""
        return {u: _LEAVE[self.drops[u]] if u in self.drops else _NEVER for u in config.clients}

    def drops_before(self, client: int, phase: Phase) -> bool:
        d = self.drops.get(client)
        return d is not None and d.order <= phase.order

    def corruptions_of(self, client: int, phase: Phase) -> list[Mutation]:
        return [x for p, u, x in self.corruptions if p is phase and u == client]


@dataclass(frozen=True, slots=True, kw_only=True)
class Expected:
    """What a correct implementation must do with a round."""

    completes: bool
    survivors: tuple[int, ...]  #: ``U3`` when it completes, else ``()``
    total: UIntArray | None  #: ``Σ_{u∈U3} x_u mod 2^b`` when it completes


def predict(config: RoundConfig, inputs: Mapping[int, UIntArray], schedule: Schedule, *,
            graph: Mapping[int, frozenset[int]] | None = None) -> Expected:
    """The oracle: whether the round must complete, its survivors and exact sum.

    A round completes iff every threshold check of ``protocols/secagg.md`` §4
    passes for the sets the schedule leaves; otherwise it must abort (and an
    implementation that completes it anyway is wrong, as is one that aborts a
    round that must complete).

    ``graph`` is ``N(u)`` of the round.  The complete graph follows from the
    config; a SecAgg+ graph (protocol v2) from the clients' seed reveals, so pass
    the one the round fixed (:attr:`RoundRecord.graph`; with reproducible client
    randomness :func:`reference_graph` recomputes it).  A SecAgg+ client that
    advertised keys and drops before the graph-seed step makes the round abort.
    """
    if config.protocol is ProtocolKind.SECAGG_PLUS and any(
        p is Phase.GRAPH_SEED for u, p in schedule.drops.items() if u in config.clients
    ):
        return Expected(completes=False, survivors=(), total=None)
    if graph is None and config.protocol is ProtocolKind.SECAGG_PLUS:
        raise ParameterError("a SecAgg+ round needs the graph its seed reveals fixed")
    ok, u3 = predict_leaves(config, schedule.leaves(config), graph=graph)
    if not ok:
        return Expected(completes=False, survivors=(), total=None)
    return Expected(completes=True, survivors=u3, total=exact_sum(config, inputs, u3))


def exact_sum(config: RoundConfig, inputs: Mapping[int, UIntArray],
              ids: Sequence[int]) -> UIntArray:
    """``Σ_{u∈ids} x_u mod 2^b`` in Python integers (no overflow to trust)."""
    dt = dtype_for_bits(config.bits)
    mod = 1 << config.bits
    acc = [0] * config.length
    for u in ids:
        for i, v in enumerate(inputs[u].tolist()):
            acc[i] += int(v)
    return cast(UIntArray, np.array([a % mod for a in acc], dtype=dt))


def predict_leaves(config: RoundConfig, leave: Mapping[int, int], *,
                   graph: Mapping[int, frozenset[int]] | None = None,
                   ) -> tuple[bool, tuple[int, ...]]:
    """``(completes, U3)`` from ``leave[u]``, the round before which ``u`` leaves
    (0: never advertises; 1..4: before ShareKeys / MaskedInput / Consistency /
    Unmasking; 5: never)."""
    known = dict(graph) if graph is not None else all_neighbors(config)
    nbrs = {u: frozenset(known.get(u, ())) for u in config.clients}
    t = config.threshold
    malicious = config.security is SecurityMode.MALICIOUS
    u1 = {u for u in config.clients if leave[u] >= 1}
    if len(u1) < t + 1:
        return False, ()
    u2 = {u for u in u1 if leave[u] >= 2 and len(nbrs[u] & u1) >= t}
    if len(u2) < t + 1:
        return False, ()
    u3 = {u for u in u2 if leave[u] >= 3 and len(nbrs[u] & u2) >= t}
    if len(u3) < t + 1:
        return False, ()
    if any(len(nbrs[u] & u3) < t for u in u3):
        return False, ()
    masked_with = set().union(*(nbrs[u] & u2 for u in u3))
    dropped = (u2 - u3) & masked_with
    if any(len(nbrs[v] & u3) < t for v in dropped):
        return False, ()
    u4 = {u for u in u3 if leave[u] >= (4 if malicious else 3)}
    if malicious and len(u4) < config.signature_threshold:
        return False, ()
    u5 = {u for u in u4 if leave[u] >= _NEVER}
    if any(len(nbrs[v] & u5) < t for v in u3 | dropped):
        return False, ()
    return True, tuple(sorted(u3))


# -- malicious-server actions --------------------------------------------------------------


class ServerAttack(enum.Enum):
    """What a malicious server does to one target client.

    Each names the property a correct client keeps (``protocols/conformance.md``).
    """

    WITHHOLD = "withhold"  #: KeysBroadcast cut below the threshold: must not answer
    TRUNCATE = "truncate"  #: every message first sent truncated: refused, nothing changes
    SPLIT_VIEWS = "split-views"  #: the target is told a survivor dropped (others: survived)
    REPLAY = "replay"  #: every message delivered twice: never a second answer
    SUBSTITUTE_KEYS = "substitute-keys"  #: a neighbor's keys replaced (MITM): must not answer
    BOTH_SHARES = "both-shares"  #: UnmaskingRequest names a survivor as dropped too


#: Attacks a semi-honest client cannot detect by design (its threat model trusts the
#: server to follow the protocol); they are checked in malicious mode only.
ATTACKS_NEEDING_MALICIOUS_MODE = frozenset({ServerAttack.SPLIT_VIEWS, ServerAttack.SUBSTITUTE_KEYS})


def _attack_frames(attack: ServerAttack, data: bytes, target: int,
                   holder_of: frozenset[int], threshold: int) -> tuple[list[bytes], int | None]:
    """``(frames, hostile)``: what the server delivers instead of ``data``; the
    frame at index ``hostile`` is the attack, which the target must not answer."""
    msg = m.decode(data)
    if attack is ServerAttack.TRUNCATE:
        return [data[: len(data) // 2], data], 0
    if attack is ServerAttack.REPLAY:
        return [data, data], 1
    if attack is ServerAttack.WITHHOLD and isinstance(msg, m.KeysBroadcast):
        cut = dataclasses.replace(msg, entries=msg.entries[: threshold - 1])
        return [m.encode(cut)], 0
    if attack is ServerAttack.SUBSTITUTE_KEYS and isinstance(msg, m.KeysBroadcast) and msg.entries:
        rng = reproducible_rng(bytes(32), f"substitute/{target}")
        e = msg.entries[0]
        fake = dataclasses.replace(e, c_pk=KeyPair.generate(rng).public,
                                   s_pk=KeyPair.generate(rng).public)
        return [m.encode(dataclasses.replace(msg, entries=(fake, *msg.entries[1:])))], 0
    if attack is ServerAttack.BOTH_SHARES and isinstance(msg, m.UnmaskingRequest):
        victims = [v for v in msg.survivors if v != target and v in holder_of]
        if victims:
            dropped = tuple(sorted({*msg.dropped, victims[0]}))
            return [m.encode(dataclasses.replace(msg, dropped=dropped))], 0
    if attack is ServerAttack.SPLIT_VIEWS and isinstance(msg, m.UnmaskingRequest):
        # the others were asked for v's self-mask share; the target is told v dropped
        victims = [v for v in msg.survivors if v != target and v in holder_of]
        if victims:
            v = victims[0]
            out = dataclasses.replace(
                msg,
                survivors=tuple(x for x in msg.survivors if x != v),
                dropped=tuple(sorted({*msg.dropped, v})),
            )
            return [m.encode(out)], 0
    return [data], None


# -- parties ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A client's answer to one input: status ``ok`` / ``refused`` / ``aborted``."""

    status: str
    messages: tuple[bytes, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ServerStep:
    """A server's answer: status, ``(recipient, bytes)`` to send, and the sum once
    it completed (status ``completed``)."""

    status: str
    messages: tuple[tuple[int, bytes], ...] = ()
    reason: str = ""
    total: tuple[int, ...] | None = None


class ClientEndpoint(Protocol):
    """One client, bytes in and out."""

    def start(self) -> Step: ...

    def deliver(self, data: bytes) -> Step: ...


class ServerEndpoint(Protocol):
    """The server, bytes in and out (sender ids are transport-authenticated)."""

    def deliver(self, sender: int, data: bytes) -> ServerStep: ...

    def deadline(self) -> ServerStep: ...


class LocalClient:
    """Our reference :class:`~secagg.masking.client.Client` as an endpoint."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def start(self) -> Step:
        try:
            return Step("ok", (m.encode(self.client.start()),))
        except SecAggError as exc:
            return Step("aborted", (), str(exc))

    def deliver(self, data: bytes) -> Step:
        try:
            out = self.client.receive(data)
        except DecodeError as exc:
            return Step("refused", (), str(exc))
        except SecAggError as exc:
            return Step("aborted", (), str(exc))
        return Step("ok", tuple(m.encode(x) for x in out))


class LocalServer:
    """Our reference :class:`~secagg.masking.server.Server` as an endpoint (it
    finalizes as soon as the unmasking round closes)."""

    def __init__(self, config: RoundConfig) -> None:
        self.server = Server(config=config)

    def _after(self, out: list[tuple[int, m.Message]]) -> ServerStep:
        s = self.server
        msgs = tuple((r, m.encode(x)) for r, x in out)
        if s.phase is Phase.FINALIZING:
            total = s.finalize()
            return ServerStep("completed", msgs, "", tuple(int(v) for v in total.tolist()))
        if s.phase is Phase.ABORTED:
            return ServerStep("aborted", msgs, s.abort_reason or "")
        return ServerStep("ok", msgs)

    def deliver(self, sender: int, data: bytes) -> ServerStep:
        if self.server.phase in (Phase.COMPLETED, Phase.ABORTED):
            return ServerStep("refused", (), "round is over")
        try:
            out = self.server.receive(sender, data)
        except SecAggError as exc:
            return ServerStep("refused", (), str(exc))
        return self._after(out)

    def deadline(self) -> ServerStep:
        try:
            out = self.server.deadline_passed()
        except SecAggError as exc:
            return ServerStep("refused", (), str(exc))
        return self._after(out)


def reference_clients(config: RoundConfig, inputs: Mapping[int, UIntArray], seed: bytes,
                      identity: Mapping[int, bytes] | None = None) -> dict[int, LocalClient]:
    """Our clients of ``config``; client ``u`` draws from
    ``reproducible_rng(seed, "client/<u>")`` (as in the known-answer vectors)."""
    from secagg.primitives.sign import SigningKey

    ident = identity or {}
    return {
        u: LocalClient(Client(
            config=config, client_id=u, input_vector=inputs[u],
            rng=reproducible_rng(seed, f"client/{u}"),
            identity_key=SigningKey.from_private_bytes(ident[u]) if u in ident else None,
        ))
        for u in config.clients
    }


# -- the runner ---------------------------------------------------------------------------------


@dataclass(slots=True)
class RoundRecord:
    """What :func:`play_round` saw.

    ``transcript`` lists ``(direction, client, hex, note)`` in delivery order
    (direction ``to_server`` / ``to_client``; note: ``genuine``, ``corrupt``,
    ``attack``, ``refused`` ...).
    """

    completed: bool = False
    aborted: bool = False
    abort_reason: str = ""
    total: tuple[int, ...] | None = None
    transcript: list[tuple[str, int, str, str]] = field(default_factory=list)
    refused_by_server: list[str] = field(default_factory=list)  #: notes on refused frames
    accepted_corruptions: int = 0
    client_steps: dict[int, list[Step]] = field(default_factory=dict)
    attack_answers: list[tuple[str, int]] = field(default_factory=list)  #: (type, frames)
    attack_delivered: int = 0
    errors: list[str] = field(default_factory=list)  #: protocol-level findings
    mutated_steps: list[int] = field(default_factory=list)  #: target step index of mutants
    graph: dict[int, frozenset[int]] | None = None  #: ``N(u)`` as the round fixed it


def play_round(
    config: RoundConfig,
    clients: Mapping[int, ClientEndpoint],
    server: ServerEndpoint,
    schedule: Schedule | None = None,
    *,
    attack: ServerAttack | None = None,
    target: int | None = None,
    to_target: Mapping[Phase | None, Mutation] | None = None,
    max_steps: int = 64,
) -> RoundRecord:
    """Run one round: every frame goes through the endpoints as bytes.

    The server closes a phase by itself when everyone expected answered; when a
    whole batch was delivered and it did not, the runner tells it the deadline
    passed.  ``attack`` rewrites what the server sends to ``target``;
    ``to_target`` sends ``target`` a mutated copy of the server message asking for
    a phase (``None``: an abort notice) before the genuine one.
    """
    sched = schedule or Schedule()
    rec = RoundRecord()

    def holders() -> frozenset[int]:
        """``N(target)``: the owners whose shares the target holds."""
        if target is None or target not in config.clients:
            return frozenset()
        if config.protocol is ProtocolKind.SECAGG:
            return frozenset(all_neighbors(config)[target])
        if isinstance(server, LocalServer) and server.server.graph:
            return frozenset(server.server.graph.get(target, ()))
        c = clients.get(target)
        return frozenset(c.client.neighbors) if isinstance(c, LocalClient) else frozenset()
    gone: set[int] = set()

    def log(direction: str, u: int, data: bytes, note: str) -> None:
        rec.transcript.append((direction, u, data.hex(), note))

    def finish(step: ServerStep) -> bool:
        if step.status == "completed":
            rec.completed, rec.total = True, step.total
            return True
        if step.status == "aborted":
            rec.aborted, rec.abort_reason = True, step.reason
            return True
        return False

    def to_server(u: int, phase: Phase, frames: Sequence[bytes],
                  out: list[tuple[int, bytes]]) -> bool:
        for x in sched.corruptions_of(u, phase):
            bad = mutate(frames[0], x) if frames else b""
            log("to_server", u, bad, f"corrupt:{x.kind.value}")
            st = server.deliver(u, bad)
            if st.status == "refused":
                rec.refused_by_server.append(f"{phase.value}:{u}:{x.kind.value}")
            else:
                rec.accepted_corruptions += 1
            out.extend(st.messages)
            if finish(st):
                return True
        for data in frames:
            log("to_server", u, data, "genuine")
            st = server.deliver(u, data)
            if st.status == "refused":
                rec.errors.append(f"server refused a genuine {phase.value} frame of {u}: "
                                  f"{st.reason}")
            out.extend(st.messages)
            if finish(st):
                return True
        return False

    # round 0: AdvertiseKeys
    outbox: list[tuple[int, bytes]] = []
    done = False
    for u in config.clients:
        if sched.drops_before(u, Phase.ADVERTISE_KEYS):
            gone.add(u)
            continue
        st = clients[u].start()
        rec.client_steps.setdefault(u, []).append(st)
        if done:
            continue
        done = to_server(u, Phase.ADVERTISE_KEYS, st.messages, outbox)
    for _ in range(max_steps):
        if done:
            break
        if not outbox:
            st2 = server.deadline()
            if st2.status == "refused":
                rec.errors.append(f"server refused the deadline: {st2.reason}")
                break
            outbox.extend(st2.messages)
            if finish(st2):
                done = True
            if not outbox:
                continue
        batch, outbox = outbox, []
        replies: list[tuple[int, Phase, tuple[bytes, ...]]] = []
        for r, data in batch:
            log("to_client", r, data, "genuine")
            if r in gone or r not in clients:
                continue
            try:
                asked = asked_phase(data)
            except DecodeError as exc:
                rec.errors.append(f"server sent an undecodable frame to {r}: {exc}")
                continue
            if asked is not None and sched.drops_before(r, asked):
                gone.add(r)
                continue
            frames: list[bytes] = [data]
            hostile: int | None = None
            if attack is not None and r == target:
                frames, hostile = _attack_frames(attack, data, r, holders(), config.threshold)
            if to_target is not None and r == target and asked in to_target:
                frames = [mutate(data, to_target[asked]), data]
                rec.mutated_steps.append(len(rec.client_steps.get(r, [])))
            answer: list[bytes] = []
            for i, f in enumerate(frames):
                if f != data:
                    log("to_client", r, f, "attack")
                st = clients[r].deliver(f)
                rec.client_steps.setdefault(r, []).append(st)
                if hostile == i:
                    rec.attack_delivered += 1
                    if st.messages:
                        rec.attack_answers.append((m.decode(data).TYPE.name, len(st.messages)))
                answer.extend(st.messages)
            if answer and asked is not None:
                replies.append((r, asked, tuple(answer)))
        for u, phase, frames_up in replies:
            if done:
                break
            done = to_server(u, phase, frames_up, outbox)
        if not done and not outbox:
            continue
    rec.graph = _graph_of(config, clients, server)
    return rec


def _graph_of(config: RoundConfig, clients: Mapping[int, ClientEndpoint],
              server: ServerEndpoint) -> dict[int, frozenset[int]] | None:
    """The round's graph as our reference parties learnt it (``None``: unknown)."""
    if config.protocol is ProtocolKind.SECAGG:
        return all_neighbors(config)
    if isinstance(server, LocalServer) and server.server.graph:
        return {u: frozenset(v) for u, v in server.server.graph.items()}
    out: dict[int, set[int]] = {}
    for u, c in clients.items():
        if isinstance(c, LocalClient):
            for v in c.client.neighbors:
                out.setdefault(u, set()).add(v)
                out.setdefault(v, set()).add(u)
    return {u: frozenset(v) for u, v in out.items()} if out else None


def reference_graph(config: RoundConfig, inputs: Mapping[int, UIntArray], seed: bytes,
                    identity: Mapping[int, bytes], schedule: Schedule | None = None,
                    ) -> dict[int, frozenset[int]] | None:
    """The graph a round fixes when client ``u`` draws from
    ``reproducible_rng(seed, "client/<u>")``: replayed with our reference parties."""
    if config.protocol is ProtocolKind.SECAGG:
        return all_neighbors(config)
    rec = play_round(config, reference_clients(config, inputs, seed, identity),
                     LocalServer(config), schedule)
    return rec.graph


def expected_matches(rec: RoundRecord, want: Expected) -> list[str]:
    """Differences between a round and the oracle (empty: conforming)."""
    problems = list(rec.errors)
    if want.completes and not rec.completed:
        problems.append(f"aborted a round that must complete ({rec.abort_reason or 'no result'})")
    if not want.completes and rec.completed:
        problems.append("completed a round that must abort")
    if rec.completed and want.completes and want.total is not None:
        got = rec.total or ()
        if tuple(int(v) for v in want.total.tolist()) != tuple(got):
            problems.append(f"WRONG SUM: got {list(got)[:8]}, expected "
                            f"{want.total.tolist()[:8]}")
    return problems


Rewrite = Callable[[int, bytes], bytes | None]
