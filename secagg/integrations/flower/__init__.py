"""Drop-in replacements for Flower's SecAgg+ (``flwr[simulation]`` 1.42), backed by secagg.

Swap one import on each side and nothing else::

    # client                                        # server
    from secagg.integrations.flower import (        from secagg.integrations.flower import (
        secaggplus_mod,                                 SecAggPlusWorkflow,
    )                                               )

Importing this package without ``flwr`` raises :class:`~secagg.errors.MissingExtraError`
naming the extra: ``pip install 'secagg[flower]'``.
"""

from __future__ import annotations

from secagg.integrations.flower import _flwr  # noqa: F401  (raises MissingExtraError first)
from secagg.integrations.flower._wire import PROTOCOL, ProtocolMismatchError
from secagg.integrations.flower.grid import InProcessGrid
from secagg.integrations.flower.mod import SecAggPlusMod, secaggplus_mod
from secagg.integrations.flower.workflow import DistributedDP, RoundReport, SecAggPlusWorkflow

__all__ = [
    "PROTOCOL",
    "DistributedDP",
    "InProcessGrid",
    "ProtocolMismatchError",
    "RoundReport",
    "SecAggPlusMod",
    "SecAggPlusWorkflow",
    "secaggplus_mod",
]
