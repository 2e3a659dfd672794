"""The command line on bad input: exit code 2, one line on stderr, no traceback.

One row per bad invocation (issue 18).  Usage errors (argparse) and the library's
typed errors (:class:`~secagg.errors.SecAggError`) read the same way, and a run
that is refused writes nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from secagg.cli import main

ROOT = Path(__file__).resolve().parents[2]
MISSING_DIR = "/nonexistent-secagg-dir/r.json"
SMALL = ["--clients", "4", "--length", "3", "--seed", "1"]

#: (argv, a fragment the one stderr line must contain)
BAD: list[tuple[list[str], str]] = [
    (["bogus"], "invalid choice"),
    (["simulate", "--clients", "0"], "--clients"),
    (["simulate", "--clients", "1"], "--clients"),
    (["simulate", "--clients", "many"], "--clients"),
    (["simulate", "--length", "0"], "--length"),
    (["simulate", "--protocol", "he-ckks", "--clients", "0"], "--clients"),
    (["simulate", "--protocol", "he-bfv", "--length", "0"], "--length"),
    (["simulate", "--workers", "0"], "--workers"),
    (["simulate", "--workers", "-1"], "--workers"),
    (["simulate", "--dropout", "1"], "--dropout"),
    (["simulate", "--dropout", "-0.1"], "--dropout"),
    (["simulate", "--dropout", "nan"], "--dropout"),
    (["simulate", "--neighbors", "0"], "--neighbors"),
    (["simulate", "--bits", "0"], "--bits"),
    (["simulate", "--dp", "ddgauss", "--epsilon", "0"], "--epsilon"),
    (["simulate", "--dp", "ddgauss", "--delta", "1"], "--delta"),
    (["simulate", "--dp", "ddgauss", "--sampling-rate", "0"], "--sampling-rate"),
    (["simulate", "--dp", "ddgauss", "--l2-clip", "-1"], "--l2-clip"),
    (["simulate", "--rounds", "0"], "--rounds"),
    (["simulate", "--engine", "net", "--crash", "1.5"], "--crash"),
    (["simulate", "--crash", "0.1"], "--engine net"),
    (["simulate", "--phase-timeout", "0"], "--phase-timeout"),
    (["simulate", "--protocol", "rot13"], "invalid choice"),
    (["simulate", "--no-such-flag"], "unrecognized"),
    (["simulate", *SMALL, "--json", MISSING_DIR], "does not exist"),
    (["simulate", "--protocol", "he-ckks", *SMALL, "--json", MISSING_DIR], "does not exist"),
    (["simulate", "--dp", "ddgauss", *SMALL, "--json", MISSING_DIR], "does not exist"),
    (["simulate", *SMALL, "--json", "{tmp}"], "is a directory"),
    (["simulate", "--ray-address", "127.0.0.1:1"], "--engine ray"),
    (["simulate", "--protocol", "he-ckks", "--neighbors", "3"], "--neighbors"),
    (["simulate", "--protocol", "he-bfv", "--security", "malicious"], "--security"),
    (["simulate", "--protocol", "secagg", "--preset", "ckks-4096"], "--preset"),
    (["simulate", "--protocol", "he-bfv", "--dp", "ddgauss"], "--dp"),
    (["simulate", "--protocol", "he-ckks", "--bits", "20", *SMALL], "--bits"),
    (["simulate", "--protocol", "secagg", "--clients", "5", "--threshold", "9"], "threshold"),
    (["params", "--corrupt", "2"], "corrupt"),
    (["params", "--dropout", "abc"], "--dropout"),
    (["bench", "nope"], "invalid choice"),
]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


@pytest.mark.parametrize(("argv", "fragment"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_invocation_is_one_line_and_exit_2(argv, fragment, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc = _run(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert rc == 2, captured.err
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and lines[0].startswith("secagg")
    assert fragment in lines[0], lines[0]
    assert captured.out == ""
    assert not os.path.exists(MISSING_DIR)


def test_the_installed_entry_point_exits_2_with_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "simulate", "--workers", "-1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and r.stdout == ""


def test_help_of_every_subcommand_shows_the_defaults(monkeypatch):
    from secagg.cli import build_parser

    monkeypatch.setenv("COLUMNS", "400")  # no line breaks inside a default

    parser, _ = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    checked = 0
    for name, sub in subparsers.items():
        if name == "train":  # dp-train's flags: their help names defaults as "(10)"
            continue
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            default = action.default
            if default in (None, False, argparse.SUPPRESS) or not action.option_strings:
                continue
            shown = f"default: {default}" in text or f"default {default}" in text
            assert shown, f"secagg {name} --help does not show {action.dest}={default!r}"
            checked += 1
    assert checked >= 15
