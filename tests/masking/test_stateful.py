"""Hypothesis state machine: clients drop at arbitrary points of a round.

After every step: if the server completed, its output equals the plaintext sum
over U3; if it aborted, it output nothing, and if it aborted before unmasking no
client sent an unmasking share.  At all times no owner has both kinds of share
revealed.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.masking.server import ServerPhase

from .masking_harness import COLLECTING, REPLY_ROUND, Harness


class DropoutMachine(RuleBasedStateMachine):
    h: Harness

    @initialize(
        n=st.integers(3, 7),
        protocol=st.sampled_from(list(ProtocolKind)),
        security=st.sampled_from(list(SecurityMode)),
        seed=st.integers(0, 3),
        t_extra=st.integers(0, 2),
        schedule=st.dictionaries(st.integers(1, 7), st.integers(0, 4), max_size=4),
    )
    def setup(
        self,
        n: int,
        protocol: ProtocolKind,
        security: SecurityMode,
        seed: int,
        t_extra: int,
        schedule: dict[int, int],
    ) -> None:
        k = max(2, n - 2) if protocol is ProtocolKind.SECAGG_PLUS else n - 1
        t = min(k, k // 2 + 1 + t_extra)
        self.h = Harness.make(
            n, protocol=protocol, security=security, neighbors=k, threshold=t, seed=seed
        )
        self.gone: set[int] = {u for u, r in schedule.items() if r == 0}
        # client -> the round (1..4) before whose reply it leaves
        self.leaves_at = {u: r for u, r in schedule.items() if r > 0}
        self.aborted_from: ServerPhase | None = None
        self.to_server: list[tuple[int, m.Message]] = [
            (u, self.h.clients[u].start()) for u in self.h.config.clients if u not in self.gone
        ]
        self.to_clients: list[tuple[int, m.Message]] = []

    def _finished(self) -> bool:
        return self.h.server.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED) and not (
            self.to_clients or self.to_server
        )

    @precondition(lambda self: not self._finished())
    @rule(who=st.integers(1, 7))
    def drop(self, who: int) -> None:
        if who in self.h.config.clients:
            self.gone.add(who)

    @precondition(lambda self: not self._finished())
    @rule()
    def step(self) -> None:
        h = self.h
        before = h.server.phase
        self._step()
        if h.server.phase is ServerPhase.ABORTED and before is not ServerPhase.ABORTED:
            self.aborted_from = before

    def _step(self) -> None:
        h = self.h
        if self.to_server:
            batch, self.to_server = self.to_server, []
            for u, msg in batch:
                if u in self.gone:
                    continue  # the message is lost with the client
                h.sent.setdefault(u, []).append(msg)
                with contextlib.suppress(SecAggError):
                    self.to_clients += h.server.receive(u, m.encode(msg))
        elif self.to_clients:
            batch, self.to_clients = self.to_clients, []
            for u, msg in batch:
                if REPLY_ROUND[msg.TYPE] >= self.leaves_at.get(u, 99):
                    self.gone.add(u)
                if u in self.gone:
                    continue
                with contextlib.suppress(SecAggError):
                    self.to_server += [(u, r) for r in h.clients[u].receive(m.encode(msg))]
        elif h.server.phase in COLLECTING:
            self.to_clients += h.server.deadline_passed()
        elif h.server.phase is ServerPhase.FINALIZING:
            h.server.finalize()

    @rule()
    def observe(self) -> None:
        """Always applicable, so a finished round is a valid resting state."""

    @invariant()
    def sum_is_exact_or_nothing(self) -> None:
        s = self.h.server
        if s.phase is ServerPhase.COMPLETED:
            assert s.result is not None
            np.testing.assert_array_equal(s.result, self.h.expected_sum(s.survivors))
            assert len(s.survivors) > self.h.config.threshold
        else:
            assert s.result is None
        if (
            s.phase is ServerPhase.ABORTED
            and self.aborted_from is not ServerPhase.COLLECT_UNMASKING
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
        # drive to the end: a finished round is always COMPLETED or ABORTED
        for _ in range(40):
            if self._finished():
                break
            self.step()
        assert self.h.server.phase in (ServerPhase.COMPLETED, ServerPhase.ABORTED)
        self.sum_is_exact_or_nothing()


TestDropouts = DropoutMachine.TestCase
TestDropouts.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)


@pytest.mark.long
def test_dropouts_long() -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(
        DropoutMachine, settings=settings(max_examples=2000, stateful_step_count=40, deadline=None)
    )
