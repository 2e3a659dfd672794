"""``secagg bench [prg|mask|server|round|scale|keys|he|dp|net|flower|all] [--quick] [--json PATH]``.

Each benchmark lives in ``secagg.bench.<name>`` with ``run(quick: bool) -> dict``
(and optionally ``markdown(result) -> str``).  A benchmark whose module does not
exist yet is reported as "not built yet"; ``all`` runs every one that exists, and
skips (one line each, ``not_installed`` in the JSON) those whose optional extra is
not installed.  ``--quick`` makes no timing verdicts (``meets_target`` and the
throughput bars are ``null``).
This module imports nothing heavy: benchmarks are imported only when run.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Any

from secagg.bench import BENCHMARKS
from secagg.errors import MissingExtraError, ParameterError

__all__ = ["add_arguments", "load", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``bench`` arguments."""
    parser.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[*BENCHMARKS, "all"],
        help="which benchmark to run (default: all, skipping those whose extra is not installed)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (seconds, for CI and smoke tests)"
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="also write the results as JSON to PATH ('-' = stdout; the tables then go to stderr)",
    )


def load(name: str) -> ModuleType | None:
    """The module ``secagg.bench.<name>``, or ``None`` if it is not built yet.

    Raises
    ------
    ParameterError
        If ``name`` is not a known benchmark.
    """
    if name not in BENCHMARKS:
        raise ParameterError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    modname = f"secagg.bench.{name}"
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name == modname:
            return None
        raise


def _render(name: str, mod: ModuleType, result: dict[str, Any]) -> str:
    render = getattr(mod, "markdown", None)
    if callable(render):
        return str(render(result))
    from secagg.bench.common import markdown_table

    rows = [[k, v] for k, v in result.items() if isinstance(v, (int, float, str, bool))]
    return f"## {name}\n\n" + markdown_table(["key", "value"], rows)


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmark(s); print tables, optionally write JSON.

    Raises
    ------
    ParameterError
        If a named benchmark is not built yet.
    """
    from secagg.bench.common import machine_info, write_json

    which: str = args.which
    quick: bool = bool(args.quick)
    json_path: str | None = args.json
    human = sys.stderr if json_path == "-" else sys.stdout

    names = list(BENCHMARKS) if which == "all" else [which]
    results: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    not_installed: dict[str, str] = {}
    for name in names:
        try:
            mod = load(name)
            if mod is None:
                if which != "all":
                    raise ParameterError(
                        f"benchmark {name!r} is not built yet (no module secagg.bench.{name})"
                    )
                skipped.append(name)
                continue
            result = mod.run(quick)
        except MissingExtraError as exc:
            if which != "all":
                raise  # the one benchmark asked for cannot run: say why (exit 2)
            # ``all`` runs what this install can run and says what it skipped
            not_installed[name] = str(exc)
            print(f"{name}: skipped, {exc}", file=human)
            continue
        results[name] = result
        print(_render(name, mod, result), file=human)
        print(file=human)
    if skipped:
        print(f"not built yet: {', '.join(skipped)}", file=human)

    if json_path is not None:
        if which == "all":
            doc: dict[str, Any] = {
                "benchmarks": results,
                "not_built": skipped,
                "not_installed": not_installed,
                "quick": quick,
                "machine": machine_info(),
            }
        else:
            doc = results[which]
        write_json(doc, json_path)
    return 0
