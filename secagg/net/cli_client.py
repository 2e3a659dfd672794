"""``secagg client``: take part in SecAgg / SecAgg+ rounds over mutual TLS.

Reads an integer update (``uint32`` for bit widths up to 32, ``uint64`` above)
from ``--input`` (.npy), connects to ``--server`` with ``client-<ID>.crt`` from
``--certs``, checks the round config against its policy before sending
anything, and exits 0 once the server confirmed the sum; any error (server
gone, round aborted, config refused) exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="HOST:PORT")
    parser.add_argument("--certs", required=True, metavar="DIR", help="ca.crt, client-ID.crt/.key")
    parser.add_argument("--id", type=int, required=True, metavar="ID")
    parser.add_argument("--input", required=True, metavar="PATH", help="integer update (.npy)")
    parser.add_argument("--bits", type=int, default=None, help="expected modulus exponent")
    parser.add_argument("--server-name", default=None, help="name in the server certificate")
    parser.add_argument("--rounds", type=int, default=1, help="rounds to join (same input)")
    parser.add_argument("--min-clients", type=int, default=2, help="refuse smaller rounds")
    parser.add_argument("--require-malicious", action="store_true")
    parser.add_argument("--connect-timeout", type=float, default=30.0)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from secagg.errors import ParameterError
    from secagg.masking.config import SecurityMode
    from secagg.masking.policy import ClientPolicy
    from secagg.net.certs import identity_files, load_identity_private
    from secagg.net.cli_serve import parse_hostport
    from secagg.net.client import run_client_sync
    from secagg.net.handshake import ConfigPolicy
    from secagg.net.tls import client_context
    from secagg.primitives.sign import SigningKey

    host, port = parse_hostport(args.server)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read {args.input}: {exc}") from None
    if x.ndim != 1 or x.dtype not in (np.uint32, np.uint64):
        raise ParameterError("--input must be a 1-D uint32 or uint64 array")
    bits = args.bits if args.bits is not None else (32 if x.dtype == np.uint32 else 64)
    x = np.ascontiguousarray(x)
    policy = ConfigPolicy(
        length=len(x),
        bits=bits,
        rules=ClientPolicy(
            min_clients=args.min_clients,
            security_modes=(
                frozenset({SecurityMode.MALICIOUS})
                if args.require_malicious
                else frozenset(SecurityMode)
            ),
        ),
    )
    identity = None
    if identity_files(args.certs, args.id)[0].exists():
        identity = SigningKey.from_private_bytes(load_identity_private(args.certs, args.id))
    ctx = client_context(args.certs, args.id)

    def progress(point: str) -> None:
        if point == "hello":
            print(
                f"secagg client {args.id}: connected to {host}:{port}; round config accepted",
                file=sys.stderr,
                flush=True,
            )

    for r in range(1, args.rounds + 1):
        # failures before the server's HELLO (server not up yet, round not open yet)
        # are retried inside run_client until --connect-timeout
        out = run_client_sync(
            host=host,
            port=port,
            ssl_context=ctx,
            client_id=args.id,
            input_vector=x,
            policy=policy,
            server_hostname=args.server_name,
            identity_key=identity,
            connect_timeout=args.connect_timeout,
            checkpoint=progress,
        )
        print(
            f"secagg client {args.id}: round {r} ({out.session_id.hex()[:16]}) completed; "
            f"sent {out.message_bytes_sent} message bytes",
            file=sys.stderr,
        )
    return 0
