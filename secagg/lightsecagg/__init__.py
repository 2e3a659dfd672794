"""LightSecAgg (So et al., MLSys 2022): one-shot dropout recovery by coded masks.

A sans-IO core (``protocols/lightsecagg.md``): :class:`Client`, :class:`Server`,
:class:`LightSecAggConfig`, the wire messages and GF(2^31 - 1) arithmetic.  It
imports only :mod:`secagg.primitives`, :mod:`secagg.encoding` and :mod:`secagg.errors`.
"""

from secagg.lightsecagg.client import Client, ClientPhase
from secagg.lightsecagg.config import LightSecAggConfig, default_lightsecagg_parameters, max_bits
from secagg.lightsecagg.server import Server, ServerPhase

__all__ = [
    "Client",
    "ClientPhase",
    "LightSecAggConfig",
    "Server",
    "ServerPhase",
    "default_lightsecagg_parameters",
    "max_bits",
]
