"""``secagg`` command line.

Each sub-command lives in its own module that exposes
``add_arguments(parser: argparse.ArgumentParser) -> None`` and
``run(args: argparse.Namespace) -> int``.  Those modules must import nothing heavy
(torch, tenseal, transformers) at module level, so ``secagg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from secagg import __version__
from secagg.errors import SecAggError

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("secagg.train.cli", "federated fine-tuning of a tiny causal LM with any aggregator"),
    "simulate": ("secagg.sim.cli", "simulate one aggregation round with dropouts and attacks"),
    "params": ("secagg.masking.params_cli", "choose SecAgg+ neighbors k and threshold t"),
    "bench": ("secagg.bench.cli", "benchmarks, each against a baseline measured in the same run"),
    "certs": ("secagg.net.cli_certs", "a development CA and certificates for serve/client"),
    "serve": ("secagg.net.cli_serve", "run aggregation rounds as a mutual-TLS server"),
    "client": ("secagg.net.cli_client", "take part in aggregation rounds over mutual TLS"),
    "conformance": ("secagg.testing.conformance",
                    "check an outside client or server against the reference (extra: test)"),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Append ``(default: X)`` to every option whose default is a value.

    ``None`` and ``False`` are left out (the help text says what an unset option
    means), and so is a help text that already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not _shows_default(action)
            or not (action.option_strings or action.nargs in ("?", "*"))
            or "default" in text.lower()
            or re.search(rf"\({re.escape(str(default))}[);,:]", text)
        ):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _shows_default(action: argparse.Action) -> bool:
    d = action.default  # identity: 0 and 0.0 are defaults worth showing (0 == False)
    return d is not None and d is not False and d != argparse.SUPPRESS


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _available() -> dict[str, object]:
    mods: dict[str, object] = {}
    for name, (modname, _) in COMMANDS.items():
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("secagg"):
                continue  # sub-command not built yet
            raise
    return mods


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = _Parser(
        prog="secagg",
        description="Privacy-preserving aggregation for federated learning of LLMs.",
        formatter_class=_DefaultsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"secagg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _available()
    for name, mod in mods.items():
        p = sub.add_parser(
            name,
            help=COMMANDS[name][1],
            description=COMMANDS[name][1],
            formatter_class=_DefaultsFormatter,
        )
        mod.add_arguments(p)  # type: ignore[attr-defined]
        for action in p._actions:  # an option without help text still shows its default
            if action.help is None and action.option_strings and _shows_default(action):
                action.help = "(default: %(default)s)"
    return parser, mods


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``secagg``; returns the exit code.

    0 on success; 2 on a usage error or input the library refuses, with exactly one
    line on stderr (``secagg <command>: error: ...``) and no traceback.
    """
    parser, mods = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2, one line printed), --help or --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(mods[args.command].run(args))  # type: ignore[attr-defined]
    except SecAggError as exc:
        # one line, no traceback: the message names what was wrong
        print(f"secagg {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
