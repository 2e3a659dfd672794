"""Conformance self-test: our own client and server, wrapped as outside processes,
pass every check; wrappers with one deliberate bug fail the checks that cover it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from secagg.cli import main
from secagg.errors import ParameterError
from secagg.testing.conformance import CHECKS, run_conformance

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = f"{sys.executable} -m secagg.testing.reference_party"
BROKEN = f"{sys.executable} {ROOT / 'tests' / 'testing' / '_broken_party.py'}"


def _by_name(results):  # type: ignore[no-untyped-def]
    return {r.name: r for r in results}


@pytest.mark.parametrize("role", ["client", "server"])
def test_reference_party_passes_every_check(role: str) -> None:
    res = _by_name(run_conformance(REFERENCE, role, budget=8, seed=3))
    assert set(res) == {c for c, roles in CHECKS.items() if role in roles}
    assert all(r.passed for r in res.values()), {n: r.detail for n, r in res.items()}
    assert all(r.rounds >= 1 for r in res.values())


@pytest.mark.parametrize("bug", ["kdf-label", "mask-sign"])
def test_wrong_derivation_fails_vectors_and_rounds(bug: str) -> None:
    res = _by_name(run_conformance(f"{BROKEN} {bug}", "client", budget=30,
                                   checks=("kat", "rounds")))
    assert not res["kat"].passed and "differ from the vector" in res["kat"].detail
    rounds = res["rounds"]
    assert not rounds.passed and "WRONG SUM" in rounds.detail
    # the shrunk case comes with its transcript
    assert rounds.case is not None and rounds.transcript
    assert rounds.case["round"]["n"] == 3  # shrunk to the smallest round


def test_accepting_both_shares_fails_the_malicious_check() -> None:
    res = _by_name(run_conformance(f"{BROKEN} both-shares", "client", budget=12, seed=1,
                                   checks=("kat", "malicious"), time_limit=6.0))
    assert res["kat"].passed
    bad = res["malicious"]
    assert not bad.passed
    assert "both-shares" in bad.detail and bad.case is not None
    assert bad.case["attack"] == "both-shares"


def test_cli_prints_a_table_and_writes_the_json_report(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report.json"
    rc = main(["conformance", "--client", REFERENCE, "--budget", "3", "--check", "rounds",
               "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "rounds" in text and "PASS" in text
    doc = json.loads(out.read_text())
    assert doc["passed"] and doc["checks"][0]["check"] == "rounds"
    assert doc["rounds"] == doc["checks"][0]["rounds"] >= 3


def test_cli_fails_with_the_smallest_case(capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["conformance", "--client", f"{BROKEN} mask-sign", "--check", "kat"])
    text = capsys.readouterr().out
    assert rc == 1 and "FAIL" in text and "smallest failing case of kat" in text
    assert "to_server" in text  # the transcript


def test_a_party_that_dies_or_hangs_fails_cleanly() -> None:
    dead = run_conformance(f"{sys.executable} -c 'pass'", "client", checks=("kat",))
    assert not dead[0].passed and "exited" in dead[0].detail
    mute = run_conformance(f"{sys.executable} -c 'import time; time.sleep(30)'", "server",
                           checks=("kat",), timeout=1.0)
    assert not mute[0].passed and "no answer" in mute[0].detail


def test_bad_role_or_check_is_refused() -> None:
    with pytest.raises(ParameterError):
        run_conformance(REFERENCE, "decryptor")
    with pytest.raises(ParameterError):
        run_conformance(REFERENCE, "server", checks=("malicious",))


@pytest.mark.slow
def test_accepting_both_shares_fails_only_the_malicious_check() -> None:
    res = _by_name(run_conformance(f"{BROKEN} both-shares", "client", budget=30, seed=1))
    assert [n for n, r in res.items() if not r.passed] == ["malicious"]


@pytest.mark.slow
def test_default_budget_run_of_our_client(capsys) -> None:  # type: ignore[no-untyped-def]
    """The measure of issue 19: all checks pass at the default budget."""
    rc = main(["conformance", "--client", REFERENCE, "--json", "-"])
    text = capsys.readouterr().out
    doc = json.loads(text[text.index("{"):])
    print(f"\nconformance (client, default budget): {doc['rounds']} rounds, "
          f"{doc['seconds']} s")
    assert rc == 0 and doc["passed"]


def test_hypothesis_parts_name_the_extra_when_missing() -> None:
    import subprocess

    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import secagg.testing as t\n"
        "assert t.predict and t.play_round\n"
        "try:\n"
        "    t.SecureSumMachine\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert "MissingExtraError" in out and "secagg[test]" in out
