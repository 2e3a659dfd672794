"""LightSecAgg (So et al., MLSys 2022): one-shot dropout recovery by coded masks.

A sans-IO core (``protocols/lightsecagg.md``): :class:`Client`, :class:`Server`,
:class:`LightSecAggConfig`, the wire messages and GF(2^31 - 1) arithmetic.  It
imports only :mod:`secagg.primitives`, :mod:`secagg.encoding`, :mod:`secagg.errors` and
:mod:`secagg.phase` (its phases are the project's one :class:`Phase`).

I/O, as for every party of ``secagg``: bytes in, message objects out.  The parties
take the bytes that arrived and return messages that carry their routing
(``sender``, ``recipient``; the server is party ``0``) and their wire form
(``to_bytes()``, the same bytes as :func:`encode`; :func:`decode` parses).  The
server returns ``(recipient, message)`` pairs, like the masking server.
"""

from secagg.lightsecagg.client import Client
from secagg.lightsecagg.config import LightSecAggConfig, default_lightsecagg_parameters, max_bits
from secagg.lightsecagg.messages import Message, MessageType, decode, encode
from secagg.lightsecagg.server import Server
from secagg.phase import Phase

__all__ = [
    "Client",
    "LightSecAggConfig",
    "Message",
    "MessageType",
    "Phase",
    "Server",
    "decode",
    "default_lightsecagg_parameters",
    "encode",
    "max_bits",
]
