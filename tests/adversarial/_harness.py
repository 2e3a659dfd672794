"""Shared machinery of the attack catalogue: a recorder of every wire message, a
round driver with a malicious-server hook, and the "nothing secret left an honest
client" checks.

Every attack test runs a real round (clients and server state machines, every
message through the codec) via :func:`secagg.sim.run_round`; the malicious
server is a ``server_hook`` that rewrites what the server sends, a malicious
client is a ``client_hook``.  The recorder sees the exact bytes each honest
client put on the wire, which is what the security statements are about.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from secagg.masking import _common as cm
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.graph import all_neighbors
from secagg.primitives import shamir
from secagg.primitives.field import element_to_secret
from secagg.primitives.kex import KeyPair
from secagg.primitives.prg import UIntArray, apply_masks, dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import Phase, RoundReport, build_config, plaintext_sum, run_round

__all__ = [
    "Manual",
    "Recorder",
    "Round",
    "assert_nothing_secret_left",
    "make_round",
    "predicted_graph",
    "recover_input",
    "revealed_shares",
]


@dataclass
class Recorder:
    """Every message on the wire, in order, decoded (the observer of the runtime)."""

    log: list[tuple[str, int, bytes]] = field(default_factory=list)

    def __call__(self, direction: str, client: int, data: bytes) -> None:
        self.log.append((direction, client, bytes(data)))

    def sent_by(self, client: int) -> list[m.Message]:
        """What ``client`` sent to the server (decodable messages only)."""
        out = []
        for d, c, data in self.log:
            if d == "to_server" and c == client:
                out.append(m.decode(data))
        return out

    def received_by(self, client: int) -> list[m.Message]:
        out = []
        for d, c, data in self.log:
            if d == "to_client" and c == client:
                try:
                    out.append(m.decode(data))
                except Exception:  # garbage injected by a hook
                    continue
        return out

    def of_type(self, client: int, cls: type[m.Message]) -> list[m.Message]:
        return [x for x in self.sent_by(client) if isinstance(x, cls)]

    def abort_codes(self) -> set[AbortReason]:
        """The reason codes of every Abort the server sent (compared as values)."""
        out = set()
        for d, _, data in self.log:
            if d == "to_client":
                try:
                    msg = m.decode(data)
                except Exception:  # garbage injected by a hook
                    continue
                if isinstance(msg, m.Abort):
                    out.add(msg.code)
        return out


def predicted_graph(
    config: RoundConfig, rng: InsecureDeterministicRandom, u1: list[int] | None = None
) -> dict[int, frozenset[int]]:
    """The neighbor graph a round will use when every client draws from
    ``rng.child("client/<id>")`` and ``u1`` (default: everyone) advertise keys.

    SecAgg+ (protocol v2): the graph key comes from the graph-seed reveals of U1, the
    4th 32-byte draw of each client (after c, s and b_u; ``protocols/secagg.md`` §3),
    so a test that chooses dropouts by neighborhood before the round replays those
    draws here.
    """
    if config.protocol is ProtocolKind.SECAGG:
        return all_neighbors(config)
    ids = sorted(u1 if u1 is not None else config.clients)
    reveals = {}
    for u in ids:
        src = rng.child(f"client/{u}")
        src.random_bytes(96)  # c, s, b_u
        reveals[u] = src.random_bytes(32)
    sid = config.session_id
    view = [(u, cm.seed_commitment(reveals[u], session_id=sid, client=u)) for u in ids]
    key = cm.graph_key(
        session_id=sid,
        graph_seed=config.graph_seed,
        view=cm.seed_view_digest(session_id=sid, entries=view),
        reveals=list(reveals.items()),
    )
    return all_neighbors(config, seed=key)


@dataclass
class Round:
    """A configured round ready to be run with hooks."""

    config: RoundConfig
    inputs: dict[int, UIntArray]
    identity_keys: Mapping[int, object]
    rng: InsecureDeterministicRandom
    recorder: Recorder = field(default_factory=Recorder)

    @property
    def t(self) -> int:
        return self.config.threshold

    def neighbors(self) -> dict[int, frozenset[int]]:
        """The graph the round will use (SecAgg+: from the clients' seed reveals)."""
        return predicted_graph(self.config, self.rng)

    def run(
        self,
        *,
        server_hook: Callable[[int, m.Message], m.Message | bytes | None] | None = None,
        client_hook: Callable[[int, m.Message], m.Message | bytes | None] | None = None,
        dropouts: Mapping[Phase, Collection[int]] | None = None,
    ) -> RoundReport:
        return run_round(
            self.inputs,
            config=self.config,
            rng=self.rng,
            identity_keys=self.identity_keys,  # type: ignore[arg-type]
            dropouts=dropouts,
            server_hook=server_hook,
            client_hook=client_hook,
            observer=self.recorder,
        )

    def expected_sum(self, ids: Iterable[int]) -> UIntArray:
        return plaintext_sum(self.inputs, ids, self.config.bits)


def make_round(
    n: int,
    *,
    protocol: ProtocolKind = ProtocolKind.SECAGG,
    security: SecurityMode = SecurityMode.SEMI_HONEST,
    neighbors: int | None = None,
    threshold: int | None = None,
    bits: int = 16,
    length: int = 8,
    seed: int = 1,
    first_id: int = 1,
) -> Round:
    """A round of ``n`` clients (ids ``first_id ..``) with deterministic inputs and keys."""
    rng = InsecureDeterministicRandom(seed, warn=False)
    ids = list(range(first_id, first_id + n))
    cfg, idkeys = build_config(
        ids,
        bits=bits,
        length=length,
        protocol=protocol,
        security=security,
        neighbors=neighbors,
        threshold=threshold,
        rng=rng,
    )
    dt = dtype_for_bits(bits)
    inputs = {
        u: (np.arange(length, dtype=np.uint64) * 7 + 1000 * u + 3).astype(dt) & dt((1 << bits) - 1)
        for u in ids
    }
    return Round(config=cfg, inputs=inputs, identity_keys=idkeys, rng=rng)


def revealed_shares(
    rec: Recorder, clients: Iterable[int]
) -> dict[int, dict[m.ShareKind, dict[int, int]]]:
    """``owner -> kind -> {holder: share}`` over every UnmaskingResponse ``clients`` sent."""
    out: dict[int, dict[m.ShareKind, dict[int, int]]] = defaultdict(lambda: defaultdict(dict))
    for u in clients:
        for msg in rec.of_type(u, m.UnmaskingResponse):
            assert isinstance(msg, m.UnmaskingResponse)
            for owner, kind, y in msg.shares:
                out[owner][kind][u] = y
    return out


def assert_nothing_secret_left(
    rec: Recorder,
    honest: Collection[int],
    *,
    t: int,
    corrupt_shares: Mapping[int, Collection[int]] | None = None,
) -> None:
    """The per-client and global secrecy invariants over what honest clients sent.

    * every honest client sent at most one UnmaskingResponse;
    * no honest client revealed both the b-share and the s-share of one owner;
    * no honest client revealed anything after seeing a survivor set smaller than ``t``;
    * for no honest owner ``v`` did the honest holders (plus the corrupt holders in
      ``corrupt_shares[v]``, who hand over both) reveal ``t`` b-shares *and* ``t``
      s-shares — the condition for the server to learn ``x_v``.
    """
    for u in honest:
        responses = rec.of_type(u, m.UnmaskingResponse)
        assert len(responses) <= 1, f"client {u} answered {len(responses)} unmasking requests"
        if responses:
            requests = [x for x in rec.received_by(u) if isinstance(x, m.UnmaskingRequest)]
            assert requests, f"client {u} unmasked without a request"
            # it answered the first request it was shown; that one had >= t survivors
            assert len(requests[0].survivors) >= t
    book = revealed_shares(rec, honest)
    for owner, kinds in book.items():
        b_holders = set(kinds.get(m.ShareKind.SELF_MASK, {}))
        s_holders = set(kinds.get(m.ShareKind.MASK_KEY, {}))
        both = b_holders & s_holders
        assert not both, f"clients {sorted(both)} revealed both shares of {owner}"
        if owner in honest:
            extra = set((corrupt_shares or {}).get(owner, ()))
            assert not (len(b_holders | extra) >= t and len(s_holders | extra) >= t), (
                f"t b-shares and t s-shares of honest client {owner} left honest clients"
            )


def recover_input(
    rec: Recorder,
    config: RoundConfig,
    owner: int,
    b_points: list[tuple[int, int]],
    s_points: list[tuple[int, int]],
) -> UIntArray:
    """What an attacker holding ``t`` b-shares and ``t`` s-shares of ``owner`` computes:
    ``x_owner`` from the recorded ``y_owner``, checked against ``h_owner`` and ``s_owner^PK``."""
    t = config.threshold
    b = element_to_secret(shamir.reconstruct(sorted(b_points)[:t], t))
    s_raw = element_to_secret(shamir.reconstruct(sorted(s_points)[:t], t))
    s_sk = KeyPair.from_private_bytes(s_raw)
    adv = rec.of_type(owner, m.AdvertiseKeys)[0]
    assert isinstance(adv, m.AdvertiseKeys)
    assert cm.self_mask_commitment(b, session_id=config.session_id, client=owner) == adv.commitment
    assert s_sk.public == adv.s_pk
    y = rec.of_type(owner, m.MaskedInput)[0]
    assert isinstance(y, m.MaskedInput)
    request = next(x for x in rec.received_by(owner) if isinstance(x, m.MaskedInputRequest))
    peers = {}
    for x in rec.received_by(owner):
        if isinstance(x, m.KeysBroadcast):
            peers = {e.owner: e for e in x.entries}
    jobs = [(cm.self_mask_seed(b, session_id=config.session_id, client=owner), -1)]
    for v, _ in request.boxes:
        seed = cm.pairwise_seed(
            s_sk.private, peers[v].s_pk, session_id=config.session_id, a=owner, b=v
        )
        jobs.append((seed, -cm.mask_sign(owner, v)))
    x = y.vector.copy()
    apply_masks(x, jobs, config.bits)
    return x


class Manual:
    """A step-by-step driver with direct access to the parties (for attacks that
    need to inject extra messages or read a malicious client's own keys).

    ``outbox`` holds the server's pending ``(recipient, bytes)``; :meth:`deliver`
    hands them to the clients (optionally rewritten) and their replies to the
    server; :meth:`close` passes the server's deadline when it still waits.
    """

    def __init__(self, rnd: Round) -> None:
        from secagg.masking.client import Client
        from secagg.masking.server import Server

        cfg = rnd.config
        self.round = rnd
        self.config = cfg
        self.rec = rnd.recorder
        self.clients = {
            u: Client(
                config=cfg,
                client_id=u,
                input_vector=rnd.inputs[u],
                rng=rnd.rng.child(f"client/{u}"),
                identity_key=rnd.identity_keys.get(u),  # type: ignore[arg-type]
            )
            for u in cfg.clients
        }
        self.server = Server(config=cfg)
        self.outbox: list[tuple[int, bytes]] = []
        self.client_errors: dict[int, Exception] = {}

    def to_server(self, u: int, data: bytes) -> None:
        self.rec("to_server", u, data)
        out = self.server.receive(u, data)
        self.outbox += [(r, m.encode(x)) for r, x in out]

    def start(self, skip: Collection[int] = ()) -> None:
        for u, c in self.clients.items():
            if u not in skip:
                self.to_server(u, m.encode(c.start()))

    def to_client(self, u: int, data: bytes) -> list[bytes]:
        """Deliver ``data`` to client ``u``; returns its encoded replies (not yet sent)."""
        self.rec("to_client", u, data)
        try:
            replies = self.clients[u].receive(data)
        except Exception as exc:  # the typed error is what the tests look at
            self.client_errors[u] = exc
            return []
        return [m.encode(r) for r in replies]

    def deliver(
        self,
        rewrite: Callable[[int, m.Message], m.Message | None] | None = None,
        skip: Collection[int] = (),
    ) -> None:
        """Deliver the whole outbox; replies go to the server; close the phase if needed."""
        box, self.outbox = self.outbox, []
        phase = self.server.phase
        for u, data in box:
            if u in skip:
                continue
            if rewrite is not None:
                msg = rewrite(u, m.decode(data))
                if msg is None:
                    continue
                data = m.encode(msg)
            for reply in self.to_client(u, data):
                try:
                    self.to_server(u, reply)
                except Exception as exc:
                    self.client_errors.setdefault(-u, exc)
        if self.server.phase is phase and self.server.awaiting:
            self.outbox += [(r, m.encode(x)) for r, x in self.server.deadline_passed()]
