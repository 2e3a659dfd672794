"""``secagg train --aggregator lightsecagg`` (issue #17): the LightSecAgg scheme halves in
the FedAvg loop — the mean equals the plain mean within quantization, dropouts are
recovered from any ``U`` responses, too few survivors abort and release nothing, and bad
``T``/``U`` are one-line usage errors before any model is built."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from secagg.cli import main
from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.train.aggregators import (
    AggregatorKind,
    DropTiming,
    LightSecAggAggregator,
    lightsecagg_parameters,
    make_aggregator,
)
from secagg.train.loop import TrainConfig, run_training

IDS = (2, 3, 5, 7, 11, 12)
TINY = ["--rounds", "1", "--clients", "3", "--per-round", "2", "--local-steps", "1",
        "--batch-size", "2", "--seq-len", "16", "--samples", "0", "--no-progress"]


def _rng(seed: int) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed, warn=False)


def _updates(n: int = 300, seed: int = 1) -> dict[int, np.ndarray]:
    rng = _rng(seed)
    out = {}
    for i in IDS:
        u = np.frombuffer(rng.random_bytes(8 * n), dtype="<u8") / 2.0**64
        out[i] = (u - 0.5) * 0.08
    return out


def _clipped_mean(ups: dict[int, np.ndarray], ids, clip: float = 0.05) -> np.ndarray:
    return np.mean([np.clip(ups[i], -clip, clip) for i in ids], axis=0)


@pytest.mark.parametrize("timing", list(DropTiming))
def test_mean_matches_plain_within_quantization_and_dropouts_recover(timing) -> None:
    ups = _updates()
    frames: list[tuple[str, int, bytes]] = []
    agg = make_aggregator(AggregatorKind.LIGHTSECAGG, max_clients=len(IDS), clip=0.05,
                          rng=_rng(3), drop_timing=timing, min_survivors=4,
                          observer=lambda d, u, b: frames.append((d, u, b)))
    assert isinstance(agg, LightSecAggAggregator)
    full = agg.aggregate(ups)
    assert full.survivors == IDS and not full.aborted
    assert np.abs(full.mean - _clipped_mean(ups, IDS)).max() < agg.spec.step
    res = agg.aggregate(ups, dropped=[5, 11])  # 4 survivors >= U = 3
    assert res.survivors == (2, 3, 7, 12) and not res.aborted
    assert np.abs(res.mean - _clipped_mean(ups, res.survivors)).max() < agg.spec.step
    assert "N=6, T=1, U=3, D=3" in agg.description
    # the server saw wire frames only: no update in the clear (as float64 or float32)
    needles = [ups[2][:8].tobytes(), np.asarray(ups[2][:8], dtype="<f4").tobytes()]
    assert frames and not any(n in b for _, _, b in frames for n in needles)
    assert res.bytes_per_client_upload > 2 * 4 * 300  # masked input + coded shares


def test_fewer_than_target_survivors_abort_and_release_nothing() -> None:
    agg = make_aggregator(AggregatorKind.LIGHTSECAGG, max_clients=len(IDS), rng=_rng(4))
    res = agg.aggregate(_updates(n=40), dropped=[2, 3, 5, 7])  # 2 < U = 3
    assert res.aborted and res.mean is None and res.survivors == ()
    assert "U = 3" in (res.abort_reason or "")


def test_parameters_derive_from_the_cohort_and_refuse_impossible_rounds() -> None:
    assert lightsecagg_parameters(8) == (2, 4, 4)
    assert lightsecagg_parameters(3) == (1, 2, 1)
    assert lightsecagg_parameters(8, min_survivors=3) == (2, 3, 5)  # U lowered to survivors
    assert lightsecagg_parameters(8, privacy=3, target=6) == (3, 6, 2)
    with pytest.raises(ParameterError, match="T < U"):
        lightsecagg_parameters(8, privacy=3, target=3)
    with pytest.raises(ParameterError, match="N - D"):
        lightsecagg_parameters(8, target=7, min_survivors=6)
    with pytest.raises(ParameterError, match="survive"):
        lightsecagg_parameters(8, privacy=4, min_survivors=4)
    with pytest.raises(ParameterError):
        lightsecagg_parameters(1)
    with pytest.raises(ParameterError, match="overflow rule"):  # 4 (2^30 - 1) >= 2^31 - 1
        make_aggregator(AggregatorKind.LIGHTSECAGG, max_clients=4, value_bits=28)
    make_aggregator(AggregatorKind.LIGHTSECAGG, max_clients=2, value_bits=29)  # 2 (2^30 - 1) fits
    with pytest.raises(ParameterError, match="LightSecAgg"):
        make_aggregator(AggregatorKind.SECAGG_PLUS, max_clients=4, target=3)


def test_tiny_training_run_equals_plain_within_quantization(tiny_config: TrainConfig) -> None:
    cfg = dataclasses.replace(tiny_config, clients=4, per_round=4, dropout=0.25)
    out = {}
    for kind in (AggregatorKind.LIGHTSECAGG, AggregatorKind.PLAIN):
        agg = make_aggregator(kind, max_clients=cfg.per_round, rng=_rng(11), min_survivors=3)
        out[kind] = run_training(cfg, agg, sampling_rng=_rng(cfg.seed)), agg
    (light, agg), (plain, _) = out[AggregatorKind.LIGHTSECAGG], out[AggregatorKind.PLAIN]
    r = light.rounds[1]
    assert r.dropped and r.survivors == 3 and not r.aborted
    assert r.survivors == plain.rounds[1].survivors
    # the update clip (0.05) is far above these deltas, so only rounding differs:
    # at most one quantization step per coordinate of the mean (then float32 storage)
    assert r.clipped_fraction == 0.0
    gap = np.abs(light.final_vector - plain.final_vector).max()
    assert 0 < gap <= agg.spec.step * 1.01
    assert "lightsecagg" in light.aggregator


@pytest.mark.parametrize(("argv", "needle"), [
    (["--aggregator", "lightsecagg", "--target", "1"], "T < U"),
    (["--aggregator", "lightsecagg", "--threshold", "2"], "T < U"),
    (["--aggregator", "lightsecagg", "--clients", "4", "--per-round", "3", "--dropout", "0.34",
      "--target", "3"], "U=3 > N - D = 2"),
    (["--aggregator", "lightsecagg", "--value-bits", "30"], "at most 30 bits"),
    (["--aggregator", "lightsecagg", "--per-round", "1"], "--per-round >= 2"),
    (["--aggregator", "secagg+", "--target", "2"], "LightSecAgg's T and U"),
])
def test_bad_lightsecagg_parameters_are_one_line_errors(argv, needle, capsys, tmp_path) -> None:
    out = tmp_path / "never"
    assert main(["train", *TINY, "--seed", "1", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_run_with_dropout_and_compare(tmp_path: Path, capsys) -> None:
    """One tiny run: LightSecAgg with a dropout completes, its model is the plain
    baseline's within quantization, the report names T, U, D; the summary's wall time
    shows both runs and the total (#18 item 13), and stderr, not a TTY here, holds no
    empty line (transformers' shard-writing bar used to start one with ``\\r``)."""
    out = tmp_path / "ls"
    assert main(["train", *TINY, "--clients", "4", "--per-round", "3", "--dropout", "0.34",
                 "--seed", "5", "--aggregator", "lightsecagg", "--compare", "plain",
                 "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert all(line.strip() for line in cap.err.splitlines()), repr(cap.err)
    rep = json.loads((out / "report.json").read_text())
    assert rep["config"]["lightsecagg"] == {
        "threshold_flag": None, "target_flag": None, "clients_N": 3, "privacy_T": 1,
        "target_U": 2, "dropout_tolerance_D": 1}
    r1 = rep["rounds"][1]
    assert r1["survivors"] == 2 and len(r1["dropped"]) == 1 and not r1["aborted"]
    assert 0 < rep["max_abs_param_diff_vs_baseline"] < 1e-4
    wall = [ln for ln in cap.out.splitlines() if ln.startswith("wall time:")]
    assert len(wall) == 1 and "lightsecagg" in wall[0] and "plain" in wall[0]
    assert "total" in wall[0]
    assert rep["seconds_total"] >= rep["seconds"] + rep["baseline"]["seconds"]
