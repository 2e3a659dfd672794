"""``secagg`` command line.

Each sub-command lives in its own module that exposes
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``.  Those modules must import nothing heavy
(torch, tenseal, transformers) at module level, so ``secagg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from secagg import __version__
from secagg.errors import SecAggError

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("secagg.train.cli", "federated fine-tuning of a tiny causal LM with any aggregator"),
    "simulate": ("secagg.sim.cli", "simulate one aggregation round with dropouts and attacks"),
    "params": ("secagg.masking.params_cli", "choose SecAgg+ neighbours k and threshold t"),
    "bench": ("secagg.bench.cli", "benchmarks, each against a baseline measured in the same run"),
    "certs": ("secagg.net.cli_certs", "a development CA and certificates for serve/client"),
    "serve": ("secagg.net.cli_serve", "run aggregation rounds as a mutual-TLS server"),
    "client": ("secagg.net.cli_client", "take part in aggregation rounds over mutual TLS"),
}


def _available() -> dict[str, object]:
    mods = {}
    for name, (modname, _) in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("secagg"):
                continue  # sub-command not built yet
            raise
    return mods


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Privacy-preserving aggregation for federated learning of LLMs.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _available()
    for name, mod in mods.items():
        p = sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
        mod.add_arguments(p)  # type: ignore[attr-defined]
    return parser, mods


def main(argv: Sequence[str] | None = None) -> int:
    parser, mods = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(mods[args.command].run(args))  # type: ignore[attr-defined]
    except SecAggError as exc:
        print(f"secagg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
