"""Private training that says what it does: DP-SGD in the loop, user-level DP reporting,
bad-input errors, a model that can be kept and a run that can be resumed.

Threats and failure modes named after what they would let through: a clip counter
that counts the wrong thing, an ε nobody computed, a refused plan that runs anyway,
noise from torch's generator, a resumed run that silently differs.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from secagg.cli import main
from secagg.errors import ParameterError

TINY = ["--rounds", "1", "--clients", "3", "--per-round", "2", "--local-steps", "1",
        "--batch-size", "2", "--seq-len", "16", "--samples", "0", "--no-progress",
        "--device", "cpu"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("secagg train: error: ")
    return err[0]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--dp", "ddgauss", "--epsilon", "0"], "--epsilon must be > 0"),
    (["--dp", "ddgauss", "--epsilon", "-1"], "--epsilon must be > 0"),
    (["--dp", "ddgauss", "--delta", "0.4"], "1/3"),
    (["--dp", "ddgauss", "--aggregator", "plain"], "not plain"),
    # without the he extra the aggregator itself is refused first (another message)
    pytest.param(["--dp", "ddgauss", "--aggregator", "he-ckks"], "not he-ckks",
                 marks=pytest.mark.skipif(importlib.util.find_spec("tenseal") is None,
                                          reason="needs tenseal (the he extra)")),
    (["--dp-sgd", "--noise-multiplier", "0"], "--noise-multiplier must be a positive"),
    (["--insecure-rng"], "only applies to --dp-sgd"),
    (["--dp", "ddgauss", "--epsilon", "20"], "the smallest cohort that passes is --per-round"),
])
def test_bad_private_input_is_one_line_exit_2(argv, needle, capsys, tmp_path: Path) -> None:
    rc = main(["train", *TINY, "--seed", "1", "--out", str(tmp_path / "x"), *argv])
    assert rc == 2
    assert needle in _one_error_line(capsys)
    assert not (tmp_path / "x" / "report.json").exists()


def test_refusal_names_a_cohort_that_actually_passes() -> None:
    from secagg.train.privacy import MAX_NOISE_TO_CLIP, plan_user_dp

    kw = dict(mechanism="ddgauss", epsilon=8.0, delta=1e-5, dim=4_000, l2_clip=1.0,
              bits=16, rounds=5, dropout=0.0, num_clients=10_000)
    with pytest.raises(ParameterError, match=r"--per-round (\d+)") as ei:
        plan_user_dp(cohort=3, **kw)
    n = int(str(ei.value).split("--per-round ")[1].split()[0])
    ok = plan_user_dp(cohort=n, **kw)
    assert ok.noise_to_clip <= MAX_NOISE_TO_CLIP
    with pytest.raises(ParameterError):
        plan_user_dp(cohort=n - 1, **kw)
    loud = plan_user_dp(cohort=3, allow_noise_dominated=True, **kw)
    assert loud.noise_to_clip > MAX_NOISE_TO_CLIP and loud.warnings


def test_user_dp_accountant_matches_the_plan() -> None:
    """Cumulative ε after all rounds at n_min survivors is the planned ε; more
    survivors spend less; the per-round ε is the one-round figure."""
    from secagg.train.privacy import UserDPAccountant, plan_user_dp

    plan = plan_user_dp(mechanism="ddgauss", epsilon=4.0, delta=1e-5, dim=5000, l2_clip=1.0,
                        bits=16, rounds=3, cohort=200, dropout=0.1, num_clients=1000)
    p = plan.params
    acc = UserDPAccountant(p, 1e-5)
    for r in range(1, 4):
        e_round, e_cum = acc.record(p.min_survivors)
        assert math.isclose(e_round, p.epsilon(delta=1e-5, rounds=1, survivors=p.min_survivors))
        assert math.isclose(e_cum, p.epsilon(delta=1e-5, rounds=r, survivors=p.min_survivors))
    assert e_cum <= 4.0 + 1e-6
    more = UserDPAccountant(p, 1e-5)
    assert more.record(200)[1] < UserDPAccountant(p, 1e-5).record(p.min_survivors)[1]
    with pytest.raises(ParameterError):
        more.record(p.min_survivors - 1)


def test_true_l2_clipped_fraction_and_signal() -> None:
    """The clip counter counts updates whose L2 norm exceeds the clip (not coordinates)."""
    from secagg.train.loop import _UpdateStats

    ups = {1: np.array([0.3, 0.4]), 2: np.array([3.0, 4.0]), 3: np.array([0.0, 20.0]),
           4: np.array([100.0, 0.0])}
    st = _UpdateStats(ups, (4,), 1.0)  # client 4 dropped: not counted
    f = st.fields()
    assert f["l2_clipped_fraction"] == pytest.approx(2 / 3)
    want = (np.array([0.3, 0.4]) + np.array([0.6, 0.8]) + np.array([0.0, 1.0])) / 3
    assert f["signal_norm"] == pytest.approx(float(np.linalg.norm(want)))
    assert f["mean_client_update_norm"] == pytest.approx((0.5 + 5 + 20) / 3)
    after = st.after_release(want + np.array([3.0, 4.0]), None, 3)
    assert after["noise_norm"] == pytest.approx(5.0)


def test_user_dp_run_reports_epsilon_noise_and_clipping(tmp_path: Path, capsys) -> None:
    out = tmp_path / "dp"
    assert main(["train", *TINY, "--rounds", "2", "--seed", "2", "--out", str(out),
                 "--dp", "ddgauss", "--epsilon", "20", "--dp-clip", "0.5",
                 "--allow-noise-dominated", "--lora-rank", "2"]) == 0
    text = capsys.readouterr().out
    assert "WARNING: user-level DP noise would swamp the model" in text
    assert "WARNING: round 1: noise dominates" in text
    rep = json.loads((out / "report.json").read_text())
    plan = rep["user_dp_plan"]
    assert plan["bits"] == 16 and plan["noise_to_clip"] > 10 and plan["noise_dominates"]
    r1, r2 = rep["rounds"][1], rep["rounds"][2]
    assert r1["l2_clip"] == 0.5 and 0 <= r1["l2_clipped_fraction"] <= 1
    assert 0 < r1["epsilon_round"] == pytest.approx(r2["epsilon_round"])
    assert r1["epsilon_cumulative"] < r2["epsilon_cumulative"] <= 20 + 1e-6
    assert rep["user_dp_epsilon"] == pytest.approx(r2["epsilon_cumulative"])
    assert r1["noise_dominates"] and r1["noise_to_signal"] > 2
    # the realised error of the release is near its expected size
    assert 0.5 < r1["noise_norm"] / r1["expected_noise_norm"] < 2
    assert rep["config"]["dp"]["bits"] == 16
    assert rep["noise_dominated_rounds"] == [1, 2]
    rows = list(csv.DictReader((out / "metrics.csv").read_text(encoding="utf-8").splitlines()))
    assert [r["round"] for r in rows] == ["0", "1", "2"]
    assert float(rows[2]["epsilon_cumulative"]) == pytest.approx(r2["epsilon_cumulative"])


def test_dp_sgd_run_with_lora_over_secagg_and_the_model_loads(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    pytest.importorskip("opacus")
    import transformers

    out = tmp_path / "sgd"
    assert main(["train", *TINY, "--seed", "3", "--out", str(out), "--dp-sgd",
                 "--noise-multiplier", "1.5", "--max-grad-norm", "0.5", "--lora-rank", "2",
                 "--compare", "plain"]) == 0
    rep = json.loads((out / "report.json").read_text())
    eps = rep["rounds"][1]["dpsgd_epsilon"]
    assert sorted(int(k) for k in eps) == rep["rounds"][1]["sampled"]
    assert all(0 < v < math.inf for v in eps.values())
    assert rep["dpsgd_epsilon_max"] == pytest.approx(max(eps.values()))
    assert rep["config"]["dp_sgd"]["noise_multiplier"] == 1.5
    assert "baseline" in rep and "non-private" in rep["baseline"]["label"]
    assert "dpsgd_epsilon" not in rep["baseline"]["rounds"][1] or \
        rep["baseline"]["rounds"][1]["dpsgd_epsilon"] is None
    # the adapter loads onto the saved base and reproduces the trained model's logits
    base = transformers.AutoModelForCausalLM.from_pretrained(out / "base_model")
    model = peft.PeftModel.from_pretrained(base, out / "adapter").eval()
    ids = torch.tensor([[256, 72, 105, 33, 10]])
    with torch.no_grad():
        got = model(input_ids=ids).logits
    from secagg.train.model import build_model, load_trainable_vector

    ref = build_model(lora_rank=2, seed=rep["config"]["seed"])
    vec = np.load(out / "checkpoint" / "main" / "weights.npy").astype(np.float64)
    load_trainable_vector(ref.model, vec, ref.layout)
    ref.model.eval()
    with torch.no_grad():
        want = ref.model(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)


def test_full_model_saved_and_resume_equals_uninterrupted_run(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    import transformers

    common = [*TINY, "--seed", "4", "--aggregator", "secagg+"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", *common, "--rounds", "2", "--out", str(whole)]) == 0
    assert main(["train", *common, "--rounds", "1", "--out", str(part)]) == 0
    assert main(["train", *common, "--rounds", "2", "--resume", str(part)]) == 0
    a = np.load(whole / "checkpoint" / "main" / "weights.npy")
    b = np.load(part / "checkpoint" / "main" / "weights.npy")
    assert np.array_equal(a, b)
    ra = json.loads((whole / "report.json").read_text())
    rb = json.loads((part / "report.json").read_text())
    assert [r["val_loss"] for r in ra["rounds"]] == [r["val_loss"] for r in rb["rounds"]]
    assert rb["config"]["resumed_from"] == 1
    # a resume from another configuration is refused with one line
    capsys.readouterr()
    assert main(["train", *common, "--rounds", "2", "--lr", "0.1", "--resume", str(part)]) == 2
    assert "another configuration (lr" in _one_error_line(capsys)
    assert main(["train", *TINY, "--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in _one_error_line(capsys)
    # the full model loads with transformers and is the trained model
    m = transformers.AutoModelForCausalLM.from_pretrained(whole / "model").eval()
    from secagg.train.model import trainable_vector

    assert np.allclose(trainable_vector(m), a.astype(np.float64), atol=0)
    assert json.loads((whole / "model" / "secagg_tokenizer.json").read_text())["bos_id"] == 256
    with torch.no_grad():
        assert m(input_ids=torch.tensor([[256, 65]])).logits.shape == (1, 2, 259)


def test_dp_budget_resume_cannot_change_rounds(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    argv = [*TINY, "--seed", "5", "--dp", "ddgauss", "--epsilon", "20",
            "--allow-noise-dominated"]
    assert main(["train", *argv, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", *argv, "--rounds", "2", "--resume", str(out)]) == 2
    assert "planned over 1 rounds" in _one_error_line(capsys)


def test_device_flag() -> None:
    from secagg.train.loop import resolve_device

    torch = pytest.importorskip("torch")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ParameterError):
        resolve_device("tpu")


def test_local_dpsgd_empty_batches_still_add_noise_and_count(tiny_spec) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("opacus")
    from secagg.primitives.rand import InsecureDeterministicRandom
    from secagg.train.dpsgd_local import LocalDPSGD, LocalDPSGDConfig, _windows
    from secagg.train.model import build_model, trainable_vector

    ids, labels = _windows(torch, np.arange(10, dtype=np.int64), 4, 99)
    assert ids.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 99, 99]]
    assert labels[2].tolist() == [8, 9, -100, -100]

    def run(seed: int) -> tuple[np.ndarray, LocalDPSGD]:
        loaded = build_model(spec=tiny_spec, seed=0)
        dp = LocalDPSGD(LocalDPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0),
                        model=loaded.model,
                        secret_rng=InsecureDeterministicRandom(seed, warn=False), seed=0)
        before = trainable_vector(loaded.model)
        dp.train_client(client=3, round=1, tokens=np.arange(400, dtype=np.int64) % 250,
                        pad_id=258, batch_size=1, seq_len=4, steps=5,
                        make_optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1), device="cpu")
        dp.close()
        return trainable_vector(loaded.model) - before, dp

    d1, dp = run(1)
    (z, q, steps), = dp.accountants[3].history
    assert (z, q, steps) == (1.0, 0.01, 5)  # q = batch / 100 windows, every step counted
    assert 0 < dp.epsilon(3) < math.inf and dp.epsilon(4) == 0.0
    assert np.linalg.norm(d1) > 0  # noise moves the model even when batches are empty
    d1b, _ = run(1)
    d2, _ = run(2)
    assert np.array_equal(d1, d1b) and not np.array_equal(d1, d2)
    restored = LocalDPSGD.__new__(LocalDPSGD)
    restored._accountants_mod = dp._accountants_mod
    restored.config = dp.config
    restored._eps_cache = {}
    restored.load_state(dp.state())
    assert restored.epsilon(3) == pytest.approx(dp.epsilon(3))


def test_dpsgd_delta_is_checked_against_examples_per_client_not_clients() -> None:
    """Sample-level DP protects one example: δ must be < 1/(examples of the largest
    client).  A δ that is fine for 100 clients of 2 examples passes though δ ≥ 1/clients;
    one client with many examples makes the same δ a refusal that names it."""
    torch = pytest.importorskip("torch")
    from secagg.train.dpsgd_local import _windows, check_delta, example_count

    for n in (1, 2, 9, 10, 11, 12, 40, 41):
        ids, _ = _windows(torch, np.arange(n, dtype=np.int64), 10, 99)
        assert example_count(n, 10) == ids.shape[0]
    two_each = {c: 20 for c in range(1, 101)}  # 100 clients of 2 windows of 10 tokens
    check_delta(0.3, two_each, 10)  # >= 1/100 clients, < 1/2 examples: sample-level fine
    with pytest.raises(ParameterError, match=r"1/2: client 1 holds 2 examples"):
        check_delta(0.5, two_each, 10)
    with pytest.raises(ParameterError, match=r"client 7 holds 50 examples"):
        check_delta(0.3, {**two_each, 7: 500}, 10)


def test_dpsgd_delta_too_large_for_a_clients_examples_is_one_line_exit_2(
    capsys, tmp_path: Path
) -> None:
    rc = main(["train", *TINY, "--seed", "1", "--out", str(tmp_path / "x"), "--dp-sgd",
               "--delta", "0.01"])  # < 1/3 clients; every client holds far more than 100
    assert rc == 2
    line = _one_error_line(capsys)
    assert "examples of 16 tokens" in line and "δ < 1/(examples per client)" in line
    assert not (tmp_path / "x" / "report.json").exists()
