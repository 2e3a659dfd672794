"""``secagg train``: flag parsing, report.json schema, loss.png, --data layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secagg.cli import build_parser, main
from secagg.errors import ParameterError
from secagg.train.cli import config_from_args
from secagg.train.loop import OptimizerKind

TINY = ["--rounds", "1", "--clients", "3", "--per-round", "2", "--local-steps", "1",
        "--batch-size", "2", "--seq-len", "16", "--samples", "1", "--no-progress"]


def _parse(*argv: str):
    parser, _ = build_parser()
    return parser.parse_args(["train", *argv])


def test_defaults() -> None:
    a = _parse()
    assert (a.rounds, a.clients, a.per_round, a.aggregator) == (10, None, 8, "secagg+")
    assert a.lora_rank == 0 and a.dropout == 0.0 and a.seed is None and a.compare is None
    cfg = config_from_args(a, seed=4)
    assert cfg.clients is None and cfg.seed == 4 and cfg.optimizer is OptimizerKind.ADAMW


def test_every_flag_parses() -> None:
    a = _parse("--rounds", "3", "--clients", "20", "--per-round", "5", "--local-steps", "7",
               "--aggregator", "plain", "--dropout", "0.1", "--lora-rank", "8", "--seed", "9",
               "--model", "m", "--data", "d", "--out", "o", "--compare", "plain",
               "--optimizer", "sgd", "--lr", "0.1", "--server-lr", "0.5", "--clip", "0.2",
               "--value-bits", "12", "--drop-phase", "share-keys", "--threads", "2")
    cfg = config_from_args(a, seed=a.seed)
    assert (cfg.rounds, cfg.clients, cfg.per_round, cfg.local_steps) == (3, 20, 5, 7)
    assert (cfg.dropout, cfg.lora_rank, cfg.seed, cfg.model_path, cfg.data_dir) == (
        0.1, 8, 9, "m", "d")
    assert cfg.optimizer is OptimizerKind.SGD and cfg.server_lr == 0.5
    assert (a.out, a.compare, a.clip, a.value_bits, a.drop_phase) == (
        "o", "plain", 0.2, 12, "share-keys")


@pytest.mark.parametrize("argv", [["--aggregator", "rot13"], ["--compare", "secagg"],
                                  ["--rounds", "x"]])
def test_bad_flags_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)


def test_bad_values_are_typed_errors() -> None:
    with pytest.raises(ParameterError):
        config_from_args(_parse("--per-round", "9", "--clients", "4"), seed=0)
    assert main(["train", "--rounds", "0", "--seed", "1", "--no-progress"]) == 2


def test_cli_module_imports_nothing_heavy() -> None:
    code = ("import sys, secagg.cli, secagg.train.cli; "
            "heavy = {'torch', 'transformers', 'peft', 'matplotlib', 'tenseal'} "
            "& set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def _report(out: Path) -> dict:
    rep = json.loads((out / "report.json").read_text())
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rep


def _check_schema(rep: dict) -> None:
    assert {"python", "secagg", "torch", "transformers", "peft", "numpy"} <= set(rep["versions"])
    rounds = rep["rounds"]
    assert [r["round"] for r in rounds] == list(range(len(rounds)))
    for r in rounds:
        assert {"round", "train_loss", "val_loss", "survivors", "bytes_per_client_upload"} <= set(r)
    assert rounds[0]["train_loss"] is None and rounds[0]["survivors"] == 0
    assert all(r["bytes_per_client_upload"] > 0 for r in rounds[1:])
    assert rep["initial_val_loss"] == rounds[0]["val_loss"]


def test_quick_run_report_schema(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    assert main(["train", *TINY, "--seed", "4", "--out", str(out), "--samples", "0"]) == 0
    rep = _report(out)
    _check_schema(rep)
    assert rep["config"]["aggregator"] == "secagg+" and rep["rounds"][1]["survivors"] == 2
    assert "samples" not in rep
    assert (rep["engine"], rep["workers"]) == ("inprocess", 1)
    assert (rep["config"]["engine"], rep["config"]["workers"]) == ("inprocess", 1)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--workers", "2"], "--engine ray"),
    (["--ray-address", "127.0.0.1:1"], "--engine ray"),
    (["--engine", "ray", "--aggregator", "secagg", "--dp", "ddgauss"], "without --dp"),
    (["--engine", "ray", "--dp-sgd"], "--dp-sgd does not run on --engine ray"),
    (["--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
])
def test_engine_flag_misuse_is_a_one_line_error(argv: list[str], needle: str, capsys) -> None:
    assert main(["train", *TINY, "--seed", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.slow  # a fresh local Ray (and a model per actor): ~1 min here
def test_ray_engine_run_reports_engine_and_workers(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    runs = {}
    for engine in ("inprocess", "ray"):
        out = tmp_path / engine
        extra = ["--engine", "ray", "--workers", "2"] if engine == "ray" else []
        assert main(["train", *TINY, "--seed", "4", "--out", str(out), "--samples", "0",
                     *extra]) == 0
        runs[engine] = _report(out)
    assert (runs["ray"]["engine"], runs["ray"]["workers"]) == ("ray", 2)
    assert runs["ray"]["final_val_loss"] == runs["inprocess"]["final_val_loss"]


def test_run_writes_report_and_plot(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *TINY, "--seed", "3", "--out", str(out), "--aggregator", "secagg+",
                 "--compare", "plain"]) == 0
    rep = _report(out)
    _check_schema(rep)
    assert rep["config"]["aggregator"] == "secagg+" and rep["config"]["seed"] == 3
    assert [r["round"] for r in rep["rounds"]] == [0, 1] and rep["rounds"][1]["survivors"] == 2
    assert rep["baseline"]["rounds"][1]["survivors"] == 2
    assert 0 < rep["max_abs_param_diff_vs_baseline"] < 1e-4
    assert len(rep["samples"]) == 1
    text = capsys.readouterr().out
    assert "summary" in text and "samples from the final model" in text


@pytest.mark.parametrize("layout", ["subfolders", "flat"])
def test_run_with_data_dir(tmp_path: Path, layout: str) -> None:
    data = tmp_path / "data"
    for k in range(3):
        folder = data / f"c{k}" if layout == "subfolders" else data
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"t{k}.txt").write_text(f"client {k} writes line number n\n" * 60)
    out = tmp_path / "out"
    argv = ["train", *TINY, "--seed", "1", "--out", str(out), "--aggregator", "plain",
            "--data", str(data)]
    if layout == "subfolders":
        i = argv.index("--clients")
        del argv[i : i + 2]  # the number of sub-folders decides
    assert main(argv) == 0
    rep = _report(out)
    assert str(data) in rep["data"]
    assert rep["config"]["data_dir"] == str(data)


def test_dp_flag_runs_and_is_reported(tmp_path: Path) -> None:
    out = tmp_path / "dp"
    assert main(["train", *TINY, "--seed", "2", "--out", str(out), "--dp", "ddgauss",
                 "--epsilon", "20", "--dp-clip", "0.5", "--allow-noise-dominated"]) == 0
    rep = _report(out)
    assert rep["config"]["dp"] == {"mechanism": "ddgauss", "epsilon": 20.0, "delta": 1e-5,
                                   "l2_clip": 0.5, "bits": 16, "allow_noise_dominated": True}
    assert "distributed DP" in rep["aggregator"] and rep["rounds"][1]["survivors"] == 2
    assert main(["train", *TINY, "--aggregator", "plain", "--dp", "ddgauss", "--seed", "1",
                 "--out", str(tmp_path / "x")]) == 2


def test_out_on_a_file_and_plain_vs_plain_are_one_line_errors(tmp_path, capsys) -> None:
    """Newcomer items: ``--out`` on an existing file used to raise FileExistsError
    with a traceback; ``--compare plain --aggregator plain`` trained the baseline twice."""
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    assert main(["train", "--rounds", "1", "--seed", "1", "--no-progress", "--out", str(f)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "exists and is not a directory" in err[0]
    assert f.read_text() == "not a folder"
    out = tmp_path / "run"
    assert main(["train", "--rounds", "1", "--seed", "1", "--no-progress", "--aggregator", "plain",
                 "--compare", "plain", "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "baseline twice" in err[0]
    assert not out.exists()


def test_unseeded_secure_run_completes(tmp_path: Path) -> None:
    """The main job's path: no --seed, so secrets come from AesCtrRandom (it used to be
    refused by the runtime's pool after round 0)."""
    out = tmp_path / "unseeded"
    assert main(["train", *TINY, "--out", str(out), "--samples", "0"]) == 0
    rep = _report(out)
    assert rep["rounds"][1]["survivors"] == 2 and not rep["rounds"][1].get("aborted")
