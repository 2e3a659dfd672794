"""Every protocol's ``secagg simulate`` JSON matches the one schema, and the text
summary says what a person needs (issue 18, items 10-11)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from secagg.cli import main
from secagg.errors import ParameterError
from secagg.sim.report import COMMON, FAMILY, SCHEMA, check_report, humanize_bytes

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--clients", "10", "--length", "40", "--seed", "4"]

CASES: dict[str, list[str]] = {
    "secagg+": ["--protocol", "secagg+", "--dropout", "0.2"],
    "secagg-malicious": ["--protocol", "secagg", "--security", "malicious"],
    "secagg+-processes": ["--protocol", "secagg+", "--engine", "processes", "--workers", "2"],
    "secagg+-aborted": ["--protocol", "secagg+", "--neighbors", "2", "--threshold", "2",
                        "--dropout", "0.5"],
    "he-ckks": ["--protocol", "he-ckks", "--dropout", "0.2"],
    "he-bfv": ["--protocol", "he-bfv", "--drop-before", "unmasking", "--dropout", "0.1"],
    "dp-ddgauss": ["--dp", "ddgauss", "--epsilon", "3", "--dropout", "0.1"],
    "dp-skellam": ["--dp", "skellam", "--protocol", "secagg", "--epsilon", "3"],
    "net": ["--engine", "net", "--clients", "5", "--workers", "2"],
    "dp-aborted": ["--dp", "ddgauss", "--epsilon", "3", "--neighbors", "2", "--threshold", "2",
                   "--dropout", "0.5"],
}


def _json(extra: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["simulate", *SMALL, *extra, "--json", "-"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", list(CASES))
def test_every_protocol_and_engine_matches_the_schema(case, capsys):
    if case.startswith("he-"):
        pytest.importorskip("tenseal")
    r = _json(CASES[case], capsys)
    check_report(r)
    assert r["schema"] == SCHEMA
    assert isinstance(r["dropped"], int)
    assert (r["dropped_before"] is None) == (r["dropped"] == 0)
    if r["aborted"]:
        assert r["survivors"] == 0 and r["correct"] is None and r["exact"] is None
    elif r["family"] == "dp":
        assert r["exact"] is None and r["correct"] is None
        assert r["neighbors"] is not None and r["threshold"] is not None
    else:
        assert r["correct"] is True
    if r["family"] == "he":
        assert r["neighbors"] is None and r["security"] is None
        assert r["exact"] is (True if r["protocol"] == "he-bfv" else None)


def test_the_checker_refuses_what_the_schema_does_not_say(capsys):
    r = _json(CASES["secagg+"], capsys)
    for broken, what in (
        ({**r, "extra": 1}, "unknown key extra"),
        ({k: v for k, v in r.items() if k != "survivors"}, "missing survivors"),
        ({**r, "dropped": [3, 7]}, "dropped is list"),
        ({**r, "aborted": 0}, "aborted is int"),
        ({**r, "clients": True}, "clients is bool"),
        ({**r, "schema": "secagg.simulate/0"}, "schema is"),
        ({**r, "family": "he"}, "missing preset"),
    ):
        with pytest.raises(ParameterError, match=re.escape(what)):
            check_report(broken)


def test_the_schema_is_documented_key_by_key():
    doc = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert SCHEMA in doc
    for key in [*COMMON, *(k for fam in FAMILY.values() for k in fam)]:
        assert f"`{key}`" in doc, f"benchmarks/README.md does not document {key}"


def test_humanized_bytes():
    assert humanize_bytes(863) == "863 B"
    assert humanize_bytes(52_632.7) == "51.4 KiB"
    assert humanize_bytes(3 * 2**20) == "3.0 MiB"


@pytest.mark.parametrize(
    ("case", "want"),
    [
        ("secagg+", ["survivors: 8 of 10", "result: exact", "B/client up", "CPU: clients"]),
        ("secagg+-aborted", ["ABORTED, nothing released"]),
        ("dp-aborted", ["ABORTED, nothing released", "n/a"]),
        ("he-ckks", ["approximate (CKKS)", "within the bound", "KiB/client up"]),
        ("he-bfv", ["result: exact", "survivors: 10 of 10"]),
        ("dp-ddgauss", ["noisy mean (DP)", "epsilon", "delta", "survivors: 9 of 10"]),
    ],
)
def test_text_summary_says_what_was_summed_and_how_it_went(case, want, capsys):
    if case.startswith("he-"):
        pytest.importorskip("tenseal")
    assert main(["simulate", *SMALL, *CASES[case]]) == 0
    out = capsys.readouterr().out
    assert "sum of 10 clients x 40 elements" in out
    for w in want:
        assert w in out, out
    assert "exact=None" not in out and "exact=False" not in out and not out.rstrip().endswith(",")
