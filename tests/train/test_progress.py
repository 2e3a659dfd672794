"""Per-client progress during a round's local training (#18 item 13): the loop reports
each sampled client as it finishes, so the CLI's second bar moves while clients train."""

from __future__ import annotations

import dataclasses

from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.train.aggregators import InsecurePlainAggregator
from secagg.train.loop import TrainConfig, run_training


def test_on_client_reports_every_client_of_every_round(tiny_config: TrainConfig) -> None:
    cfg = dataclasses.replace(tiny_config, rounds=2, clients=4, per_round=3)
    calls: list[tuple[int, int, int]] = []
    rounds: list[int] = []

    def on_round(rec) -> None:  # type: ignore[no-untyped-def]
        rounds.append(rec.round)
        calls.append((-1, rec.round, 0))  # marks where each round's record arrives

    run_training(cfg, InsecurePlainAggregator(), sampling_rng=InsecureDeterministicRandom(
        1, warn=False), on_client=lambda r, d, t: calls.append((r, d, t)), on_round=on_round)
    assert rounds == [0, 1, 2]
    per_round = [(r, d, 3) for r in (1, 2) for d in range(4)]
    # each round: 0/3 when local training starts, then one call per client, all
    # before that round's record
    assert calls == [(-1, 0, 0), *per_round[:4], (-1, 1, 0), *per_round[4:], (-1, 2, 0)]
