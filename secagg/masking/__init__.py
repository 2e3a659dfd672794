"""Pairwise-masked secure aggregation: SecAgg (Bonawitz et al. 2017) and SecAgg+
(Bell et al. 2020) as sans-IO client and server state machines.

Normative description: ``protocols/secagg.md``; wire format:
``protocols/wire/secagg.md``.  Nothing in this package does I/O, sleeps or
starts threads; :mod:`secagg.runtime` drives it on any engine.

I/O (the same for every party of ``secagg``): **bytes in, message objects out**.
``Client.receive(data)`` and ``Server.receive(sender, data)`` take the bytes that
arrived; ``Client.start()``, ``Client.receive`` and ``Server.deadline_passed()``
return the messages to send.  Every message carries its routing (``sender``,
``recipient``; the server is party ``0``) and its wire form (``to_bytes()``, the
same bytes as :func:`encode`); :func:`decode` parses bytes into a message and
:func:`peek_type` reads only the header.  The server returns ``(recipient,
message)`` pairs, the recipient being the message's own, so a transport routes a
fan-out without opening the messages (and encodes them lazily).
"""

from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode, default_parameters
from secagg.masking.messages import Message, MessageType, decode, encode, peek_type
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase

__all__ = [
    "AbortReason",
    "Client",
    "ClientPolicy",
    "Message",
    "MessageType",
    "Phase",
    "ProtocolKind",
    "RoundConfig",
    "SecurityMode",
    "Server",
    "decode",
    "default_parameters",
    "encode",
    "peek_type",
]
