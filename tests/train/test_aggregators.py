"""Aggregators: only the survivors' mean comes out, within the stated quantization."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.train.aggregators import (
    AggregateResult,
    AggregatorKind,
    DropTiming,
    InsecurePlainAggregator,
    MaskedAggregator,
    available_kinds,
    make_aggregator,
)

IDS = (2, 3, 5, 7, 11, 12)


def _updates(n: int = 300, seed: int = 1) -> dict[int, np.ndarray]:
    rng = InsecureDeterministicRandom(seed, warn=False)
    out = {}
    for i in IDS:
        u = np.frombuffer(rng.random_bytes(8 * n), dtype="<u8") / 2.0**64
        out[i] = ((u - 0.5) * 0.08).astype(np.float32).astype(np.float64)  # float32 like torch
    return out


def _mean(ups: dict[int, np.ndarray], ids) -> np.ndarray:
    return np.mean([ups[i] for i in ids], axis=0)


def test_plain_is_exact_mean_over_survivors() -> None:
    ups = _updates()
    seen: list[tuple[str, int, bytes]] = []
    agg = InsecurePlainAggregator(observer=lambda d, c, b: seen.append((d, c, b)))
    res = agg.aggregate(ups, dropped=[5])
    assert res.survivors == (2, 3, 7, 11, 12) and not res.aborted
    assert np.allclose(res.mean, _mean(ups, res.survivors), atol=1e-12)
    assert res.bytes_per_client_upload == pytest.approx(4 * 300 * 5 / 6)
    assert [c for _, c, _ in seen] == [2, 3, 7, 11, 12]
    assert "INSECURE" in agg.description


@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS])
def test_masked_mean_matches_plain_up_to_quantization(kind: AggregatorKind) -> None:
    ups = _updates()
    agg = make_aggregator(
        kind, max_clients=len(IDS), clip=0.05, value_bits=16,
        rng=InsecureDeterministicRandom(2, warn=False),
    )
    assert isinstance(agg, MaskedAggregator)
    res = agg.aggregate(ups)
    assert res.survivors == IDS
    # stochastic rounding: each coordinate of each update is off by < one step
    assert np.abs(res.mean - _mean(ups, IDS)).max() < agg.spec.step
    assert res.bytes_per_client_upload > 300 * 4  # masked words + keys and shares
    assert "quantized" in agg.description and f"2^{agg.spec.bits}" in agg.description


@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS])
@pytest.mark.parametrize("timing", list(DropTiming))
def test_masked_dropouts_give_the_survivors_mean(kind: AggregatorKind, timing: DropTiming) -> None:
    ups = _updates()
    agg = make_aggregator(
        kind, max_clients=len(IDS), rng=InsecureDeterministicRandom(3, warn=False),
        drop_timing=timing,
    )
    res = agg.aggregate(ups, dropped=[5])
    assert not res.aborted and res.survivors == (2, 3, 7, 11, 12)
    assert np.abs(res.mean - _mean(ups, res.survivors)).max() < agg.spec.step


@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS])
def test_masked_round_below_threshold_aborts_without_a_mean(kind: AggregatorKind) -> None:
    rng = InsecureDeterministicRandom(6, warn=False)
    agg = make_aggregator(kind, max_clients=len(IDS), rng=rng)
    res = agg.aggregate(_updates(n=20), dropped=IDS[:-1])
    assert res.aborted and res.mean is None and res.survivors == ()
    assert res.abort_reason and "masked inputs" in res.abort_reason
    assert res.bytes_per_client_upload > 0


def test_clipping_is_applied_coordinate_wise() -> None:
    ups = {i: np.full(10, 1.0) for i in (1, 2, 3)}
    agg = make_aggregator(AggregatorKind.SECAGG_PLUS, max_clients=3, clip=0.05,
                          rng=InsecureDeterministicRandom(4, warn=False))
    res = agg.aggregate(ups)
    assert np.allclose(res.mean, 0.05, atol=agg.spec.step)


@pytest.mark.parametrize("kind", [AggregatorKind.HE_CKKS, AggregatorKind.HE_BFV])
def test_he_mean_matches_plain(kind: AggregatorKind) -> None:
    pytest.importorskip("tenseal")
    assert kind in available_kinds()  # the backend is ours: an import error fails
    ups = _updates(n=100)
    recorded: list[bytes] = []
    agg = make_aggregator(kind, max_clients=len(IDS), clip=0.05,
                          rng=InsecureDeterministicRandom(5, warn=False),
                          observer=lambda d, c, b: recorded.append(b))
    res = agg.aggregate(ups, dropped=[7])
    assert res.survivors == (2, 3, 5, 11, 12)
    assert np.abs(res.mean - _mean(ups, res.survivors)).max() < 2e-6
    assert recorded and res.bytes_per_client_upload > 100 * 8


@pytest.mark.parametrize("kind", [AggregatorKind.HE_CKKS, AggregatorKind.HE_BFV])
def test_he_round_with_one_survivor_aborts_and_decrypts_nothing(kind: AggregatorKind) -> None:
    """The key holder must never decrypt a single client's update."""
    pytest.importorskip("tenseal")
    assert kind in available_kinds()  # the backend is ours: an import error fails
    rng = InsecureDeterministicRandom(8, warn=False)
    agg = make_aggregator(kind, max_clients=len(IDS), rng=rng)
    res = agg.aggregate(_updates(n=20), dropped=IDS[:-1])
    assert res.aborted and res.mean is None


