"""Privacy/utility table: the same model, data, cohort and rounds at several ε.

Rows, all in one invocation and with one seed (same initial weights, same client
sampling):

* **non-private** — ``--aggregator plain`` (the reference, ε = ∞);
* **user-level DDGauss over SecAgg+** — ``--dp ddgauss --epsilon ε --dp-bits B``
  (B ≤ 16: the sum is taken mod 2^B), noise calibrated to the cohort;
* **sample-level DP-SGD** (over SecAgg+, or ``--dpsgd-aggregator plain``) —
  ``--dp-sgd`` with the noise multiplier
  calibrated (Opacus RDP) so that a client that takes part in *every* round, with
  the highest sampling rate of any client, ends at ε — an upper bound for every
  client; the report's realised per-client maximum is shown next to it.

Every row is a real ``secagg train`` run (``secagg.cli.main``), its report.json is
read back; the table gives the final validation loss and its gap to the
non-private run.  ``--seed`` makes the protocol secrets deterministic (a
simulation); the DP accounting does not depend on it.

Usage (the reduced grid the shared 2-core box allows; see README)::

    PYTHONPATH=. python benchmarks/privacy.py --out runs/privacy \
        --clients 400 --per-round 200 --rounds 5 --local-steps 1 \
        --epsilons 1,8 --dpsgd-epsilons 1,8
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def _calibrate_dpsgd(args: argparse.Namespace) -> tuple[float, int]:
    """(highest client sampling rate, steps of a client present in every round)."""
    from secagg.train.data import load_corpus, tokenize
    from secagg.train.model import ByteTokenizer

    corpus = load_corpus(None, args.clients)
    tok = ByteTokenizer()
    fewest = min(
        max(1, -(-len(tokenize(pieces, tok)) // args.seq_len)) for pieces in corpus.clients
    )
    return min(1.0, args.batch_size / fewest), args.rounds * args.local_steps


def _noise_multiplier(eps: float, delta: float, q: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=eps, target_delta=delta, sample_rate=q,
                                      steps=steps, accountant="rdp", epsilon_tolerance=0.01))


def _train(common: list[str], extra: list[str], out: Path) -> dict[str, Any]:
    from secagg.cli import main

    done = out / "report.json"
    if done.exists():  # a finished row of an earlier invocation with the same flags
        rep: dict[str, Any] = json.loads(done.read_text())
        if rep.get("bench_argv") == [*common, *extra]:
            print(f"reusing {done}", file=sys.stderr)
            return rep
    t0 = time.perf_counter()
    rc = main(["train", *common, *extra, "--out", str(out)])
    if rc != 0:
        raise SystemExit(f"secagg train {' '.join(extra)} failed with {rc}")
    rep = json.loads(done.read_text())
    rep["_wall_s"] = time.perf_counter() - t0
    rep["bench_argv"] = [*common, *extra]
    done.write_text(json.dumps(rep, indent=2) + "\n")
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--clients", type=int, default=400)
    ap.add_argument("--per-round", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local-steps", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--server-lr", type=float, default=1.0)
    ap.add_argument("--dp-clip", type=float, default=1.0)
    ap.add_argument("--dp-bits", type=int, default=16)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--epsilons", default="1,2,4,8", help="user-level DDGauss grid ('' = none)")
    ap.add_argument("--dpsgd-epsilons", default="1,2,4,8", help="DP-SGD grid ('' = none)")
    ap.add_argument("--dpsgd-aggregator", default="secagg+", choices=["secagg+", "plain"],
                    help="aggregation under the DP-SGD rows (its ε does not depend on it; "
                    "plain is faster on a small machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--client-batch", default=None, metavar="K",
                    help="passed to every run: clients per torch.func.vmap call in local "
                    "training (default: secagg train's auto)")
    args = ap.parse_args(argv)
    if args.dp_bits > 16:
        ap.error("--dp-bits must be <= 16 for this table")
    eps_u = [float(e) for e in args.epsilons.split(",") if e]
    eps_s = [float(e) for e in args.dpsgd_epsilons.split(",") if e]
    args.out.mkdir(parents=True, exist_ok=True)
    common = [
        "--clients", str(args.clients), "--per-round", str(args.per_round),
        "--rounds", str(args.rounds), "--local-steps", str(args.local_steps),
        "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len),
        "--lora-rank", str(args.lora_rank), "--lr", str(args.lr),
        "--server-lr", str(args.server_lr), "--delta", str(args.delta),
        "--seed", str(args.seed), "--samples", "0", "--no-progress", "--threads", "1",
        "--device", "cpu",
    ]
    if args.client_batch is not None:
        common += ["--client-batch", str(args.client_batch)]
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    ref = _train(common, ["--aggregator", "plain"], args.out / "nonprivate")
    base = ref["final_val_loss"]

    start = ref["initial_val_loss"]

    def row(kind: str, eps: float, rep: dict[str, Any], **kw: Any) -> None:
        last = rep["final_val_loss"]
        rows.append({
            "kind": kind, "epsilon_target": eps, "final_val_loss": last,
            "gap_vs_nonprivate": (last - base) / base,
            # a small gap means little when the non-private run hardly trains either:
            # the share of its loss reduction this run achieved
            "progress_vs_nonprivate": (start - last) / (start - base) if start != base
            else math.nan,
            "wall_s": rep["_wall_s"],
            "upload_bytes_per_client": rep["rounds"][-1]["bytes_per_client_upload"], **kw,
        })
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    row("non-private (plain)", math.inf, ref)
    for e in eps_u:
        rep = _train(common, ["--aggregator", "secagg+", "--dp", "ddgauss", "--epsilon", str(e),
                              "--dp-clip", str(args.dp_clip), "--dp-bits", str(args.dp_bits),
                              "--allow-noise-dominated"], args.out / f"ddgauss-eps{e:g}")
        plan = rep["user_dp_plan"]
        row("user-level DDGauss / SecAgg+", e, rep, epsilon_spent=rep["user_dp_epsilon"],
            noise_to_clip=plan["noise_to_clip"], bits=plan["bits"],
            noise_dominated_rounds=len(rep["noise_dominated_rounds"]))
    if eps_s:
        q, steps = _calibrate_dpsgd(args)
        for e in eps_s:
            z = _noise_multiplier(e, args.delta, q, steps)
            rep = _train(common, ["--aggregator", args.dpsgd_aggregator, "--dp-sgd",
                                  "--noise-multiplier",
                                  f"{z:.6g}", "--max-grad-norm", str(args.max_grad_norm)],
                         args.out / f"dpsgd-eps{e:g}")
            row(f"sample-level DP-SGD / {args.dpsgd_aggregator}", e, rep, noise_multiplier=z,
                epsilon_max_client=rep["dpsgd_epsilon_max"], sampling_rate_max=q)
    result = {"benchmark": "privacy", "config": vars(args) | {"out": str(args.out)},
              "initial_val_loss": start, "nonprivate_final_val_loss": base, "rows": rows,
              "wall_s": time.perf_counter() - t_all}
    (args.out / "privacy.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    md = markdown(result)
    (args.out / "privacy.md").write_text(md + "\n")
    print(md)
    _plot(args.out)
    return 0


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    lines = [
        f"clients {c['clients']}, {c['per_round']} per round, {c['rounds']} rounds, "
        f"{c['local_steps']} local step(s), batch {c['batch_size']} × {c['seq_len']} tokens, "
        f"{'LoRA rank ' + str(c['lora_rank']) if c['lora_rank'] else 'full training'}, "
        f"δ = {c['delta']:g}; validation loss {result['initial_val_loss']:.4f} before "
        f"training, {result['nonprivate_final_val_loss']:.4f} non-private after",
        "",
        "| mechanism | ε target | final val loss | gap vs non-private | share of non-private "
        "loss reduction | details |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "noise_to_clip" in r:
            det = (f"ε spent {r['epsilon_spent']:.3g}; {r['bits']}-bit sum; noise/clip "
                   f"{r['noise_to_clip']:.1f}; noise dominated {r['noise_dominated_rounds']} "
                   "rounds")
        elif "noise_multiplier" in r:
            det = (f"z = {r['noise_multiplier']:.3g}; max client ε {r['epsilon_max_client']:.3g}"
                   f" (q ≤ {r['sampling_rate_max']:.2f})")
        else:
            det = "plain, no DP"
        eps = "∞" if math.isinf(r["epsilon_target"]) else f"{r['epsilon_target']:g}"
        lines.append(f"| {r['kind']} | {eps} | {r['final_val_loss']:.4f} | "
                     f"{100 * r['gap_vs_nonprivate']:+.1f}% | "
                     f"{100 * r['progress_vs_nonprivate']:.0f}% | {det} |")
    lines.append("")
    lines.append(f"total wall time {result['wall_s'] / 60:.1f} min")
    return "\n".join(lines)


def _plot(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, d in enumerate(sorted(p for p in out.iterdir() if (p / "report.json").exists())):
        rep = json.loads((d / "report.json").read_text())
        xs = [r["round"] for r in rep["rounds"]]
        ys = [r["val_loss"] for r in rep["rounds"]]
        ax.plot(xs, ys, marker="os^vDP*x"[i % 8], linestyle=["-", "--", "-.", ":"][i % 4],
                label=d.name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("validation loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "privacy.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
