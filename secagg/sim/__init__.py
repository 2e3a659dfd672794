"""In-process runtime for the masking protocols: :func:`secure_sum`,
:func:`secure_sum_floats` and the lower-level :func:`run_round` with dropout
injection, attack hooks and measurements."""

from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.sim.runtime import (
    DropPhase,
    FloatSumResult,
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
    "DropPhase",
    "FloatSumResult",
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
