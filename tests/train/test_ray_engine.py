"""``--engine ray`` for training: the sampled clients train, encode and mask on Ray
actors; the server process sees only wire bytes.  Same seed, same final model as
in process (exact-masked aggregation: the secure sum is exact in Z_{2^b}, so equal
client deltas and equal quantization randomness give the same bytes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.train.aggregators import AggregatorKind, make_aggregator
from secagg.train.loop import TrainConfig, run_training


def _run(cfg: TrainConfig, kind: AggregatorKind, frames: list, **engine):  # type: ignore[no-untyped-def]
    agg = make_aggregator(
        kind, max_clients=cfg.per_round, rng=InsecureDeterministicRandom(11, warn=False),
        observer=lambda d, u, b: frames.append((d, u, b)),
    )
    sampling = InsecureDeterministicRandom(cfg.seed, "sampling", warn=False)
    return run_training(cfg, agg, sampling_rng=sampling, **engine)


@pytest.mark.slow  # ~60 s here: a fresh local Ray and a model built in every actor
@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG_PLUS, AggregatorKind.LIGHTSECAGG])
def test_ray_engine_gives_the_inprocess_model_and_transcript(
    tiny_config: TrainConfig, kind: AggregatorKind
) -> None:
    ray = pytest.importorskip("ray")
    cfg = dataclasses.replace(tiny_config, clients=4, per_round=4, dropout=0.25)
    local_frames: list = []
    local = _run(cfg, kind, local_frames)
    remote_frames: list = []
    remote = _run(cfg, kind, remote_frames, engine="ray", workers=2)
    assert not ray.is_initialized()  # the engine shut down the Ray it started
    assert (local.engine, local.workers) == ("inprocess", 1)
    assert (remote.engine, remote.workers) == ("ray", 2)
    r_local, r_remote = local.rounds[1], remote.rounds[1]
    assert r_local.dropped and r_remote.dropped == r_local.dropped
    assert not r_remote.aborted and r_remote.survivors == 3
    # every wire frame the server saw is the same: the same transcript
    assert sorted(remote_frames) == sorted(local_frames) and local_frames
    np.testing.assert_array_equal(remote.final_vector, local.final_vector)
    assert r_remote.train_loss == r_local.train_loss
    assert r_remote.val_loss == r_local.val_loss
    assert r_remote.clipped_fraction == r_local.clipped_fraction
    assert r_remote.bytes_per_client_upload == r_local.bytes_per_client_upload
    # a diagnostic computed on the actors (BLAS there may sum in another order)
    assert r_remote.mean_client_update_norm == pytest.approx(r_local.mean_client_update_norm,
                                                             rel=1e-12)


def test_ray_engine_refuses_what_it_does_not_run(tiny_config: TrainConfig) -> None:
    from secagg.train.aggregators import DPSettings

    agg = make_aggregator(AggregatorKind.SECAGG, max_clients=tiny_config.per_round,
                          dp=DPSettings(mechanism="ddgauss", epsilon=8.0), min_survivors=2)
    sampling = InsecureDeterministicRandom(1, warn=False)
    with pytest.raises(ParameterError, match="does not run on --engine ray"):
        run_training(tiny_config, agg, sampling_rng=sampling, engine="ray")
    plain = make_aggregator(AggregatorKind.PLAIN, max_clients=tiny_config.per_round)
    with pytest.raises(ParameterError, match="unknown engine"):
        run_training(tiny_config, plain, sampling_rng=sampling, engine="processes")
    with pytest.raises(ParameterError, match="ray engine"):
        run_training(tiny_config, plain, sampling_rng=sampling, workers=2)
