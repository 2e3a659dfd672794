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
from masking.round_model import COLLECTS, LAST_STEP, NEVER, predict
from masking.round_model import REPLY_ROUND as MODEL_REPLY_ROUND

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.graph import all_neighbors
from secagg.masking.server import Server
from secagg.phase import TERMINAL, Phase
from secagg.primitives.prg import dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import build_config, plaintext_sum

#: reply round of each server message (a client leaving "before round r" never answers
#: it); Abort asks for no reply
REPLY_ROUND = {**MODEL_REPLY_ROUND, m.MessageType.ABORT: 99}
CASES = {"runs": 0, "completed": 0, "aborted": 0, "with_dropouts": 0}


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
        self.nbrs = all_neighbors(self.cfg)
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
        self.errors: list[tuple[int, str, SecAggError]] = []  # (client, where, error)
        self.aborted_in: Phase | None = None
        for u, c in self.clients.items():
            if self.leave[u] >= 1:
                self._to_server(u, c.start())

    # -- driving ----------------------------------------------------------------

    def _to_server(self, u: int, msg: m.Message) -> None:
        self.sent[u].append(msg)
        phase = self.server.phase
        try:
            self.outbox += [(r, m.encode(x)) for r, x in self.server.receive(u, m.encode(msg))]
        except SecAggError as exc:
            self.errors.append((u, "server", exc))
        self._note(phase)

    def _note(self, before: Phase) -> None:
        if self.server.phase is Phase.ABORTED and self.aborted_in is None:
            self.aborted_in = before

    def _done(self) -> bool:
        return (
            self.server.phase
            in (
                Phase.FINALIZING,
                Phase.COMPLETED,
                Phase.ABORTED,
            )
            and not self.outbox
        )

    def _next_round(self) -> int:
        """The reply step of the next server messages (NEVER: nothing left to answer)."""
        if self.outbox:
            return min(NEVER, REPLY_ROUND[m.MessageType(self.outbox[0][1][2])])
        if self.server.phase in COLLECTS:
            return COLLECTS[self.server.phase] + 1  # what its close will ask for
        return NEVER

    @precondition(lambda self: not self._done())
    @rule(who=st.integers(1, 10), when=st.integers(0, 4))
    def leave_before(self, who: int, when: int) -> None:
        """Client ``who`` stops replying before a step that has not been asked yet."""
        first = self._next_round()
        if who in self.leave and first <= LAST_STEP:
            self.leave[who] = min(self.leave[who], min(LAST_STEP, first + when))

    @precondition(lambda self: not self._done())
    @rule()
    def step(self) -> None:
        box, self.outbox = self.outbox, []
        phase = self.server.phase
        if box:
            for u, data in box:
                if self.leave[u] <= REPLY_ROUND[m.MessageType(data[2])]:
                    continue  # gone: it never sees the message
                if self.clients[u].phase in TERMINAL:
                    continue  # a finished client has closed its connection
                try:
                    replies = self.clients[u].receive(data)
                except SecAggError as exc:
                    self.errors.append((u, "client", exc))
                    continue
                for x in replies:
                    self._to_server(u, x)
        if self.server.phase is phase and phase in COLLECTS:
            self.outbox += [(r, m.encode(x)) for r, x in self.server.deadline_passed()]
            self._note(phase)

    @rule()
    def idle(self) -> None:
        """Always applicable, so a finished round is a valid resting state."""

    # -- invariants -------------------------------------------------------------

    @invariant()
    def no_output_before_the_end_and_never_both_shares(self) -> None:
        if self.server.phase is not Phase.COMPLETED:
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
        if s.phase is Phase.FINALIZING:
            s.finalize()
        # SecAgg+ (v2): the graph is fixed by U1's graph-seed reveals; every client
        # that got that far derived the same neighbors as the server
        graph = s.graph if self.cfg.protocol is ProtocolKind.SECAGG_PLUS else self.nbrs
        for u, c in self.clients.items():
            if graph is not None and c.neighbors:
                assert c.neighbors == graph[u], u
        want = predict(self.cfg, graph, self.leave)
        completes, u3 = want.completes, want.u3
        # no error swallowed: the server never raises on an honest client, and a
        # client raises only where the model says it must refuse to go on
        for u, where, exc in self.errors:
            assert where == "client" and u in want.may_raise, (u, where, repr(exc), self.leave)
        assert s.phase is (Phase.COMPLETED if completes else Phase.ABORTED), (
            s.abort_reason,
            self.leave,
        )
        CASES["runs"] += 1  # counted here: every counted run reached an end state
        CASES["completed" if completes else "aborted"] += 1
        CASES["with_dropouts"] += any(r < NEVER for r in self.leave.values())
        if not completes:  # aborted for the reason the model says (so not later)
            assert s.abort_code is want.abort_code, (s.abort_reason, self.leave)
        if completes:
            assert s.survivors == u3
            np.testing.assert_array_equal(s.result, plaintext_sum(self.inputs, u3, self.cfg.bits))
        else:
            assert s.result is None
            if not want.asked_to_unmask:
                assert self.aborted_in is not Phase.UNMASKING
                for msgs in self.sent.values():
                    assert not any(isinstance(x, m.UnmaskingResponse) for x in msgs)


def _run(examples: int) -> dict[str, int]:
    CASES.update(dict.fromkeys(CASES, 0))
    run_state_machine_as_test(
        RoundMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\nstateful rounds: {CASES}")
    assert CASES["runs"] >= examples
    assert CASES["completed"] + CASES["aborted"] == CASES["runs"]
    # both end states are reached often enough that neither path goes untested
    assert CASES["completed"] >= 0.1 * CASES["runs"], CASES
    assert CASES["aborted"] >= 0.1 * CASES["runs"], CASES
    return CASES


def test_stateful_rounds() -> None:
    _run(25)


@pytest.mark.long
def test_stateful_rounds_long() -> None:
    _run(10_500)
