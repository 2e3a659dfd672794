"""``secagg params``: print the SecAgg+ neighborhood size ``k`` and threshold ``t``.

Example::

    secagg params --clients 1000,10000 --clients 1000000 --dropout 0.33 --json -

Imports only the standard library and :mod:`secagg.masking.params` (numpy).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from secagg.errors import ParameterError
from secagg.masking.params import GraphParameters, ThreatModel, choose_parameters

__all__ = ["add_arguments", "run"]


def _client_counts(text: str) -> list[int]:
    out = []
    for raw in text.split(","):
        part = raw.strip()  # int() and float() take digit groups: 10_000, 1_000.0
        try:
            out.append(int(part))
            continue
        except ValueError:
            pass
        try:
            value = float(part)  # accept 1e6
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of clients: {raw!r}") from None
        if not (math.isfinite(value) and value.is_integer()):
            raise argparse.ArgumentTypeError(f"not a whole number of clients: {raw!r}")
        out.append(int(value))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``secagg params`` options on ``parser``."""
    parser.add_argument(
        "--clients",
        type=_client_counts,
        action="append",
        metavar="N[,N...]",
        help="number of clients n (repeatable or comma list; 1e6 accepted); "
        "default 100,1000,10000,100000,1000000",
    )
    parser.add_argument(
        "--corrupt", type=float, default=0.05, help="fraction of corrupt clients (alpha)"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.33, help="fraction of clients that drop (delta)"
    )
    parser.add_argument(
        "--security-bits", type=float, default=40.0, help="sigma: P[leak] <= 2^-sigma"
    )
    parser.add_argument(
        "--correctness-bits", type=float, default=20.0, help="eta: P[round fails] <= 2^-eta"
    )
    parser.add_argument(
        "--mode",
        choices=[m.value for m in ThreatModel],
        default=ThreatModel.SEMI_HONEST.value,
        help="threat model (default semi-honest)",
    )
    parser.add_argument(
        "--json", metavar="PATH", default=None, help="also write the results as JSON (- = stdout)"
    )


def _as_json(p: GraphParameters) -> dict[str, object]:
    def log2(value: float) -> float | None:
        return None if math.isinf(value) else round(value, 6)

    return {
        "n": p.n,
        "k": p.k,
        "t": p.t,
        "mode": p.mode.value,
        "complete": p.complete,
        "max_corrupt": p.max_corrupt,
        "max_dropouts": p.max_dropouts,
        # null = probability exactly 0 (complete graph or impossible event)
        "log2_security_failure": log2(p.log2_security_failure),
        "log2_correctness_failure": log2(p.log2_correctness_failure),
    }


def _fmt(value: float) -> str:
    return "0" if math.isinf(value) else f"2^{value:.2f}"


def run(args: argparse.Namespace) -> int:
    """Compute and print the parameters; return the exit status.

    Raises
    ------
    ParameterError
        If an option is out of range or no parameters exist (the CLI prints it).
    """
    counts = [
        n for group in (args.clients or [[100, 1000, 10_000, 100_000, 1_000_000]]) for n in group
    ]
    mode = ThreatModel(args.mode)
    results = [
        choose_parameters(
            n=n,
            corrupt_fraction=args.corrupt,
            dropout_fraction=args.dropout,
            security_bits=args.security_bits,
            correctness_bits=args.correctness_bits,
            mode=mode,
        )
        for n in counts
    ]
    to_stdout_json = args.json == "-"
    table = sys.stderr if to_stdout_json else sys.stdout
    print(
        f"# alpha={args.corrupt:g} delta={args.dropout:g} sigma={args.security_bits:g} "
        f"eta={args.correctness_bits:g} mode={mode.value}",
        file=table,
    )
    print(
        f"{'n':>10} {'k':>7} {'t':>7}  {'P[security fails]':>18} {'P[round fails]':>15}  graph",
        file=table,
    )
    for p in results:
        graph = "complete" if p.complete else "harary"
        print(
            f"{p.n:>10} {p.k:>7} {p.t:>7}  {_fmt(p.log2_security_failure):>18} "
            f"{_fmt(p.log2_correctness_failure):>15}  {graph}",
            file=table,
        )
    if args.json is not None:
        payload = {
            "corrupt_fraction": args.corrupt,
            "dropout_fraction": args.dropout,
            "security_bits": args.security_bits,
            "correctness_bits": args.correctness_bits,
            "mode": mode.value,
            "results": [_as_json(p) for p in results],
        }
        text = json.dumps(payload, indent=2) + "\n"
        if to_stdout_json:
            sys.stdout.write(text)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError as exc:
                raise ParameterError(f"cannot write {args.json}: {exc.strerror}") from None
    return 0
