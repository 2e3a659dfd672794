"""Fixtures for the training-loop tests: one torch thread, a very small model."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One torch thread (the machine is shared; oversubscription is very slow), and the
    heavy imports paid once per session instead of inside whichever test runs first."""
    import matplotlib
    import torch
    import transformers

    torch.set_num_threads(1)
    matplotlib.use("Agg")
    import matplotlib.pyplot

    _ = transformers.LlamaForCausalLM, transformers.LlamaConfig


@pytest.fixture
def tiny_spec():
    from secagg.train.model import TinyLlamaSpec

    return TinyLlamaSpec(
        hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_positions=64
    )


@pytest.fixture
def tiny_config(tiny_spec):
    from secagg.train.loop import TrainConfig

    return TrainConfig(
        rounds=1,
        clients=4,
        per_round=3,
        local_steps=2,
        batch_size=4,
        seq_len=32,
        eval_windows=8,
        seed=5,
        spec=tiny_spec,
    )
