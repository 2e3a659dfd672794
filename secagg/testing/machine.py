"""A ready hypothesis state machine for *your* SecAgg driver or transport.

Subclass :class:`SecureSumMachine`, implement :meth:`~SecureSumMachine.run_round`
to run one round through your system (your network code, your Flower app, your
queue-based glue) and return an :class:`Outcome`; hypothesis then generates
rounds within your :class:`~secagg.masking.policy.ClientPolicy`, drops clients
before any phase, injects refused bytes, and checks after every round:

* the sum is exact (``Σ_{u∈U3} x_u mod 2^b`` over the survivors the oracle
  :func:`secagg.testing.predict` computes) or the round aborted cleanly — never a
  wrong sum, never an output from an aborted round;
* a round the oracle says must complete completes (liveness; switch off with
  ``check_liveness = False`` if your transport may lose messages on its own);
* mutated copies of client messages (``schedule.corruptions``) change nothing.

Needs the ``test`` extra.  Example: ``examples/property_test_my_transport.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from secagg._extras import require
from secagg.masking.policy import ClientPolicy
from secagg.phase import ROUND_PHASES
from secagg.primitives.prg import UIntArray
from secagg.testing.rounds import Expected, Schedule, predict, reference_graph

require("hypothesis", "test")
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule  # noqa: E402

from secagg.testing.strategies import RoundCase, inputs_for, mutations, round_configs  # noqa: E402

__all__ = ["Outcome", "SecureSumMachine"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What your system reports for one round.

    Attributes
    ----------
    completed:
        True if the server produced a sum.
    total:
        The sum (``None`` unless completed).
    survivors:
        The survivor set ``U3`` your server reported (``None``: not checked).
    graph:
        SecAgg+ (protocol v2): ``N(u)`` as the seed reveals fixed it (``None``: the
        machine recomputes it, which assumes client ``u`` drew its randomness from
        ``reproducible_rng(case.seed, "client/<u>")``, as ``RngRecipe(case.seed)``
        does in :mod:`secagg.runtime`).
    """

    completed: bool
    total: UIntArray | None = None
    survivors: tuple[int, ...] | None = None
    graph: dict[int, frozenset[int]] | None = None


class SecureSumMachine(RuleBasedStateMachine):
    """Rounds with dropouts and refused bytes against :meth:`run_round`.

    Class attributes to override: ``policy`` (the configurations to generate;
    default: any small round), ``max_clients`` (default 6), ``check_liveness``
    (default True), ``max_corruptions`` (mutated client frames per round, default
    2; 0 if your transport cannot inject them).
    """

    policy: ClassVar[ClientPolicy | None] = None
    max_clients: ClassVar[int] = 6
    check_liveness: ClassVar[bool] = True
    max_corruptions: ClassVar[int] = 2

    def __init__(self) -> None:
        super().__init__()
        self.case: RoundCase | None = None
        self.rounds_run = 0
        self.last: tuple[Expected, Outcome] | None = None

    def run_round(self, case: RoundCase) -> Outcome:
        """Run ``case`` through your system and report what happened.

        ``case.config`` is the round (send ``case.config.to_bytes()`` to your
        clients), ``case.identity`` the clients' Ed25519 identity seeds in
        malicious mode, ``case.inputs`` their vectors.  ``case.schedule.drops``
        maps a client to the first phase it must miss (it sends nothing from then
        on); for each ``(phase, client, mutation)`` in
        ``case.schedule.corruptions`` deliver ``secagg.testing.mutate(frame,
        mutation)`` to the server as if from ``client`` right before that
        client's genuine frame of ``phase``.
        """
        raise NotImplementedError("subclass SecureSumMachine and implement run_round")

    # -- rules --------------------------------------------------------------------------

    @initialize(data=st.data())
    def new_round(self, data: Any) -> None:
        cfg, identity = data.draw(round_configs(self.policy, max_clients=self.max_clients))
        self.case = RoundCase(config=cfg, identity=identity, inputs=data.draw(inputs_for(cfg)),
                              schedule=Schedule(),
                              seed=data.draw(st.binary(min_size=32, max_size=32)))

    @rule(data=st.data())
    def drop(self, data: Any) -> None:
        """A client leaves before some phase (the earliest drop wins)."""
        c = self._case()
        u = data.draw(st.sampled_from(list(c.config.clients)))
        p = data.draw(st.sampled_from(list(ROUND_PHASES)))
        drops = dict(c.schedule.drops)
        if u not in drops or p.order < drops[u].order:
            drops[u] = p
        self._set(Schedule(drops=drops, corruptions=c.schedule.corruptions))

    @rule(data=st.data())
    def corrupt(self, data: Any) -> None:
        """A mutated copy of a client frame reaches the server first."""
        c = self._case()
        if len(c.schedule.corruptions) >= self.max_corruptions:
            return
        x = (data.draw(st.sampled_from(list(ROUND_PHASES))),
             data.draw(st.sampled_from(list(c.config.clients))),
             data.draw(mutations(must_refuse=True)))
        self._set(Schedule(drops=c.schedule.drops, corruptions=(*c.schedule.corruptions, x)))

    @rule()
    def run(self) -> None:
        """Run the round as scheduled and compare with the oracle."""
        c = self._case()
        got = self.run_round(c)
        graph = got.graph or reference_graph(c.config, c.inputs, c.seed, c.identity,
                                             c.schedule)
        want = predict(c.config, c.inputs, c.schedule, graph=graph)
        self.rounds_run += 1
        self.last = (want, got)
        self._check(c, want, got)
        self._set(Schedule())  # the next run is a fresh round of the same config

    @invariant()
    def never_a_wrong_sum(self) -> None:
        if self.last is not None:
            _, got = self.last
            assert got.completed or got.total is None, "an aborted round returned a sum"

    def teardown(self) -> None:
        if self.case is not None and self.rounds_run == 0:
            self.run()

    # -- helpers ------------------------------------------------------------------------

    def _case(self) -> RoundCase:
        assert self.case is not None
        return self.case

    def _set(self, schedule: Schedule) -> None:
        c = self._case()
        self.case = RoundCase(config=c.config, identity=c.identity, inputs=c.inputs,
                              schedule=schedule, seed=c.seed)

    def _check(self, c: RoundCase, want: Expected, got: Outcome) -> None:
        info = c.describe()
        if got.completed:
            assert want.completes, f"completed a round that must abort: {info}"
            assert got.total is not None, "completed without a sum"
            assert want.total is not None
            assert np.array_equal(np.asarray(got.total), want.total), (
                f"WRONG SUM {np.asarray(got.total).tolist()} != {want.total.tolist()}: {info}")
            if got.survivors is not None:
                assert tuple(got.survivors) == want.survivors, (
                    f"survivors {got.survivors} != {want.survivors}: {info}")
        else:
            assert got.total is None, "an aborted round returned a sum"
            if self.check_liveness:
                assert not want.completes, f"aborted a round that must complete: {info}"
