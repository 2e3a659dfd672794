"""LightSecAgg (So et al., MLSys 2022): one-shot dropout recovery by coded masks.

A sans-IO core (``protocols/lightsecagg.md``): :class:`Client`, :class:`Server`,
:class:`LightSecAggConfig`, the wire messages and GF(2^31 - 1) arithmetic.  It
imports only :mod:`secagg.primitives`, :mod:`secagg.encoding`, :mod:`secagg.errors` and
:mod:`secagg.phase` (its phases are the project's one :class:`Phase`).
"""

from secagg.lightsecagg.client import Client
from secagg.lightsecagg.config import LightSecAggConfig, default_lightsecagg_parameters, max_bits
from secagg.lightsecagg.server import Server
from secagg.phase import Phase

__all__ = [
    "Client",
    "LightSecAggConfig",
    "Phase",
    "Server",
    "default_lightsecagg_parameters",
    "max_bits",
]
