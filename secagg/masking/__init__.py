"""Pairwise-masked secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+
(Bell et al. 2020) as sans-IO client and server state machines.

Normative description: ``protocols/secagg.md``; wire format:
``protocols/wire/secagg.md``.  Nothing in this package does I/O, sleeps or
starts threads; :mod:`secagg.sim` drives it in-process.
"""

from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode, default_parameters
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase

__all__ = [
    "AbortReason",
    "Client",
    "ClientPolicy",
    "Phase",
    "ProtocolKind",
    "RoundConfig",
    "SecurityMode",
    "Server",
    "default_parameters",
]
