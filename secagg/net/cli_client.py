"""``secagg client``: take part in SecAgg / SecAgg+ rounds over mutual TLS.

Reads an update from ``--input`` (.npy): integers in Z_{2^bits} (``uint32`` for
bit widths up to 32, ``uint64`` above), or floats, which go through the masked
schemes' client half (:class:`secagg.runtime.schemes.MaskedClientHalf`: clip to
``[-clip, clip]``, stochastic rounding to ``--value-bits`` levels, words of
``bits_for_sum(value_bits, max_clients)`` bits — the encoding ``secagg train``
uses; the server decodes the sum with the same ``--clip/--value-bits/--max-clients``).
Connects to ``--server`` with ``client-<ID>.crt`` from ``--certs``, checks the
round config against its policy before sending anything, and exits 0 once the
server confirmed the sum; any error (server gone, round aborted, config refused)
exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secagg.runtime.schemes import MaskedClientHalf

__all__ = ["add_arguments", "float_half", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="HOST:PORT")
    parser.add_argument("--certs", required=True, metavar="DIR", help="ca.crt, client-ID.crt/.key")
    parser.add_argument("--id", type=int, required=True, metavar="ID")
    parser.add_argument(
        "--input", required=True, metavar="PATH", help="update (.npy): uint32/uint64 or float"
    )
    parser.add_argument("--bits", type=int, default=None, help="expected modulus exponent")
    parser.add_argument(
        "--clip", type=float, default=None, help="float input: clip to [-clip, clip]"
    )
    parser.add_argument(
        "--value-bits", type=int, default=None, help="float input: bits per quantized value"
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=None,
        help="float input: most clients ever summed (the server's --clients); sets the bit width",
    )
    parser.add_argument("--server-name", default=None, help="name in the server certificate")
    parser.add_argument("--rounds", type=int, default=1, help="rounds to join (same input)")
    parser.add_argument("--min-clients", type=int, default=2, help="refuse smaller rounds")
    parser.add_argument("--require-malicious", action="store_true")
    parser.add_argument("--connect-timeout", type=float, default=30.0)


def float_half(args: argparse.Namespace, x: Any) -> MaskedClientHalf | None:
    """The client half that encodes a float ``x``; ``None`` for integer input.

    The encoding is the same for SecAgg and SecAgg+ (the half's ``encode`` is the
    quantization alone), so the half is built for SecAgg+ whatever the round runs.

    Raises
    ------
    ParameterError
        Float input without ``--clip/--value-bits/--max-clients``, those options
        with integer input, a ``--bits`` that cannot hold the sum, or an update
        that is not a finite 1-D vector.
    """
    import numpy as np

    from secagg.encoding.quantize import QuantizationSpec
    from secagg.errors import ParameterError
    from secagg.runtime.schemes import MaskedClientHalf, SchemeKind

    opts = {"--clip": args.clip, "--value-bits": args.value_bits, "--max-clients": args.max_clients}
    given = [k for k, v in opts.items() if v is not None]
    if not np.issubdtype(x.dtype, np.floating):
        if given:
            raise ParameterError(f"{', '.join(given)} apply to float input only")
        return None
    missing = [k for k, v in opts.items() if v is None]
    if missing:
        raise ParameterError(f"float input needs {', '.join(missing)} (the server's encoding)")
    if x.ndim != 1 or len(x) < 1:
        raise ParameterError("--input must be a 1-D vector")
    spec = QuantizationSpec(
        clip=args.clip,
        value_bits=args.value_bits,
        max_clients=args.max_clients,
        bits=args.bits if args.bits is not None else 0,
    )
    half = MaskedClientHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=len(x))
    half.encode(x)  # refuse NaN/inf (ParameterError) before connecting
    return half


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from secagg.errors import ParameterError
    from secagg.masking.config import SecurityMode
    from secagg.masking.params import MAX_CLIENTS
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
    half = float_half(args, x)
    if half is None:
        if x.ndim != 1 or x.dtype not in (np.uint32, np.uint64):
            raise ParameterError("--input must be a 1-D uint32 or uint64 array, or floats")
        bits = args.bits if args.bits is not None else (32 if x.dtype == np.uint32 else 64)
        x = np.ascontiguousarray(x)
        max_clients = None
    else:
        bits, max_clients = half.bits, half.spec.max_clients
    policy = ConfigPolicy(
        length=len(x),
        bits=bits,
        rules=ClientPolicy(
            min_clients=args.min_clients,
            max_clients=MAX_CLIENTS if max_clients is None else max_clients,
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
        # float input: a fresh stochastic rounding (OS randomness) every round
        vec = x if half is None else half.encode(x)
        # failures before the server's HELLO (server not up yet, round not open yet)
        # are retried inside run_client until --connect-timeout
        out = run_client_sync(
            host=host,
            port=port,
            ssl_context=ctx,
            client_id=args.id,
            input_vector=vec,
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
