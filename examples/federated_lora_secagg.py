"""Federated LoRA fine-tuning with SecAgg+, through the library API (not the CLI).

    python examples/federated_lora_secagg.py [--model PATH] [--rounds 5] [--clients 8]
        [--per-round 4] [--local-steps 5] [--lora-rank 8] [--dropout 0.25] [--tiny]

Each round the sampled clients train LoRA adapters from the global weights on their
own text (CPython's pydoc topics, split non-IID by topic, or ``--data DIR``); only
the adapter deltas are securely summed with SecAgg+; the server applies the mean.

``--model PATH`` takes a local Hugging Face causal-LM directory (a pretrained small
LLM — what LoRA is for; never downloads).  Without it a tiny random-init Llama is
used, on which LoRA learns slowly (the CLI's default is full training for that
reason).  ``--tiny`` shrinks the model and batches for a smoke test.
"""

from __future__ import annotations

import argparse

from secagg.primitives.rand import InsecureDeterministicRandom, SystemRandom
from secagg.train import AggregatorKind, TrainConfig, make_aggregator, run_training
from secagg.train.model import TinyLlamaSpec, sample_text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=4)
    ap.add_argument("--local-steps", type=int, default=5)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--dropout", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="very small model and batches")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    spec = TinyLlamaSpec()
    extra = {}
    if args.tiny:
        spec = TinyLlamaSpec(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                             max_positions=64)
        extra = {"batch_size": 4, "seq_len": 32, "eval_windows": 8}
    cfg = TrainConfig(
        rounds=args.rounds, clients=args.clients, per_round=args.per_round,
        local_steps=args.local_steps, lora_rank=args.lora_rank, lr=1e-2,
        dropout=args.dropout, seed=args.seed, model_path=args.model, data_dir=args.data,
        spec=spec, **extra,
    )
    # Secrets (masks, keys, rounding) from the OS CSPRNG; client sampling is public and
    # seeded so the run's schedule is reproducible.
    aggregator = make_aggregator(
        AggregatorKind.SECAGG_PLUS, max_clients=cfg.per_round, clip=0.05, value_bits=16,
        rng=SystemRandom(),
    )
    print(aggregator.description)
    sampling = InsecureDeterministicRandom(args.seed, "example/sampling", warn=False)

    def show(rec):  # one line per round
        extra = "" if rec.round == 0 else (
            f" train {rec.train_loss:.3f} survivors {rec.survivors}/{len(rec.sampled)} "
            f"upload {rec.bytes_per_client_upload / 1024:.1f} KiB/client"
        )
        print(f"round {rec.round}: val loss {rec.val_loss:.3f}{extra}")

    result = run_training(cfg, aggregator, sampling_rng=sampling, on_round=show)
    print(f"{result.loaded.description}: {result.loaded.num_trainable:,} LoRA parameters "
          "travel per client")
    print(f"val loss {result.rounds[0].val_loss:.3f} -> {result.rounds[-1].val_loss:.3f}")
    for line in sample_text(result.loaded, prompts=["The "], max_new_tokens=40, seed=args.seed):
        print("sample:", line.replace("\n", " | "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
