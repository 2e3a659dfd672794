"""``secagg serve``: run SecAgg / SecAgg+ rounds as a mutual-TLS server.

Registers clients ``1..N`` (their certificates must carry those ids), runs
``--rounds`` rounds (a fresh session id each; clients reconnect per round),
prints progress per phase on stderr, writes each round's sum (``--out``; with
several rounds ``<stem>-round<r>.npy``) and a JSON report (``--json``).  With
``--clip/--value-bits`` the clients send float updates through the masked
schemes' client half and the server writes the float sum of the survivors'
(clipped, quantized) updates, decoded by
:class:`secagg.runtime.schemes.MaskedServerHalf` — which refuses (no file, the
round counts as aborted) a total that no set of valid encodings can add up to.
Transport: ``protocols/wire/transport.md``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secagg.runtime.schemes import MaskedServerHalf

__all__ = ["add_arguments", "float_half", "parse_hostport", "run"]


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``).

    Raises
    ------
    ParameterError
        If malformed.
    """
    from secagg.errors import ParameterError

    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ParameterError(f"expected HOST:PORT, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        p = int(port)
    except ValueError:
        raise ParameterError(f"bad port in {text!r}") from None
    if not 0 <= p <= 65535:
        raise ParameterError(f"bad port in {text!r}")
    return host, p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="HOST:PORT")
    parser.add_argument("--certs", required=True, metavar="DIR", help="ca.crt, server.crt/.key")
    parser.add_argument("--clients", type=int, required=True, metavar="N", help="ids 1..N")
    parser.add_argument("--length", type=int, required=True, metavar="M")
    parser.add_argument("--protocol", choices=("secagg", "secagg+"), default="secagg+")
    parser.add_argument("--security", choices=("semi-honest", "malicious"), default="semi-honest")
    parser.add_argument(
        "--bits",
        type=int,
        default=None,
        help="modulus exponent (default 32; with --clip: bits_for_sum(value-bits, max-clients))",
    )
    parser.add_argument(
        "--clip", type=float, default=None, help="float updates: clients clip to [-clip, clip]"
    )
    parser.add_argument(
        "--value-bits", type=int, default=None, help="float updates: bits per quantized value"
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=None,
        metavar="N",
        help="float updates: most clients summed (default --clients)",
    )
    parser.add_argument("--neighbors", type=int, default=None, metavar="K")
    parser.add_argument("--threshold", type=int, default=None, metavar="T")
    parser.add_argument("--deadline", type=float, default=30.0, metavar="S", help="per phase")
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="how long the first phase waits for clients to connect and advertise keys",
    )
    parser.add_argument("--idle-timeout", type=float, default=10.0, metavar="S")
    parser.add_argument("--upload-slots", type=int, default=2)
    parser.add_argument(
        "--io-threads",
        type=int,
        default=None,
        metavar="N",
        help="I/O event loops (threads) for TLS handshakes and frames (default min(4, CPUs))",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", required=True, metavar="PATH", help="sum as .npy")
    parser.add_argument("--json", default=None, metavar="PATH", help="report ('-' = stdout)")


def _progress_class() -> Any:
    from secagg.runtime.driver import Listener

    class Progress(Listener):
        """One stderr line per closed phase."""

        def __init__(self, r: int) -> None:
            self.r = r

        def on_phase_end(self, stats: Any) -> None:
            how = " (deadline)" if stats.closed_by_deadline else ""
            print(
                f"round {self.r}: {stats.phase.key}: {stats.answered} of {stats.asked} "
                f"answered in {stats.wall_s:.2f} s{how}",
                file=sys.stderr,
                flush=True,
            )

    return Progress


def _out_path(out: str, r: int, rounds: int) -> str:
    if rounds == 1:
        return out
    stem = out[:-4] if out.endswith(".npy") else out
    return f"{stem}-round{r}.npy"


def float_half(args: argparse.Namespace, protocol: Any) -> MaskedServerHalf | None:
    """The server half that decodes float updates (``None`` without ``--clip``).

    Raises
    ------
    ParameterError
        ``--clip`` without ``--value-bits`` (or the reverse), ``--max-clients``
        alone, a ``--bits`` that cannot hold the sum, or fewer ``--max-clients``
        than ``--clients``.
    """
    from secagg.encoding.quantize import QuantizationSpec
    from secagg.errors import ParameterError
    from secagg.masking.config import ProtocolKind
    from secagg.runtime.schemes import MaskedServerHalf, SchemeKind

    if args.clip is None and args.value_bits is None:
        if args.max_clients is not None:
            raise ParameterError("--max-clients applies to float updates (with --clip)")
        return None
    if args.clip is None or args.value_bits is None:
        raise ParameterError("float updates need both --clip and --value-bits")
    max_clients = args.max_clients if args.max_clients is not None else args.clients
    if max_clients < args.clients:
        raise ParameterError("--max-clients must be at least --clients")
    spec = QuantizationSpec(
        clip=args.clip,
        value_bits=args.value_bits,
        max_clients=max_clients,
        bits=args.bits if args.bits is not None else 0,
    )
    kind = SchemeKind.SECAGG_PLUS if protocol is ProtocolKind.SECAGG_PLUS else SchemeKind.SECAGG
    return MaskedServerHalf(kind=kind, spec=spec, length=args.length)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import resource

    import numpy as np

    from secagg.errors import AbortedError, ParameterError
    from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
    from secagg.net.certs import load_identity_public
    from secagg.net.server import NetServer
    from secagg.net.tls import server_context
    from secagg.runtime.schemes import SumOutcome

    host, port = parse_hostport(args.listen)
    if args.rounds < 1 or args.clients < 2 or args.length < 1:
        raise ParameterError("--rounds >= 1, --clients >= 2 and --length >= 1 required")
    ids = list(range(1, args.clients + 1))
    security = SecurityMode(args.security)
    protocol = ProtocolKind(args.protocol)
    half = float_half(args, protocol)
    bits = half.bits if half is not None else (args.bits if args.bits is not None else 32)
    idkeys = (
        {u: load_identity_public(args.certs, u) for u in ids}
        if security is SecurityMode.MALICIOUS
        else None
    )
    server = NetServer(
        ssl_context=server_context(args.certs),
        host=host,
        port=port,
        idle_timeout=args.idle_timeout,
        upload_slots=args.upload_slots,
        io_threads=args.io_threads,
    )
    reports: list[dict[str, Any]] = []
    failed = 0
    with server:
        h, p = server.address
        print(
            f"secagg serve: listening on {h}:{p} (TLS 1.3, client certificates required)",
            file=sys.stderr,
            flush=True,
        )
        for r in range(1, args.rounds + 1):
            cfg = RoundConfig.create(
                session_id=os.urandom(32),
                clients=ids,
                bits=bits,
                length=args.length,
                protocol=protocol,
                security=security,
                neighbors=args.neighbors,
                threshold=args.threshold,
                graph_seed=os.urandom(32) if protocol is ProtocolKind.SECAGG_PLUS else b"",
                identity_keys=idkeys,
            )

            progress = _progress_class()(r)
            outcome, pool = server.run_round(
                cfg,
                phase_timeout=args.deadline,
                join_timeout=args.join_timeout,
                listener=progress,
            )
            status = f"aborted: {outcome.abort_reason}" if outcome.aborted else "completed"
            path = None
            result = outcome.result
            decoded: dict[str, Any] | None = None
            if result is not None and half is not None:
                try:
                    agg = half.decode(
                        SumOutcome(total=result, survivors=tuple(sorted(outcome.survivors)))
                    )
                except AbortedError as exc:  # not a sum of valid encodings: release nothing
                    result, status = None, f"aborted: {exc}"
                else:
                    result = agg.sum
                    decoded = {"count": agg.count, "step": half.spec.step}
            print(f"round {r}: {status}", file=sys.stderr, flush=True)
            if result is not None:
                path = _out_path(args.out, r, args.rounds)
                np.save(path, result)
            else:
                failed += 1
            reports.append(
                {
                    "round": r,
                    "session_id": cfg.session_id.hex(),
                    "protocol": cfg.protocol.value,
                    "security": cfg.security.value,
                    "clients": cfg.n,
                    "length": cfg.length,
                    "bits": cfg.bits,
                    "neighbors": cfg.degree,
                    "threshold": cfg.threshold,
                    "survivors": list(outcome.survivors),
                    "aborted": result is None,
                    "abort_reason": None if result is not None else status[len("aborted: ") :],
                    "encoding": (
                        None
                        if half is None
                        else {
                            "clip": half.spec.clip,
                            "value_bits": half.spec.value_bits,
                            "max_clients": half.spec.max_clients,
                            "out": "float64 sum of the survivors' quantized updates",
                            **(decoded or {}),
                        }
                    ),
                    "sets": {k: len(v) for k, v in outcome.sets.items()},
                    "phases": {p.key: st.as_dict() for p, st in outcome.phases.items()},
                    "transcript_digest": outcome.transcript_digest,
                    "cut": {str(k): v for k, v in sorted(pool.cut.items())},
                    "client_errors": {str(k): v for k, v in sorted(pool.client_errors.items())},
                    "rejections": {str(k): v for k, v in sorted(outcome.server_rejections.items())},
                    "refused_connections": [list(x) for x in server.refused],
                    "message_bytes_to_server": sum(s.message_bytes_in for s in pool.stats.values()),
                    "tcp_bytes_to_server": sum(s.tcp_bytes_in or 0 for s in pool.stats.values()),
                    "out": path,
                    "wall_s": outcome.wall_s,
                }
            )
    doc = {
        "rounds": reports,
        "server_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    text = json.dumps(doc, indent=2)
    if args.json == "-":
        print(text)
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if failed:
        print(
            f"secagg serve: {failed} of {args.rounds} rounds aborted (no sum revealed)",
            file=sys.stderr,
        )
        return 1
    return 0
