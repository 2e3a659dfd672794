"""``secagg simulate --engine ...``: the JSON of every engine carries engine,
workers and transcript_digest; the same seed gives the same digest."""

from __future__ import annotations

import json

import pytest

from secagg.cli import main

BASE = ["simulate", "--clients", "14", "--length", "30", "--seed", "5", "--dropout", "0.15",
        "--json", "-"]


def _run(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    assert main([*BASE, *extra]) == 0
    out: dict[str, object] = json.loads(capsys.readouterr().out)
    return out


@pytest.mark.parametrize("security", ["semi-honest", "malicious"])
def test_engines_agree_on_the_transcript(capsys: pytest.CaptureFixture[str],
                                         security: str) -> None:
    a = _run(capsys, "--engine", "inprocess", "--workers", "1", "--security", security)
    b = _run(capsys, "--engine", "processes", "--workers", "2", "--security", security)
    for r, engine, workers in ((a, "inprocess", 1), (b, "processes", 2)):
        assert r["engine"] == engine and r["workers"] == workers
        assert r["exact"] is True and r["dropped"] == 2
        assert isinstance(r["transcript_digest"], str) and len(r["transcript_digest"]) == 64
    assert a["transcript_digest"] == b["transcript_digest"]
    assert a["sets"] == b["sets"]


def test_engine_flags_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*BASE, "--engine", "processes", "--ray-address", "127.0.0.1:1"]) == 2
    assert "--ray-address" in capsys.readouterr().err
    assert main([*BASE, "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_he_and_dp_json_carry_the_engine_fields(capsys: pytest.CaptureFixture[str]) -> None:
    r = _run(capsys, "--dp", "ddgauss", "--epsilon", "5", "--bits", "20", "--engine",
             "processes", "--workers", "2")
    assert r["engine"] == "processes" and r["workers"] == 2
    assert isinstance(r["transcript_digest"], str)
    pytest.importorskip("tenseal")
    r = _run(capsys, "--protocol", "he-bfv", "--engine", "processes", "--workers", "2",
             "--length", "20")
    assert r["engine"] == "processes" and r["workers"] == 2 and r["exact"] is True
    assert isinstance(r["transcript_digest"], str)
