"""Minimal federated fine-tuning of a small causal LM with any aggregator.

The server applies only the aggregate of the clients' updates.  torch,
transformers and peft are imported lazily (extra ``train``); importing this package
does not import them.

Typical use::

    from secagg.train import TrainConfig, run_training, make_aggregator, AggregatorKind
    from secagg.primitives.rand import SystemRandom

    cfg = TrainConfig(rounds=10, clients=16, per_round=8)
    agg = make_aggregator(AggregatorKind.SECAGG_PLUS, max_clients=cfg.per_round)
    result = run_training(cfg, agg, sampling_rng=SystemRandom())
"""

from secagg.train.aggregators import (
    AggregateResult,
    Aggregator,
    AggregatorKind,
    InsecurePlainAggregator,
    MaskedAggregator,
    available_kinds,
    make_aggregator,
)
from secagg.train.loop import (
    OptimizerKind,
    RoundRecord,
    TrainConfig,
    TrainResult,
    run_training,
)

__all__ = [
    "AggregateResult",
    "Aggregator",
    "AggregatorKind",
    "InsecurePlainAggregator",
    "MaskedAggregator",
    "OptimizerKind",
    "RoundRecord",
    "TrainConfig",
    "TrainResult",
    "available_kinds",
    "make_aggregator",
    "run_training",
]
