"""Batched local training (torch.func.vmap over clients) gives the sequential loop's
updates: a batched path that trained the wrong rows, dropped the clip or stepped a
different optimizer would move the model somewhere the sequential path does not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom


def _trainer(cfg, client_batch):
    from secagg.train.loop import FederatedTrainer

    return FederatedTrainer(cfg, sampling_rng=InsecureDeterministicRandom(0, warn=False),
                            device="cpu", client_batch=client_batch)


@pytest.mark.parametrize(("lora", "optimizer"), [(0, "adamw"), (2, "adamw"), (0, "sgd")])
def test_batched_updates_equal_sequential(tiny_config, lora, optimizer) -> None:
    from secagg.train.loop import OptimizerKind

    cfg = dataclasses.replace(tiny_config, lora_rank=lora, clients=5, per_round=5,
                              local_steps=3, optimizer=OptimizerKind(optimizer), lr=1e-2)
    seq = _trainer(cfg, 0)
    bat = _trainer(cfg, 2)  # chunks of 2, 2, 1: the chunking is exercised too
    assert seq.batched is None and seq.local_training == "sequential"
    assert bat.batched is not None and bat.local_training.startswith("batched")
    for t in (seq, bat):  # a non-trivial starting point, the same for both
        t._round = 3
        t.global_vector = t.global_vector + 0.01 * np.sin(np.arange(t.num_trainable))
        t.global_vector = t.global_vector.astype(np.float32).astype(np.float64)
    clients = (1, 2, 3, 4, 5)
    a = seq.local_updates(clients)
    b = bat.local_updates(clients)
    for c in clients:
        da, db = a[c][0], b[c][0]
        assert da.shape == db.shape and np.linalg.norm(da) > 0
        # float tolerance of reordered float32 sums through 3 steps; a missing clip is 1e-1
        assert np.linalg.norm(da - db) <= 2e-4 * np.linalg.norm(da), c  # seen: <= 3e-5
        assert a[c][1] == pytest.approx(b[c][1], rel=1e-4)
    # distinct clients get distinct updates (no row trained another client's batches)
    assert not np.allclose(b[1][0], b[2][0])
    # the model itself is left at the global weights
    from secagg.train.model import trainable_vector

    assert np.array_equal(trainable_vector(bat.loaded.model), bat.global_vector)


def test_batched_round_matches_sequential_round(tiny_config) -> None:
    from secagg.train.aggregators import AggregatorKind, make_aggregator

    cfg = dataclasses.replace(tiny_config, rounds=1)
    recs = []
    for k in (0, 2):
        t = _trainer(cfg, k)
        calls: list[int] = []
        t.on_client = lambda rnd, done, total, calls=calls: calls.append(done)
        agg = make_aggregator(AggregatorKind.PLAIN, max_clients=cfg.per_round)
        recs.append((t.run_round(agg), t.global_vector))
        # progress: from 0 to every sampled client, per client or per chunk of 2
        assert calls == ([0, 1, 2, 3] if k == 0 else [0, 2, 3])
    (ra, va), (rb, vb) = recs
    assert ra.sampled == rb.sampled
    assert np.linalg.norm(va - vb) <= 1e-3 * np.linalg.norm(va)
    assert ra.val_loss == pytest.approx(rb.val_loss, rel=1e-3)


def test_dropout_and_insecure_rng_fall_back_to_one_client_at_a_time(tiny_spec) -> None:
    from secagg.train.batched import batching_obstacle
    from secagg.train.model import build_model

    m = build_model(spec=tiny_spec).model
    assert batching_obstacle(m) is None
    assert "insecure-rng" in batching_obstacle(m, insecure_rng=True)
    m.config.attention_dropout = 0.1
    assert "attention_dropout" in batching_obstacle(m)


def _dpsgd_trainer(cfg, client_batch, *, z, c):
    from secagg.train.dpsgd_local import LocalDPSGDConfig
    from secagg.train.loop import FederatedTrainer

    return FederatedTrainer(cfg, sampling_rng=InsecureDeterministicRandom(0, warn=False),
                            device="cpu", client_batch=client_batch,
                            local_dp=LocalDPSGDConfig(noise_multiplier=z, max_grad_norm=c),
                            secret_rng=InsecureDeterministicRandom(7, warn=False))


@pytest.mark.parametrize("lora", [0, 2])
def test_batched_dpsgd_equals_opacus(tiny_config, lora) -> None:
    """The batched DP-SGD step (our per-example clip, CSPRNG noise, scaling) against
    Opacus's GradSampleModule + DPOptimizer on the same samples and noise streams.
    The clip binds (C far below the per-example gradient norms) and the noise is small,
    so a wrong clip, a missing mask on padded examples or a wrong divisor shows."""
    pytest.importorskip("opacus")
    from secagg.train.loop import OptimizerKind

    # SGD: the step is linear in the clipped, noised, scaled gradient (Adam would hide
    # a wrong overall scale)
    cfg = dataclasses.replace(tiny_config, lora_rank=lora, clients=4, per_round=4,
                              local_steps=2, batch_size=3, seq_len=16,
                              optimizer=OptimizerKind.SGD, lr=0.5)
    clients = (1, 2, 3)
    runs = {}
    for k, c in ((0, 0.05), (2, 0.05), (2, 0.5)):
        t = _dpsgd_trainer(cfg, k, z=0.02, c=c)
        try:
            t._round = 2
            runs[(k, c)] = (t.local_updates(clients), t.local_dp.state())
            assert (t.batched is None) == (k == 0)
        finally:
            t.local_dp.close()
    (seq, seq_acc), (bat, bat_acc), (other, _) = (runs[(0, 0.05)], runs[(2, 0.05)],
                                                 runs[(2, 0.5)])
    assert seq_acc == bat_acc  # the same (z, q, steps) recorded per client
    for cl in clients:
        da, db = seq[cl][0], bat[cl][0]
        assert np.linalg.norm(da) > 0
        assert np.linalg.norm(da - db) <= 2e-4 * np.linalg.norm(da), cl
        assert np.linalg.norm(da - other[cl][0]) > 1e-2 * np.linalg.norm(da)  # clip matters
        if not np.isnan(seq[cl][1]):
            assert seq[cl][1] == pytest.approx(bat[cl][1], rel=1e-4)


@pytest.mark.parametrize(("value", "ok"), [("auto", True), ("8", True),
                                           ("-1", False), ("x", False)])
def test_client_batch_flag(value, ok, capsys, tmp_path) -> None:
    from secagg.cli import main

    argv = ["train", "--rounds", "1", "--clients", "3", "--per-round", "2", "--local-steps",
            "1", "--batch-size", "2", "--seq-len", "16", "--samples", "0", "--no-progress",
            "--aggregator", "plain", "--seed", "1", "--client-batch", value,
            "--out", str(tmp_path / "o")]
    if not ok:
        assert main(argv) == 2
        assert "--client-batch" in capsys.readouterr().err
        return
    assert main(argv) == 0
    import json

    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    torch = pytest.importorskip("torch")
    # auto batches on CUDA only (README "Private training"); this test runs on a GPU box too
    batched = value == "8" or (value == "auto" and torch.cuda.is_available())
    expect = "batched" if batched else "sequential"
    assert rep["local_training"].startswith(expect)


def test_batched_trainer_bad_input(tiny_spec) -> None:
    torch = pytest.importorskip("torch")
    from secagg.train.batched import BatchedLocalTrainer
    from secagg.train.model import build_model

    loaded = build_model(spec=tiny_spec)
    names = loaded.layout.names
    for kw in ({"chunk": 0}, {"optimizer": "adam"}, {"lr": float("nan")}):
        args = {"optimizer": "adamw", "lr": 1e-3, "chunk": 2} | kw
        with pytest.raises(ParameterError):
            BatchedLocalTrainer(loaded.model, names, **args)
    with pytest.raises(ParameterError, match="trainable"):
        BatchedLocalTrainer(loaded.model, names[1:], optimizer="adamw", lr=1e-3, chunk=2)
    t = BatchedLocalTrainer(loaded.model, names, optimizer="adamw", lr=1e-3, chunk=2)
    with pytest.raises(ParameterError):
        t.train(torch.zeros((2, 1, 4), dtype=torch.long), torch.zeros((2, 1, 4)))
