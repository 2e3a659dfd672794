"""Network runtime: SecAgg rounds between one server and remote clients over mutual TLS.

asyncio streams + :mod:`ssl` only (no extra dependency); certificates with
``cryptography.x509``.  Normative description: ``protocols/wire/transport.md``.

* :class:`NetServer` / :class:`NetClientPool` — the server's listener and the
  ClientPool the runtime's :class:`~secagg.runtime.driver.RoundDriver` drives
  (:meth:`NetServer.run_round`);
* :func:`run_client` / :func:`run_client_sync` — one client;
* :mod:`secagg.net.certs` — a development CA (``secagg certs``).
"""

from secagg.net.client import ClientOutcome, run_client, run_client_sync
from secagg.net.framing import ConnectionLostError, TransportError
from secagg.net.handshake import ConfigPolicy, decode_config, encode_config
from secagg.net.server import NetClientPool, NetServer
from secagg.net.tls import client_context, server_context

__all__ = [
    "ClientOutcome",
    "ConfigPolicy",
    "ConnectionLostError",
    "NetClientPool",
    "NetServer",
    "TransportError",
    "client_context",
    "decode_config",
    "encode_config",
    "run_client",
    "run_client_sync",
    "server_context",
]
