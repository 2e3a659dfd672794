"""secagg.testing used as a user would: SecureSumMachine with secagg.runtime plugged
in (in-process and process pools), a transport with a bug it must catch, and the
layout-free mutations every strict decoder refuses."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HypPhase
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from secagg.errors import DecodeError, SecAggError
from secagg.masking import messages as m
from secagg.masking.config import SecurityMode
from secagg.phase import Phase
from secagg.runtime.api import make_pool
from secagg.runtime.driver import Hooks, MaskingServerParty, RoundDriver
from secagg.runtime.parties import ArrayInputs, MaskingClientFactory, RngRecipe
from secagg.testing import Outcome, RoundCase, SecureSumMachine, mutate, strategies
from secagg.testing.rounds import LocalServer, play_round, reference_clients

SETTINGS = settings(max_examples=6, stateful_step_count=5, deadline=None,
                    suppress_health_check=list(HealthCheck))


class _CorruptingServer(MaskingServerParty):
    """The runtime's server party; mutated copies of a client frame arrive first."""

    def __init__(self, case: RoundCase) -> None:
        super().__init__(case.config)
        self.case = case
        self.accepted = 0

    def receive(self, sender: int, data: bytes | memoryview) -> Any:
        phase = self.collecting
        if phase is not None:
            for x in self.case.schedule.corruptions_of(sender, phase):
                try:
                    super().receive(sender, mutate(bytes(data), x))
                except SecAggError:
                    continue
                self.accepted += 1
        return super().receive(sender, data)


def run_on_runtime(case: RoundCase, engine: str) -> Outcome:
    cfg = case.config
    factory = MaskingClientFactory(config=cfg, inputs=ArrayInputs(case.inputs),
                                   rng=RngRecipe(case.seed), identity=case.identity)
    drops = {u: (Phase.UNMASKING if p is Phase.CONSISTENCY
                 and cfg.security is SecurityMode.SEMI_HONEST else p)
             for u, p in case.schedule.drops.items()}
    server = _CorruptingServer(case)
    pool = make_pool(engine, factory, workers=2 if engine == "processes" else 1)
    try:
        out = RoundDriver(server, pool, clients=cfg.clients,
                          hooks=Hooks(drop_before=drops), digest=False).run()
    finally:
        pool.close()
    assert server.accepted == 0, "the server accepted a malformed frame"
    return Outcome(completed=not out.aborted, total=None if out.aborted else out.result,
                   survivors=out.survivors if not out.aborted else None)


class InProcessRuntime(SecureSumMachine):
    max_clients = 6

    def run_round(self, case: RoundCase) -> Outcome:
        return run_on_runtime(case, "inprocess")


class ProcessRuntime(SecureSumMachine):
    max_clients = 5

    def run_round(self, case: RoundCase) -> Outcome:
        return run_on_runtime(case, "processes")


def test_runtime_inprocess_is_exact_or_aborts() -> None:
    run_state_machine_as_test(InProcessRuntime, settings=SETTINGS)


def test_runtime_processes_is_exact_or_aborts() -> None:
    run_state_machine_as_test(ProcessRuntime, settings=settings(
        SETTINGS, max_examples=3, stateful_step_count=3))


@pytest.mark.long
def test_runtime_machines_long() -> None:
    big = settings(SETTINGS, max_examples=300, stateful_step_count=8)
    run_state_machine_as_test(InProcessRuntime, settings=big)
    run_state_machine_as_test(ProcessRuntime, settings=settings(big, max_examples=60))


class OffByOneTransport(SecureSumMachine):
    """A transport that loses a carry when it copies the sum back: caught."""

    broken_clients: ClassVar[int] = 0

    def run_round(self, case: RoundCase) -> Outcome:
        out = run_on_runtime(case, "inprocess")
        if out.completed and out.total is not None:
            bad = out.total.copy()
            bad[0] ^= 1
            return Outcome(completed=True, total=bad, survivors=out.survivors)
        return out


class EagerAbortTransport(SecureSumMachine):
    """A transport that gives up whenever anyone drops: caught by liveness."""

    def run_round(self, case: RoundCase) -> Outcome:
        if case.schedule.drops:
            return Outcome(completed=False)
        return run_on_runtime(case, "inprocess")


@pytest.mark.parametrize("machine", [OffByOneTransport, EagerAbortTransport])
def test_a_wrong_transport_is_caught(machine: type[SecureSumMachine]) -> None:
    with pytest.raises(AssertionError, match=r"WRONG SUM|must complete"):
        # no shrinking: the point is that the machine finds it, not the smallest case
        run_state_machine_as_test(machine, settings=settings(
            SETTINGS, max_examples=100, phases=[HypPhase.generate], derandomize=True))


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=strategies.rounds(max_drops=0), mutation=strategies.mutations(must_refuse=True),
       which=st.integers(0, 1 << 10))
def test_must_refuse_mutations_are_refused_by_our_codec(case: RoundCase, mutation: Any,
                                                         which: int) -> None:
    cfg = case.config
    rec = play_round(cfg, reference_clients(cfg, case.inputs, case.seed, case.identity),
                     LocalServer(cfg))
    frames = [bytes.fromhex(h) for _, _, h, _ in rec.transcript]
    data = frames[which % len(frames)]
    bad = mutate(data, mutation)
    assert bad != data
    with pytest.raises(DecodeError):
        m.decode(bad)


def test_import_names_the_extra_lazily() -> None:
    import secagg.testing as t

    assert t.SecureSumMachine is SecureSumMachine
    with pytest.raises(AttributeError):
        _ = t.no_such_name
    assert t.strategies is strategies
