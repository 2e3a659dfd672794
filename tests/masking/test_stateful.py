"""Hypothesis state machine: clients drop at arbitrary points of a round.

After every step: if the server completed, its output equals the plaintext sum
over U3; if it aborted, it output nothing, and if it aborted before unmasking no
client sent an unmasking share.  At all times no owner has both kinds of share
revealed.

Teardown drives every round to its end (deliveries, deadlines, finalize), so each
run ends COMPLETED or ABORTED, and the outcome model (``round_model.predict``,
from who stopped replying before which round) must say which — with the exact
survivor set.  Every typed error is recorded, none swallowed: the server never
raises on an honest client's message, and a client may raise only where the model
says an honest client must refuse (too few neighbors in a set).  The runs per end
state are counted and floored, so a change that makes rounds abort early fails.
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

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.graph import all_neighbors
from secagg.phase import Phase

from .masking_harness import Harness
from .round_model import (
    CLIENT_ROUND,
    END_STATES,
    NEVER,
    client_done,
    predict,
    reply_round,
    server_idle_step,
)

CASES = {"runs": 0, "completed": 0, "aborted": 0}
#: floor on the share of runs that complete (the issue's "≥ 30%")
MIN_COMPLETED = 0.30


class DropoutMachine(RuleBasedStateMachine):
    h: Harness

    @initialize(
        n=st.integers(3, 7),
        protocol=st.sampled_from(list(ProtocolKind)),
        security=st.sampled_from(list(SecurityMode)),
        seed=st.integers(0, 3),
        t_extra=st.integers(0, 2),
        schedule=st.dictionaries(st.integers(1, 7), st.integers(0, 5), max_size=2),
        drops=st.integers(0, 2),
    )
    def setup(
        self,
        n: int,
        protocol: ProtocolKind,
        security: SecurityMode,
        seed: int,
        t_extra: int,
        schedule: dict[int, int],
        drops: int,
    ) -> None:
        k = max(2, n - 2) if protocol is ProtocolKind.SECAGG_PLUS else n - 1
        t = min(k, k // 2 + 1 + t_extra)
        self.h = Harness.make(
            n, protocol=protocol, security=security, neighbors=k, threshold=t, seed=seed
        )
        clients = self.h.config.clients
        self.nbrs = all_neighbors(self.h.config)
        self.drops_left = drops  # how many more clients the ``drop`` rule may take
        self.gone: set[int] = {u for u, r in schedule.items() if r == 0 and u in clients}
        # client -> the step (1..5, round_model) before whose reply it leaves
        self.leaves_at = {u: r for u, r in schedule.items() if r > 0}
        # what actually happened: the round before which each client stopped replying
        self.leave = {u: 0 if u in self.gone else NEVER for u in clients}
        self.aborted_from: Phase | None = None
        self.errors: list[tuple[int, str, SecAggError]] = []  # (client, where, error)
        self.to_server: list[tuple[int, m.Message]] = [
            (u, self.h.clients[u].start()) for u in clients if u not in self.gone
        ]
        self.to_clients: list[tuple[int, m.Message]] = []

    def _finished(self) -> bool:
        return self.h.server.phase in END_STATES and not (self.to_clients or self.to_server)

    def _gone_before(self, u: int, rnd: int | None) -> bool:
        """Whether ``u`` is gone when asked for round ``rnd`` (recorded in ``leave``)."""
        if rnd is not None and rnd >= self.leaves_at.get(u, 99):
            self.gone.add(u)
        if u in self.gone and rnd is not None:
            self.leave[u] = min(self.leave[u], rnd)
        return u in self.gone

    @precondition(lambda self: not self._finished() and self.drops_left > 0)
    @rule(who=st.integers(1, 7))
    def drop(self, who: int) -> None:
        if who in self.h.config.clients and who not in self.gone:
            self.gone.add(who)
            self.drops_left -= 1

    @precondition(lambda self: not self._finished())
    @rule()
    def step(self) -> None:
        h = self.h
        before = h.server.phase
        self._step()
        if h.server.phase is Phase.ABORTED and before is not Phase.ABORTED:
            self.aborted_from = before

    def _step(self) -> None:
        h = self.h
        if self.to_server:
            batch, self.to_server = self.to_server, []
            for u, msg in batch:
                if self._gone_before(u, CLIENT_ROUND[msg.TYPE]):
                    continue  # the message is lost with the client
                h.sent.setdefault(u, []).append(msg)
                try:
                    self.to_clients += h.server.receive(u, m.encode(msg))
                except SecAggError as exc:
                    self.errors.append((u, "server", exc))
        elif self.to_clients:
            batch, self.to_clients = self.to_clients, []
            for u, msg in batch:
                if self._gone_before(u, reply_round(msg.TYPE)) or client_done(h.clients[u]):
                    continue
                try:
                    self.to_server += [(u, r) for r in h.clients[u].receive(m.encode(msg))]
                except SecAggError as exc:
                    self.errors.append((u, "client", exc))
        else:
            self.to_clients += server_idle_step(h.server)

    @rule()
    def observe(self) -> None:
        """Always applicable, so a finished round is a valid resting state."""

    @invariant()
    def sum_is_exact_or_nothing(self) -> None:
        s = self.h.server
        if s.phase is Phase.COMPLETED:
            assert s.result is not None
            np.testing.assert_array_equal(s.result, self.h.expected_sum(s.survivors))
            assert len(s.survivors) > self.h.config.threshold
        else:
            assert s.result is None
        if (
            s.phase is Phase.ABORTED
            and self.aborted_from is not Phase.UNMASKING
        ):
            # a clean abort: nobody was asked to unmask, so nobody revealed a share
            for u in self.h.config.clients:
                assert m.MessageType.UNMASKING_RESPONSE not in self.h.sent_types(u)

    @invariant()
    def never_both_shares(self) -> None:
        kinds: dict[int, set[m.ShareKind]] = {}
        for msgs in self.h.sent.values():
            for x in msgs:
                if isinstance(x, m.UnmaskingResponse):
                    for owner, kind, _ in x.shares:
                        kinds.setdefault(owner, set()).add(kind)
        assert all(len(k) == 1 for k in kinds.values())

    def teardown(self) -> None:
        # drive to the end: deliveries, deadlines, finalize — no more drops
        for _ in range(60):
            if self._finished():
                break
            self.step()
        s = self.h.server
        assert s.phase in END_STATES, f"round stuck in {s.phase.value}"
        self.sum_is_exact_or_nothing()
        # SecAgg+ (v2): the graph is fixed by U1's graph-seed reveals; every client
        # that got that far derived the same neighbors as the server
        graph = s.graph if self.h.config.protocol is ProtocolKind.SECAGG_PLUS else self.nbrs
        for u, c in self.h.clients.items():
            if graph is not None and c.neighbors:
                assert c.neighbors == graph[u], u
        want = predict(self.h.config, graph, self.leave)
        assert s.phase is (Phase.COMPLETED if want.completes else Phase.ABORTED), (
            s.abort_reason,
            self.leave,
        )
        if want.completes:
            assert s.survivors == want.u3
        else:  # aborted for the reason the model says (so not later)
            assert s.abort_code is want.abort_code, (s.abort_reason, self.leave)
            if not want.asked_to_unmask:
                assert self.aborted_from is not Phase.UNMASKING
        for u, where, exc in self.errors:
            assert where == "client" and u in want.may_raise, (u, where, repr(exc), self.leave)
        CASES["runs"] += 1  # counted here: every counted run reached an end state
        CASES["completed" if want.completes else "aborted"] += 1


def _run(examples: int, steps: int) -> dict[str, int]:
    CASES.update(dict.fromkeys(CASES, 0))
    run_state_machine_as_test(
        DropoutMachine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # the share of completed runs is asserted below: a fixed example sequence,
            # so the assertion is about the model and the code, not about the draw
            derandomize=True,
            database=None,
        ),
    )
    print(f"\ndropout machine: {CASES}")
    assert CASES["runs"] >= examples
    assert CASES["completed"] >= MIN_COMPLETED * CASES["runs"], CASES
    assert CASES["aborted"] >= 0.05 * CASES["runs"], CASES  # the abort paths run too
    return CASES


def test_dropouts() -> None:
    _run(40, 20)


@pytest.mark.long
def test_dropouts_long() -> None:
    _run(2000, 40)
