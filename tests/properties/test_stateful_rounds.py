"""Stateful hypothesis run: generated ``(n, k, t, mode, inputs, dropout pattern,
phase)`` cases; after every protocol step the round is either on track or cleanly
aborted, and at the end the outcome equals an independent model's prediction.

The model (``protocols/secagg.md`` §4) computes ``U1..U5`` from who leaves before
which phase and the graph, and says whether each threshold check passes:

* completed  ⇔  every check passes, and then ``survivors == U3`` and the output is
  ``Σ_{u∈U3} x_u mod 2^b`` exactly;
* aborted  ⇒  no output, and if the abort came before the unmasking round nobody
  sent an unmasking share.

So the test fails on a wrong sum, on an unnecessary abort (liveness), on an abort
that should have happened, and on a survivor set the protocol does not define.
Invariants after every step: no client ever revealed both shares of one owner;
no output before the end.  Default suite: a small bound.  ``-m long``: >= 10^4
cases (each machine run is one case).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.graph import all_neighbours
from secagg.masking.phase import Phase
from secagg.masking.server import Server, ServerPhase
from secagg.primitives.prg import dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import build_config, plaintext_sum

#: reply round of each server message (a client leaving "before round r" never answers it)
REPLY_ROUND = {
    m.MessageType.SEED_REQUEST: 0,  # v2, SecAgg+: part of round 0 (every U1 client reveals)
    m.MessageType.KEYS_BROADCAST: 1,
    m.MessageType.MASKED_INPUT_REQUEST: 2,
    m.MessageType.CONSISTENCY_REQUEST: 3,
    m.MessageType.UNMASKING_REQUEST: 4,
    m.MessageType.ABORT: 99,
}
NEVER = 5
CASES = {"runs": 0, "completed": 0, "aborted": 0, "with_dropouts": 0}


def model(
    clients: tuple[int, ...],
    nbrs: dict[int, frozenset[int]],
    t: int,
    t_sig: int,
    malicious: bool,
    leave: dict[int, int],
) -> tuple[bool, tuple[int, ...]]:
    """``(completes, U3)`` predicted from ``leave[u]`` = the round before which u leaves
    (0: never advertises, 1..4: before ShareKeys/MaskedInput/Consistency/Unmasking)."""
    u1 = {u for u in clients if leave[u] >= 1}
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
    if malicious and len(u4) < t_sig:
        return False, ()
    u5 = {u for u in u4 if leave[u] >= NEVER}
    if any(len(nbrs[v] & u5) < t for v in u3 | dropped):
        return False, ()
    return True, tuple(sorted(u3))


class RoundMachine(RuleBasedStateMachine):
    """One round, driven phase by phase; clients may leave before any phase."""

    @initialize(
        n=st.integers(3, 10),
        protocol=st.sampled_from(list(ProtocolKind)),
        security=st.sampled_from(list(SecurityMode)),
        k_pick=st.integers(0, 20),
        t_pick=st.integers(0, 20),
        bits=st.sampled_from([1, 8, 16, 31, 32, 33, 64]),
        seed=st.integers(0, 2**16),
        values=st.data(),
        never_start=st.sets(st.integers(1, 10), max_size=3),
    )
    def setup(  # type: ignore[no-untyped-def]
        self, n, protocol, security, k_pick, t_pick, bits, seed, values, never_start
    ) -> None:
        CASES["runs"] += 1
        k = n - 1 if protocol is ProtocolKind.SECAGG else 2 + k_pick % (n - 2)
        lo = k // 2 + 1 if security is SecurityMode.MALICIOUS else 2
        t = lo + t_pick % (k - lo + 1)
        rng = InsecureDeterministicRandom(seed, warn=False)
        self.cfg, self.idkeys = build_config(
            range(1, n + 1),
            bits=bits,
            length=3,
            protocol=protocol,
            security=security,
            neighbors=k,
            threshold=t,
            rng=rng,
        )
        dt = dtype_for_bits(bits)
        top = (1 << bits) - 1
        elem = st.one_of(st.just(0), st.just(top), st.integers(0, top))
        self.inputs = {
            u: np.array(values.draw(st.lists(elem, min_size=3, max_size=3)), dtype=dt)
            for u in self.cfg.clients
        }
        self.nbrs = all_neighbours(self.cfg)
        self.clients = {
            u: Client(
                config=self.cfg,
                client_id=u,
                input_vector=self.inputs[u],
                rng=rng.child(f"client/{u}"),
                identity_key=self.idkeys.get(u),
            )
            for u in self.cfg.clients
        }
        self.server = Server(config=self.cfg)
        self.leave = {u: (0 if u in never_start else NEVER) for u in self.cfg.clients}
        self.sent: dict[int, list[m.Message]] = {u: [] for u in self.cfg.clients}
        self.outbox: list[tuple[int, bytes]] = []
        self.aborted_in: ServerPhase | None = None
        for u, c in self.clients.items():
            if self.leave[u] >= 1:
                self._to_server(u, c.start())

    # -- driving ----------------------------------------------------------------

    def _to_server(self, u: int, msg: m.Message) -> None:
        self.sent[u].append(msg)
        phase = self.server.phase
        with contextlib.suppress(SecAggError):
            self.outbox += [(r, m.encode(x)) for r, x in self.server.receive(u, m.encode(msg))]
        self._note(phase)

    def _note(self, before: ServerPhase) -> None:
        if self.server.phase is ServerPhase.ABORTED and self.aborted_in is None:
            self.aborted_in = before

    def _done(self) -> bool:
        return (
            self.server.phase
            in (
                ServerPhase.FINALIZING,
                ServerPhase.COMPLETED,
                ServerPhase.ABORTED,
            )
            and not self.outbox
        )

    def _next_round(self) -> int:
        """The reply round of the next server messages (5: nothing left to answer)."""
        if self.outbox:
            return min(5, REPLY_ROUND[m.MessageType(self.outbox[0][1][2])])
        return {
            ServerPhase.COLLECT_KEYS: 1,
            Phase.GRAPH_SEED: 1,
            ServerPhase.COLLECT_SHARES: 2,
            ServerPhase.COLLECT_MASKED: 3,
            ServerPhase.COLLECT_SIGNATURES: 4,
        }.get(self.server.phase, 5)

    @precondition(lambda self: not self._done())
    @rule(who=st.integers(1, 10), when=st.integers(0, 3))
    def leave_before(self, who: int, when: int) -> None:
        """Client ``who`` stops replying before a round that has not been asked yet."""
        first = self._next_round()
        if who in self.leave and first <= 4:
            self.leave[who] = min(self.leave[who], min(4, first + when))

    @precondition(lambda self: not self._done())
    @rule()
    def step(self) -> None:
        box, self.outbox = self.outbox, []
        phase = self.server.phase
        if box:
            for u, data in box:
                if self.leave[u] <= REPLY_ROUND[m.MessageType(data[2])]:
                    continue  # gone: it never sees the message
                try:
                    replies = self.clients[u].receive(data)
                except SecAggError:
                    continue
                for x in replies:
                    self._to_server(u, x)
        if self.server.phase is phase and self.server.collecting:
            self.outbox += [(r, m.encode(x)) for r, x in self.server.deadline_passed()]
            self._note(phase)

    @rule()
    def idle(self) -> None:
        """Always applicable, so a finished round is a valid resting state."""

    # -- invariants -------------------------------------------------------------

    @invariant()
    def no_output_before_the_end_and_never_both_shares(self) -> None:
        if self.server.phase is not ServerPhase.COMPLETED:
            assert self.server.result is None
        seen: dict[int, set[m.ShareKind]] = {}
        for msgs in self.sent.values():
            assert sum(isinstance(x, m.UnmaskingResponse) for x in msgs) <= 1
            for x in msgs:
                if isinstance(x, m.UnmaskingResponse):
                    for owner, kind, _ in x.shares:
                        seen.setdefault(owner, set()).add(kind)
        assert all(len(kinds) == 1 for kinds in seen.values())

    def teardown(self) -> None:
        for _ in range(20):
            if self._done():
                break
            self.step()
        s = self.server
        if s.phase is ServerPhase.FINALIZING:
            s.finalize()
        completes, u3 = model(
            self.cfg.clients,
            self.server.graph or self.nbrs,  # v2: SecAgg+ graph fixed by the seed reveals
            self.cfg.threshold,
            self.cfg.signature_threshold,
            self.cfg.security is SecurityMode.MALICIOUS,
            self.leave,
        )
        assert s.phase is (ServerPhase.COMPLETED if completes else ServerPhase.ABORTED), (
            s.abort_reason,
            self.leave,
        )
        CASES["completed" if completes else "aborted"] += 1
        CASES["with_dropouts"] += any(r < NEVER for r in self.leave.values())
        if completes:
            assert s.survivors == u3
            np.testing.assert_array_equal(s.result, plaintext_sum(self.inputs, u3, self.cfg.bits))
        else:
            assert s.result is None
            if self.aborted_in is not ServerPhase.COLLECT_UNMASKING:
                for msgs in self.sent.values():
                    assert not any(isinstance(x, m.UnmaskingResponse) for x in msgs)


TestRoundMachine = RoundMachine.TestCase
TestRoundMachine.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.long
def test_stateful_rounds_long() -> None:
    CASES.update(dict.fromkeys(CASES, 0))
    run_state_machine_as_test(
        RoundMachine,
        settings=settings(
            max_examples=10_500,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\nstateful rounds: {CASES}")
    assert CASES["runs"] >= 10_000