def test_bad_inputs_raise_typed_errors() -> None:
    agg = InsecurePlainAggregator()
    with pytest.raises(ParameterError):
        agg.aggregate({})
    with pytest.raises(ParameterError):
        agg.aggregate({0: np.zeros(3)})
    with pytest.raises(ParameterError):
        agg.aggregate({1: np.zeros(3), 2: np.zeros(4)})
    with pytest.raises(ParameterError):
        agg.aggregate({1: np.array([np.nan, 0.0])})
    with pytest.raises(ParameterError):
        agg.aggregate({1: np.zeros(3)}, dropped=[9])
    masked = make_aggregator(AggregatorKind.SECAGG_PLUS, max_clients=2,
                             rng=InsecureDeterministicRandom(6, warn=False))
    with pytest.raises(ParameterError, match="max_clients"):
        masked.aggregate({1: np.zeros(3), 2: np.zeros(3), 3: np.zeros(3)})
    with pytest.raises(ParameterError):
        make_aggregator("plain", max_clients=2)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        MaskedAggregator(kind=AggregatorKind.PLAIN, spec=masked.spec)  # type: ignore[attr-defined]


def test_everyone_dropping_aborts_plain() -> None:
    res = InsecurePlainAggregator().aggregate({1: np.zeros(2)}, dropped=[1])
    assert res.aborted and res.mean is None


def test_result_invariants() -> None:
    with pytest.raises(ParameterError):
        AggregateResult(mean=None, survivors=(), aborted=False)
    with pytest.raises(ParameterError):
        AggregateResult(mean=np.zeros(1), survivors=(2, 1), aborted=False)


def test_dp_aggregator_is_noisy_but_unbiased_and_aborts_below_n_min() -> None:
    from secagg.train.aggregators import DPMaskedAggregator, DPSettings

    n = 512
    ups = {i: np.full(n, 0.01) for i in IDS}
    dp = DPSettings(mechanism="ddgauss", epsilon=50.0, l2_clip=1.0, rounds=2)
    agg = make_aggregator(AggregatorKind.SECAGG_PLUS, max_clients=len(IDS), dp=dp,
                          min_survivors=5, rng=InsecureDeterministicRandom(8, warn=False))
    assert isinstance(agg, DPMaskedAggregator)
    res = agg.aggregate(ups, dropped=[5])
    assert res.survivors == (2, 3, 7, 11, 12)
    err = res.mean - 0.01
    assert 0 < np.std(err) < 0.05 and abs(np.mean(err)) < 6 * np.std(err) / np.sqrt(n)
    assert "ε=50" in agg.description and "scale" in agg.description
    # two survivors < n_min = 5: nothing is released
    res2 = agg.aggregate(ups, dropped=[2, 3, 5, 7])
    assert res2.aborted and res2.mean is None
    with pytest.raises(ParameterError, match="budget"):
        agg.aggregate(ups)  # a third round exceeds the budget planned for 2
    with pytest.raises(ParameterError):
        DPSettings(mechanism="laplace", epsilon=1.0)
    with pytest.raises(ParameterError):
        make_aggregator(AggregatorKind.HE_CKKS, max_clients=3, dp=dp)
