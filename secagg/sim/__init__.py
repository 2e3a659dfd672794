"""Simulations on top of :mod:`secagg.runtime`: dropout choice, message-level
attacks, measured reports and the ``secagg simulate`` CLI.

:func:`secure_sum`, :func:`secure_sum_floats` and :func:`build_config` are the
runtime's (re-exported here for simulations); :func:`run_round` runs one round
with attack hooks and returns a :class:`RoundReport`.
"""

from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.sim.runtime import (
    FloatSumResult,
    Phase,
    RoundReport,
    SumResult,
    build_config,
    choose_dropouts,
    plaintext_sum,
    run_round,
    secure_sum,
    secure_sum_floats,
)

__all__ = [
    "FloatSumResult",
    "Phase",
    "ProtocolKind",
    "RoundReport",
    "SecurityMode",
    "SumResult",
    "build_config",
    "choose_dropouts",
    "plaintext_sum",
    "run_round",
    "secure_sum",
    "secure_sum_floats",
]
