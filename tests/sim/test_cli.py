"""``secagg simulate`` end to end (small sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secagg.cli import main


@pytest.mark.parametrize(
    "extra",
    [
        ["--protocol", "secagg+", "--dropout", "0.2"],
        [
            "--protocol",
            "secagg",
            "--security",
            "malicious",
            "--drop-phase",
            "consistency",
            "--dropout",
            "0.1",
        ],
        [
            "--protocol",
            "secagg+",
            "--neighbors",
            "4",
            "--threshold",
            "3",
            "--bits",
            "40",
            "--drop-phase",
            "share-keys",
            "--dropout",
            "0.1",
        ],
    ],
)
def test_simulate_json(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["simulate", "--clients", "12", "--length", "50", "--seed", "3", "--json", "-", *extra]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "protocol",
        "clients",
        "survivors",
        "aborted",
        "exact",
        "client_cpu_s",
        "server_cpu_s",
        "bytes_per_client_upload",
        "server_peak_mb",
        "wall_s",
    ):
        assert key in out
    assert out["clients"] == 12 and out["aborted"] is False and out["exact"] is True
    assert out["survivors"] == out["sets"]["U3"]
    assert set(out["client_cpu_s"]) == {
        "advertise_keys",
        "graph_seed",  # protocol v2: the SecAgg+ seed reveals (0 for the complete graph)
        "share_keys",
        "masked_input",
        "consistency",
        "unmasking",
    }


def test_simulate_reports_abort(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    rc = main(
        [
            "simulate",
            "--clients",
            "10",
            "--length",
            "8",
            "--seed",
            "1",
            "--protocol",
            "secagg+",
            "--neighbors",
            "2",
            "--threshold",
            "2",
            "--dropout",
            "0.5",
            "--json",
            str(path),
        ]
    )
    assert rc == 0
    out = json.loads(path.read_text())
    assert out["aborted"] is True and out["exact"] is None and out["survivors"] == 0


def test_simulate_rejects_bad_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "--clients", "5", "--threshold", "9", "--protocol", "secagg"])
    assert rc == 2
    assert "threshold" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["inprocess", "processes"])
def test_unseeded_simulation_checks_the_inputs_it_summed(engine, capsys):
    # without --seed the protocol draws from os.urandom; the exactness check must
    # still regenerate the very inputs the clients used (it once reported exact=false)
    rc = main(["simulate", "--clients", "8", "--length", "33", "--dropout", "0.25",
               "--engine", engine, "--workers", "2", "--json", "-"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["seed"] is None and out["aborted"] is False
    assert out["exact"] is True and out["correct"] is True
