"""Property-based testing for systems built on secagg (needs the ``test`` extra for
the hypothesis parts).

* :mod:`secagg.testing.rounds` (no hypothesis) — :class:`Schedule` (dropouts by
  phase, corrupted frames), :class:`Mutation` / :func:`mutate` (byte-level changes
  of any message), :class:`ServerAttack` (malicious-server actions), the oracle
  :func:`predict` (must the round complete, with which survivors and exact sum),
  and :func:`play_round`, a round runner over byte-level party endpoints;
* :mod:`secagg.testing.strategies` — hypothesis strategies: configurations within a
  :class:`~secagg.masking.policy.ClientPolicy`, inputs, schedules, attacks, mutations;
* :mod:`secagg.testing.machine` — :class:`SecureSumMachine`, a ready
  ``RuleBasedStateMachine``: implement ``run_round`` for your transport and get
  "exact sum or clean abort, never a wrong sum, refused bytes change nothing";
* :mod:`secagg.testing.conformance` — ``secagg conformance --client/--server CMD``
  for outside implementations (``protocols/conformance.md``);
* :mod:`secagg.testing.reference_party` — our client and server behind that protocol.

The hypothesis-based names are loaded on first use, so ``import secagg.testing``
works on a core-only install and fails with a message naming the extra only when a
strategy or the machine is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from secagg.testing.rounds import (
    Expected,
    Mutation,
    MutationKind,
    RoundRecord,
    Schedule,
    ServerAttack,
    exact_sum,
    mutate,
    play_round,
    predict,
)

__all__ = [
    "Expected",
    "Mutation",
    "MutationKind",
    "Outcome",
    "RoundCase",
    "RoundRecord",
    "Schedule",
    "SecureSumMachine",
    "ServerAttack",
    "exact_sum",
    "mutate",
    "play_round",
    "predict",
    "strategies",
]

_LAZY = {
    "Outcome": "secagg.testing.machine",
    "SecureSumMachine": "secagg.testing.machine",
    "RoundCase": "secagg.testing.strategies",
}


def __getattr__(name: str) -> Any:
    if name == "strategies":
        return importlib.import_module("secagg.testing.strategies")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'secagg.testing' has no attribute {name!r}")
