"""Per-client local-training cost: batched (torch.func.vmap over clients) vs sequential.

Both paths train the same clients from the same global weights on the same batches
(one :class:`~secagg.train.loop.FederatedTrainer` configuration, two trainers);
the measurements are interleaved (sequential, batched K1, batched K2, ..., repeated)
and the best of ``--reps`` is kept, so the ratio is taken under the same load.
The agreement of the two paths' updates is printed next to the timings.

Usage::

    PYTHONPATH=. python benchmarks/local_training.py --clients 32 --chunks 8,32 \
        --batch-size 8 --seq-len 64 --reps 2 [--lora-rank 8] [--dp-sgd] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32, help="clients trained per measurement")
    ap.add_argument("--chunks", default="8,32", help="clients per vmap call to measure")
    ap.add_argument("--local-steps", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dp-sgd", action="store_true",
                    help="DP-SGD local steps (z = 1, C = 1): Opacus one client at a time vs "
                    "the batched per-example path")
    ap.add_argument("--json", default=None, help="write the result here")
    args = ap.parse_args(argv)

    import torch

    from secagg.primitives.rand import InsecureDeterministicRandom
    from secagg.train.dpsgd_local import LocalDPSGDConfig
    from secagg.train.loop import FederatedTrainer, TrainConfig

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    chunks = [int(c) for c in args.chunks.split(",") if c]
    cfg = TrainConfig(rounds=1, clients=max(args.clients, 2), per_round=2,
                      local_steps=args.local_steps, batch_size=args.batch_size,
                      seq_len=args.seq_len, lora_rank=args.lora_rank, seed=0)
    clients = tuple(range(1, args.clients + 1))

    def trainer(k: int) -> FederatedTrainer:
        dp = LocalDPSGDConfig(noise_multiplier=1.0, max_grad_norm=1.0) if args.dp_sgd else None
        t = FederatedTrainer(cfg, sampling_rng=InsecureDeterministicRandom(0, warn=False),
                             device=args.device, client_batch=k, local_dp=dp,
                             secret_rng=InsecureDeterministicRandom(1, warn=False))
        t._round = 1
        return t

    paths = {"sequential": trainer(0), **{f"batched K={k}": trainer(k) for k in chunks}}
    for t in paths.values():  # warm-up (first-call costs of vmap and the kernels)
        t.local_updates(clients[:2])
    best: dict[str, float] = {}
    updates: dict[str, dict[int, tuple[np.ndarray, float]]] = {}
    for _ in range(args.reps):
        for name, t in paths.items():
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            updates[name] = t.local_updates(clients)
            if args.device == "cuda":
                torch.cuda.synchronize()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    ref = updates["sequential"]
    rows = []
    for name, sec in best.items():
        err = max(float(np.linalg.norm(updates[name][c][0] - ref[c][0])
                        / np.linalg.norm(ref[c][0])) for c in clients)
        rows.append({"path": name, "ms_per_client": 1000 * sec / len(clients),
                     "vs_sequential": best["sequential"] / sec, "max_rel_diff": err})
    out = {"benchmark": "local_training", "config": vars(args),
           "trainable_parameters": paths["sequential"].num_trainable,
           "load_average": os.getloadavg(), "rows": rows}
    for r in rows:
        print(f"{r['path']:>16}: {r['ms_per_client']:8.1f} ms/client  "
              f"speed-up vs sequential {r['vs_sequential']:.2f}x  "
              f"max relative update difference {r['max_rel_diff']:.1e}")
    print(f"load average {out['load_average']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
