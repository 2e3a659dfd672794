"""``secagg train``: federated fine-tuning of a tiny causal LM with any aggregator.

Imports nothing heavy at module level (torch, transformers, peft, rich and
matplotlib are loaded inside :func:`run`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import json
import math
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from secagg import __version__
from secagg._extras import require
from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import InsecureConfigurationWarning, ParameterError
from secagg.primitives.rand import (
    AesCtrRandom,
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    randbelow,
)
from secagg.runtime.schemes import LightSecAggServerHalf
from secagg.train.aggregators import (
    AggregatorKind,
    DPSettings,
    DropTiming,
    available_kinds,
    lightsecagg_parameters,
    make_aggregator,
)
from secagg.train.checkpoint import Checkpoint, check_compatible
from secagg.train.checkpoint import load as load_checkpoint
from secagg.train.dpsgd_local import LocalDPSGDConfig
from secagg.train.engine import TRAIN_ENGINES
from secagg.train.loop import (
    FederatedTrainer,
    OptimizerKind,
    RoundRecord,
    TrainConfig,
    TrainResult,
    dropout_count,
    resolve_device,
    run_training,
)
from secagg.train.model import sample_text, save_pretrained
from secagg.train.privacy import UserDPAccountant, UserDPPlan, plan_user_dp

__all__ = ["add_arguments", "config_from_args", "run"]

_DEFAULTS = TrainConfig()
_PROMPTS = ("The ", "A list ", "If the ", "def ", "Note:")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``secagg train`` flags on ``parser``."""
    kinds = [k.value for k in AggregatorKind]
    g = parser.add_argument_group("federation")
    g.add_argument("--rounds", type=int, default=_DEFAULTS.rounds, help="FedAvg rounds (10)")
    g.add_argument(
        "--clients",
        type=int,
        default=None,
        help="number of clients (16; with --data DIR/<client>/ the number of sub-folders)",
    )
    g.add_argument("--per-round", type=int, default=_DEFAULTS.per_round,
                   help="clients sampled per round (8)")
    g.add_argument("--local-steps", type=int, default=_DEFAULTS.local_steps,
                   help=f"local training steps per client per round ({_DEFAULTS.local_steps})")
    g.add_argument("--aggregator", choices=kinds, default=AggregatorKind.SECAGG_PLUS.value,
                   help="how updates are summed (secagg+); 'plain' is the INSECURE baseline")
    g.add_argument("--dropout", type=float, default=0.0,
                   help="fraction of sampled clients that drop before sending their update (0)")
    g.add_argument("--drop-phase", choices=[d.value for d in DropTiming],
                   default=DropTiming.BEFORE_MASKED_INPUT.value,
                   help="secagg/secagg+/lightsecagg: when dropped clients stop replying "
                   "(masked-input)")
    g.add_argument("--compare", choices=["plain"], default=None,
                   help="also train the insecure plain baseline with the same seed and plot both")
    g.add_argument("--server-lr", type=float, default=_DEFAULTS.server_lr,
                   help="server learning rate on the mean update (1.0)")
    ls = parser.add_argument_group(
        "lightsecagg (N = --per-round clients per round; D = N - U dropouts tolerated)")
    ls.add_argument("--threshold", type=int, default=None, metavar="T",
                    help="privacy threshold T: colluding clients that, with the server, learn "
                    "nothing beyond the aggregate (default max(1, N // 4))")
    ls.add_argument("--target", type=int, default=None, metavar="U",
                    help="responses the server decodes the aggregate mask from, T < U <= N - "
                    "(clients --dropout drops per round) (default max(T + 1, ceil(N / 2)), "
                    "lowered to the planned survivors)")
    q = parser.add_argument_group(
        "quantization (secagg, secagg+, lightsecagg, he-bfv; --clip also he-ckks)")
    q.add_argument("--clip", type=float, default=0.05,
                   help="clip every update coordinate to [-clip, clip] (0.05)")
    q.add_argument("--value-bits", type=int, default=16, help="bits per quantized value (16)")
    d = parser.add_argument_group("distributed differential privacy (secagg, secagg+)")
    d.add_argument("--dp", choices=["ddgauss", "skellam"], default=None,
                   help="user-level distributed DP: clients add discrete noise before the "
                   "secure sum (off by default)")
    d.add_argument("--epsilon", type=float, default=10.0,
                   help="DP ε for the whole run (10; no subsampling amplification claimed)")
    d.add_argument("--delta", type=float, default=1e-5,
                   help="DP δ (1e-5): < 1/number of clients for --dp; < 1/(examples of the "
                   "largest client) for --dp-sgd")
    d.add_argument("--dp-clip", type=float, default=1.0,
                   help="L2 clip of each client's update under --dp (1.0)")
    d.add_argument("--dp-bits", type=int, default=16,
                   help="the secure sum under --dp works mod 2^bits (16)")
    d.add_argument("--allow-noise-dominated", action="store_true",
                   help="run a --dp plan whose expected noise exceeds 10x the clip norm "
                   "(refused by default, with the smallest cohort that passes)")
    s = parser.add_argument_group("sample-level DP-SGD in local training")
    s.add_argument("--dp-sgd", action="store_true",
                   help="every client trains with DP-SGD (Opacus per-example clipping, "
                   "noise from our CSPRNG); combines with any aggregator and with --dp")
    s.add_argument("--noise-multiplier", type=float, default=1.0,
                   help="DP-SGD noise std / clip norm (1.0)")
    s.add_argument("--max-grad-norm", type=float, default=1.0,
                   help="DP-SGD per-example L2 clip norm (1.0)")
    s.add_argument("--insecure-rng", action="store_true",
                   help="DP-SGD noise from torch's default generator (INSECURE; experiments)")
    m = parser.add_argument_group("model and data")
    m.add_argument("--lora-rank", type=int, default=_DEFAULTS.lora_rank,
                   help="0 = full training of the tiny model (default); R > 0 = LoRA rank R")
    m.add_argument("--model", default=None, metavar="PATH",
                   help="local Hugging Face model directory (never downloads)")
    m.add_argument("--data", default=None, metavar="DIR",
                   help="text files: one sub-folder per client, or files split across clients "
                   "(default: CPython's pydoc_data topics, non-IID by topic)")
    m.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size)
    m.add_argument("--seq-len", type=int, default=_DEFAULTS.seq_len)
    m.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="client learning rate")
    m.add_argument("--optimizer", choices=[o.value for o in OptimizerKind],
                   default=_DEFAULTS.optimizer.value)
    o = parser.add_argument_group("run")
    o.add_argument("--seed", type=int, default=None,
                   help="reproducible run: seeds torch and sampling, and makes the protocol "
                   "secrets deterministic (INSECURE, for simulations); default: fresh secrets")
    o.add_argument("--out", default=None, metavar="DIR",
                   help="output folder: report.json, metrics.csv, loss.png, the model "
                   "(model/ or adapter/, Hugging Face format) and checkpoints "
                   "(default runs/<timestamp>/)")
    o.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run saved in DIR from its last completed round "
                   "(same configuration; --rounds may grow unless a DP budget was planned)")
    o.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where local training runs (auto: cuda when available)")
    o.add_argument("--samples", type=int, default=3,
                   help="lines to sample from the final model (3)")
    o.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: robust on a shared machine; 0 = torch's default)")
    o.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bar")
    e = parser.add_argument_group("engine")
    e.add_argument("--engine", choices=list(TRAIN_ENGINES), default="inprocess",
                   help="where the sampled clients train, encode and mask: here (inprocess) "
                        "or on Ray actors (ray; needs secagg[ray])")
    e.add_argument("--workers", type=int, default=None, metavar="N",
                   help="--engine ray: actors hosting the clients (default: one per CPU, "
                        "at most --per-round)")
    e.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="--engine ray: join this cluster (host:port or ray://...; "
                        "default: a fresh local Ray)")
    e.add_argument("--client-batch", type=_client_batch, default=None, metavar="K",
                   help="inprocess: train K clients per torch.func.vmap call (0 = one at a "
                        "time; default auto: 64 on CUDA, one at a time on a CPU, where "
                        "batching measured no faster); models with dropout and "
                        "--insecure-rng fall back to one at a time")


def _client_batch(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or an integer >= 0, got {text!r}") \
            from None
    if k < 0:
        raise argparse.ArgumentTypeError(f"expected auto or an integer >= 0, got {k}")
    return k


def config_from_args(args: argparse.Namespace, *, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` that ``args`` describe.

    Raises
    ------
    ParameterError
        Any value out of range.
    """
    return TrainConfig(
        rounds=args.rounds,
        clients=args.clients,
        per_round=args.per_round,
        local_steps=args.local_steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        optimizer=OptimizerKind(args.optimizer),
        server_lr=args.server_lr,
        dropout=args.dropout,
        lora_rank=args.lora_rank,
        seed=seed,
        model_path=args.model,
        data_dir=args.data,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "secagg": __version__}
    for mod in ("numpy", "torch", "transformers", "peft", "cryptography"):
        try:
            out[mod] = str(__import__(mod).__version__)
        except ImportError:  # pragma: no cover
            out[mod] = "missing"
    return out


def _fresh_out_dir() -> Path:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / stamp
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _round_line(label: str, r: RoundRecord) -> str:
    if r.round == 0:
        return (
            f"[{label}] round 0 (initial model): val loss {r.val_loss:.3f} "
            f"ppl {r.val_perplexity:.1f}"
        )
    phases = " ".join(f"{k} {v:.2f}s" for k, v in r.phase_seconds.items() if "." not in k)
    status = "ABORTED" if r.aborted else f"survivors {r.survivors}/{len(r.sampled)}"
    if r.l2_clip is not None:
        frac = r.l2_clipped_fraction or 0.0
        clip = f"L2-clipped {100 * frac:.0f}% of updates (clip {r.l2_clip:g})"
    else:
        clip = f"coords clipped {100 * r.clipped_fraction:.2f}%"
    line = (
        f"[{label}] round {r.round}: train loss {r.train_loss:.3f}  val loss {r.val_loss:.3f} "
        f"ppl {r.val_perplexity:.1f}  {status}  up/client "
        f"{_fmt_bytes(r.bytes_per_client_upload)}  {clip}"
    )
    if r.signal_norm is not None and r.noise_norm is not None:
        line += f"  signal {r.signal_norm:.3g} noise {r.noise_norm:.3g}"
        if r.noise_to_signal is not None:
            line += f" (N/S {r.noise_to_signal:.1f})"
    if r.epsilon_cumulative is not None:
        line += f"  ε round {r.epsilon_round:.3g} total {r.epsilon_cumulative:.3g}"
    if r.dpsgd_epsilon:
        line += f"  DP-SGD ε max {max(r.dpsgd_epsilon.values()):.3g}"
    return line + f"  [{phases}]"


def _user_dp_settings(args: argparse.Namespace, cfg: TrainConfig) -> DPSettings:
    return DPSettings(mechanism=args.dp, epsilon=args.epsilon, delta=args.delta,
                      l2_clip=args.dp_clip, rounds=cfg.rounds, bits=args.dp_bits)


def _train_with_progress(
    label: str,
    cfg: TrainConfig,
    kind: AggregatorKind,
    *,
    args: argparse.Namespace,
    secret_rng: RandomSource,
    console: Any,
    show_bar: bool,
    private: bool,
    checkpoint_dir: Path,
    fingerprint: dict[str, Any],
    resume: Checkpoint | None,
    plans: dict[str, UserDPPlan],
) -> TrainResult:
    rich_progress = require("rich.progress", "train")
    dp = None
    if private and args.dp is not None and kind is not AggregatorKind.PLAIN:
        dp = _user_dp_settings(args, cfg)
    local_dp = None
    if private and args.dp_sgd:
        local_dp = LocalDPSGDConfig(noise_multiplier=args.noise_multiplier,
                                    max_grad_norm=args.max_grad_norm, delta=args.delta,
                                    insecure_rng=args.insecure_rng)
    min_survivors = cfg.per_round - dropout_count(cfg.per_round, cfg.dropout)
    agg = make_aggregator(
        kind,
        max_clients=cfg.per_round,
        clip=args.clip,
        value_bits=args.value_bits,
        rng=secret_rng,
        drop_timing=DropTiming(args.drop_phase),
        dp=dp,
        min_survivors=min_survivors,
        **({"privacy": args.threshold, "target": args.target}
           if kind is AggregatorKind.LIGHTSECAGG else {}),
    )
    sampling = InsecureDeterministicRandom(cfg.seed, "train/sampling", warn=False)
    progress = rich_progress.Progress(
        rich_progress.TextColumn("[bold]{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(),
        rich_progress.TimeElapsedColumn(),
        rich_progress.TextColumn("{task.fields[stats]}"),
        console=console,
        disable=not show_bar,
    )

    def on_start(trainer: FederatedTrainer) -> None:
        if dp is not None:
            plan = plan_user_dp(
                mechanism=dp.mechanism, epsilon=dp.epsilon, delta=dp.delta,
                dim=trainer.num_trainable, l2_clip=dp.l2_clip, bits=dp.bits,
                rounds=cfg.rounds, cohort=cfg.per_round, dropout=cfg.dropout,
                num_clients=trainer.num_clients,
                allow_noise_dominated=args.allow_noise_dominated,
            )
            if plan.min_survivors != min_survivors:  # pragma: no cover - same formula
                raise ParameterError("internal: DP plan and aggregator disagree on n_min")
            agg.params = plan.params  # type: ignore[attr-defined]  # the plan it would make
            trainer.user_dp = UserDPAccountant(plan.params, dp.delta)
            plans[label] = plan
            p = plan.params
            console.print(
                f"[{label}] user-level DP plan: local σ {p.local_stddev:.4g}, scale "
                f"{p.scale:.4g}, sum mod 2^{p.bits}, noise calibrated to {plan.min_survivors} "
                f"survivors; expected noise norm of the mean update {plan.noise_norm:.3g} "
                f"= {plan.noise_to_clip:.1f}× the L2 clip {p.l2_clip:g}",
                highlight=False, markup=False,
            )
            for w in plan.warnings:
                console.print(f"[yellow]WARNING: {w}[/yellow]", highlight=False)

    def on_round(rec: RoundRecord) -> None:
        progress.console.print(_round_line(label, rec), highlight=False, markup=False)
        if rec.noise_dominates:
            progress.console.print(
                f"[yellow]WARNING: round {rec.round}: noise dominates the update — expected "
                f"noise norm {rec.expected_noise_norm:.3g} is {rec.noise_to_signal:.1f}× the "
                f"norm of the clipped mean update {rec.signal_norm:.3g}[/yellow]",
                highlight=False,
            )
        stats = f"val {rec.val_loss:.3f} ppl {rec.val_perplexity:.1f}"
        if rec.round:
            stats += f" surv {rec.survivors} up {_fmt_bytes(rec.bytes_per_client_upload)}"
            progress.update(task, advance=1, stats=stats)
            progress.update(clients, visible=False)
        else:
            progress.update(task, stats=stats)

    console.print(f"[bold]{label}[/bold]: {agg.description}")
    if local_dp is not None:
        console.print(
            f"[bold]{label}[/bold]: + DP-SGD in local training (noise multiplier "
            f"{local_dp.noise_multiplier:g}, per-example clip {local_dp.max_grad_norm:g}, "
            f"Poisson sampling, noise from "
            f"{'torch (INSECURE)' if local_dp.insecure_rng else 'our AES-CTR CSPRNG'})"
        )
    def on_client(rnd: int, done: int, total: int) -> None:
        # the second bar: this round's clients as they finish local training
        if done < total:
            what = f"  round {rnd}: local training"
        else:
            what = f"  round {rnd}: aggregating ({agg.kind.value})"
        if done == 0:  # a new round: its own elapsed time
            progress.reset(clients, total=total, description=what, visible=True)
        else:
            progress.update(clients, description=what, completed=done, total=total,
                            visible=True)

    with progress:
        task = progress.add_task(label, total=cfg.rounds, stats="building model…")
        clients = progress.add_task("  clients", total=cfg.per_round, visible=False,
                                    stats="")
        return run_training(
            cfg, agg, sampling_rng=sampling, on_round=on_round, on_start=on_start,
            on_client=on_client if show_bar else None,
            device=args.device, local_dp=local_dp, secret_rng=secret_rng,
            checkpoint_dir=checkpoint_dir, fingerprint=fingerprint, resume=resume,
            engine=args.engine, workers=args.workers, ray_address=args.ray_address,
            threads=args.threads, client_batch=args.client_batch,
        )


def _plot(path: Path, runs: list[tuple[str, TrainResult]]) -> None:
    mpl = require("matplotlib", "train")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", "train")
    ticker = require("matplotlib.ticker", "train")
    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    styles = [("tab:blue", "-", "o"), ("tab:orange", "--", "s"), ("tab:green", "-.", "^")]
    for i, (label, res) in enumerate(runs):
        color, ls, mk = styles[i % len(styles)]
        xs = [r.round for r in res.rounds]
        ax.plot(xs, [r.val_loss for r in res.rounds], color=color, linestyle=ls, marker=mk,
                label=f"{label}: validation")
        tr = [(r.round, r.train_loss) for r in res.rounds if r.train_loss is not None
              and math.isfinite(r.train_loss)]
        if tr:
            ax.plot([x for x, _ in tr], [y for _, y in tr], color=color, linestyle=":",
                    marker=mk, markerfacecolor="none", alpha=0.8, label=f"{label}: train")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_xlabel("round (0 = initial model)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("secagg train: loss per round (train = mean over the round's clients)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_CSV_FIELDS = (
    "run", "round", "train_loss", "val_loss", "val_perplexity", "sampled", "survivors",
    "aborted", "bytes_per_client_upload", "update_norm", "mean_client_update_norm",
    "clipped_fraction", "l2_clipped_fraction", "signal_norm", "noise_norm",
    "expected_noise_norm", "noise_to_signal", "noise_dominates", "epsilon_round",
    "epsilon_cumulative", "dpsgd_epsilon_max", "seconds",
)


def _write_metrics_csv(path: Path, runs: list[tuple[str, TrainResult]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
        w.writeheader()
        for label, res in runs:
            for r in res.rounds:
                row: dict[str, Any] = {k: getattr(r, k) for k in _CSV_FIELDS
                                       if hasattr(r, k) and k != "sampled"}
                row["run"] = label
                row["sampled"] = len(r.sampled)
                row["dpsgd_epsilon_max"] = max(r.dpsgd_epsilon.values()) if r.dpsgd_epsilon \
                    else None
                row["seconds"] = sum(v for k, v in r.phase_seconds.items() if "." not in k)
                w.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _run_json(label: str, res: TrainResult) -> dict[str, Any]:
    return {
        "label": label,
        "aggregator": res.aggregator,
        "engine": res.engine,
        "workers": res.workers,
        "local_training": res.local_training,
        "seconds": res.seconds,
        "rounds": [r.to_json() for r in res.rounds],
    }


def _fingerprint(args: argparse.Namespace, cfg: TrainConfig, kind: AggregatorKind,
                 *, private: bool, deterministic: bool) -> dict[str, Any]:
    fp = {
        **cfg.to_json(),
        "aggregator": kind.value,
        "clip": args.clip,
        "value_bits": args.value_bits,
        "drop_phase": args.drop_phase,
        "dp": None if not private or args.dp is None or kind is AggregatorKind.PLAIN else {
            "mechanism": args.dp, "epsilon": args.epsilon, "delta": args.delta,
            "l2_clip": args.dp_clip, "bits": args.dp_bits,
        },
        "dp_sgd": None if not private or not args.dp_sgd else {
            "noise_multiplier": args.noise_multiplier, "max_grad_norm": args.max_grad_norm,
            "delta": args.delta, "insecure_rng": args.insecure_rng,
        },
        "deterministic_secrets": deterministic,
    }
    if kind is AggregatorKind.LIGHTSECAGG:  # absent for the other kinds: old checkpoints match
        fp["lightsecagg"] = {"threshold": args.threshold, "target": args.target}
    out: dict[str, Any] = json.loads(json.dumps(fp))
    return out


def _check_args(args: argparse.Namespace, kind: AggregatorKind) -> None:
    """Flag combinations and ranges that need no model: one-line errors, exit 2."""
    if args.samples < 0:
        raise ParameterError("--samples must be >= 0")
    if args.compare == "plain" and kind is AggregatorKind.PLAIN:
        raise ParameterError(
            "--compare plain with --aggregator plain would train the plain baseline twice"
        )
    if args.out is not None and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ParameterError(f"--out {args.out}: exists and is not a directory")
    if args.threads < 0:
        raise ParameterError("--threads must be >= 0")
    if args.dp is not None and kind not in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
        raise ParameterError(
            f"--dp (user-level distributed DP) runs over --aggregator secagg or secagg+, "
            f"not {kind.value}"
        )
    if args.dp is not None or args.dp_sgd:
        if not (math.isfinite(args.epsilon) and args.epsilon > 0):
            raise ParameterError(f"--epsilon must be > 0 (got {args.epsilon:g})")
        if not (math.isfinite(args.delta) and 0 < args.delta < 1):
            raise ParameterError(f"--delta must be in (0, 1) (got {args.delta:g})")
        if args.dp is not None and args.clients is not None and args.delta >= 1.0 / args.clients:
            # user-level DP protects one client: δ against the number of clients (DP-SGD's
            # sample-level δ is checked against each client's examples once they are known)
            raise ParameterError(
                f"--delta {args.delta:g} >= 1/{args.clients} (1/number of clients): use "
                f"δ < {1 / args.clients:.3g}, e.g. 1e-5"
            )
    if args.dp is not None and not (math.isfinite(args.dp_clip) and args.dp_clip > 0):
        raise ParameterError("--dp-clip must be > 0")
    if args.dp is not None and not 2 <= args.dp_bits <= 62:
        raise ParameterError("--dp-bits must be in [2, 62]")
    if args.insecure_rng and not args.dp_sgd:
        raise ParameterError("--insecure-rng only applies to --dp-sgd")
    if kind is AggregatorKind.LIGHTSECAGG:
        _check_lightsecagg(args)
    elif args.threshold is not None or args.target is not None:
        raise ParameterError(
            f"--threshold and --target are LightSecAgg's T and U (--aggregator lightsecagg), "
            f"not {kind.value}'s"
        )
    if args.engine == "inprocess" and (args.workers is not None or args.ray_address):
        raise ParameterError("--workers and --ray-address are for --engine ray")
    if args.workers is not None and args.workers < 1:
        raise ParameterError("--workers must be >= 1")
    if args.engine != "inprocess":
        if args.dp_sgd:
            raise ParameterError(f"--dp-sgd does not run on --engine {args.engine} yet")
        if args.dp is not None or kind not in (AggregatorKind.PLAIN, AggregatorKind.SECAGG,
                                               AggregatorKind.SECAGG_PLUS,
                                               AggregatorKind.LIGHTSECAGG):
            raise ParameterError(
                f"--engine {args.engine} runs --aggregator plain, secagg, secagg+ or "
                f"lightsecagg without --dp (got {kind.value}{' --dp' if args.dp else ''})"
            )
        require("ray", "ray")
    if args.allow_noise_dominated and args.dp is None:
        raise ParameterError("--allow-noise-dominated only applies to --dp")
    if args.dp_sgd:  # validate before any model is built
        LocalDPSGDConfig(noise_multiplier=args.noise_multiplier,
                         max_grad_norm=args.max_grad_norm, delta=args.delta,
                         insecure_rng=args.insecure_rng)
    resolve_device(args.device)


def _lightsecagg_json(args: argparse.Namespace, cfg: TrainConfig) -> dict[str, Any]:
    """The report's LightSecAgg parameters: what was asked and what every round used."""
    n = cfg.per_round
    t, u, d = lightsecagg_parameters(n, privacy=args.threshold, target=args.target,
                                     min_survivors=n - dropout_count(n, cfg.dropout))
    return {"threshold_flag": args.threshold, "target_flag": args.target,
            "clients_N": n, "privacy_T": t, "target_U": u, "dropout_tolerance_D": d}


@contextlib.contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Hugging Face's tqdm bars (\"Writing model shards\") on or off for the block;
    the previous setting is restored."""
    hf_logging = require("transformers.utils.logging", "train")
    was = hf_logging.is_progress_bar_enabled()
    if was and not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            hf_logging.enable_progress_bar()


def _check_lightsecagg(args: argparse.Namespace) -> None:
    """LightSecAgg's T, U and bit width for the per-round cohort, before any model is
    built (:func:`secagg.train.aggregators.lightsecagg_parameters`)."""
    n = args.per_round
    if not isinstance(n, int) or n < 2:
        raise ParameterError(f"--aggregator lightsecagg needs --per-round >= 2 (got {n})")
    if not (math.isfinite(args.dropout) and 0 <= args.dropout < 1):
        return  # TrainConfig reports a bad --dropout
    spec = QuantizationSpec(clip=args.clip, value_bits=args.value_bits, max_clients=n) \
        if math.isfinite(args.clip) and args.clip > 0 else None
    if spec is None:
        return  # the aggregator reports a bad --clip
    LightSecAggServerHalf(spec=spec, length=1).check_cohort(n)
    survivors = n - dropout_count(n, args.dropout)
    lightsecagg_parameters(n, privacy=args.threshold, target=args.target,
                           min_survivors=survivors)


def _load_resume(folder: Path, name: str) -> Checkpoint | None:
    sub = folder / "checkpoint" / name
    if not (sub / "state.json").exists():
        return None
    return load_checkpoint(sub)


def run(args: argparse.Namespace) -> int:
    """Run ``secagg train``; returns the exit status.

    Raises
    ------
    ParameterError
        Bad flags, an unavailable aggregator, unusable data/model paths, a DP plan
        that is refused, or a ``--resume`` folder from another configuration.
    """
    wall0 = time.perf_counter()
    rich_console = require("rich.console", "train")
    rich_table = require("rich.table", "train")
    kind = AggregatorKind(args.aggregator)
    if kind not in available_kinds():
        avail = ", ".join(k.value for k in available_kinds())
        raise ParameterError(
            f"aggregator {kind.value!r} is not available in this installation (have: {avail})"
        )
    _check_args(args, kind)
    if args.threads:
        require("torch", "train").set_num_threads(args.threads)
    resume_main: Checkpoint | None = None
    resume_base: Checkpoint | None = None
    if args.resume is not None:
        rdir = Path(args.resume)
        resume_main = _load_resume(rdir, "main")
        if resume_main is None:
            raise ParameterError(f"--resume: no checkpoint in {rdir}")
        resume_base = _load_resume(rdir, "baseline")
        saved_fp = resume_main.fingerprint
        if args.seed is not None and args.seed != saved_fp.get("seed"):
            raise ParameterError(
                f"--resume: the checkpoint is from another configuration (seed: "
                f"{saved_fp.get('seed')!r} → {args.seed!r})"
            )
        deterministic = bool(saved_fp.get("deterministic_secrets"))
        seed = int(saved_fp["seed"])
    else:
        deterministic = args.seed is not None
        seed = args.seed if deterministic else randbelow(SystemRandom(), 2**31)
    cfg = config_from_args(args, seed=seed)
    private = args.dp is not None or args.dp_sgd
    fp_main = _fingerprint(args, cfg, kind, private=True, deterministic=deterministic)
    fp_base = _fingerprint(args, cfg, AggregatorKind.PLAIN, private=False,
                           deterministic=deterministic)
    budget = args.dp is not None
    for ck, fp in ((resume_main, fp_main), (resume_base, fp_base)):
        if ck is not None:
            check_compatible(ck.fingerprint, fp, done=ck.round, rounds=cfg.rounds,
                             budget_over_rounds=budget)
    console = rich_console.Console(file=sys.stdout, highlight=False)
    if not console.is_terminal:  # logs: do not wrap round lines at 80 columns
        console = rich_console.Console(file=sys.stdout, highlight=False, width=200)
    show_bar = console.is_terminal and not args.no_progress
    secret_rng: RandomSource
    if deterministic:
        console.print(
            "[yellow]--seed given: protocol secrets come from InsecureDeterministicRandom "
            f"(seed {seed}) — reproducible, NOT secret; simulations only.[/yellow]"
        )
        if private:
            console.print("[yellow]--seed with --dp/--dp-sgd: the DP noise is known to whoever "
                          "knows the seed; the (ε, δ) guarantee does not hold against "
                          "them.[/yellow]")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            secret_rng = InsecureDeterministicRandom(seed, "train/secrets")
    else:
        secret_rng = AesCtrRandom()
    if args.out is not None:
        out = Path(args.out)
    elif args.resume is not None:
        out = Path(args.resume)
    else:
        out = _fresh_out_dir()
    out.mkdir(parents=True, exist_ok=True)

    runs: list[tuple[str, TrainResult]] = []
    plans: dict[str, UserDPPlan] = {}
    main_label = kind.value + (" + DP-SGD" if args.dp_sgd else "")
    res = _train_with_progress(
        main_label, cfg, kind, args=args, secret_rng=secret_rng, console=console,
        show_bar=show_bar, private=True, checkpoint_dir=out / "checkpoint" / "main",
        fingerprint=fp_main, resume=resume_main, plans=plans,
    )
    runs.append((main_label, res))
    if args.compare == "plain" and (kind is not AggregatorKind.PLAIN or private):
        base_label = "plain (insecure" + (", non-private" if private else "") + " baseline)"
        base = _train_with_progress(
            base_label, cfg, AggregatorKind.PLAIN, args=args,
            secret_rng=secret_rng, console=console, show_bar=show_bar, private=False,
            checkpoint_dir=out / "checkpoint" / "baseline", fingerprint=fp_base,
            resume=resume_base, plans=plans,
        )
        runs.append((base_label, base))

    # summary table
    table = rich_table.Table(title="secagg train — summary")
    table.add_column("round", justify="right")
    for label, _ in runs:
        table.add_column(f"{label}\nval loss", justify="right")
    table.add_column(f"{main_label}\ntrain loss", justify="right")
    table.add_column("survivors", justify="right")
    table.add_column("upload/client", justify="right")
    user_dp = res.user_dp_epsilon is not None
    if user_dp:
        table.add_column("user ε\n(cumulative)", justify="right")
        table.add_column("noise /\nsignal", justify="right")
    if res.dpsgd_epsilon is not None:
        table.add_column("DP-SGD ε\n(max client)", justify="right")
    table.add_column("round s", justify="right")
    for i, rec in enumerate(res.rounds):
        cells = [str(rec.round)]
        cells += [f"{r.rounds[i].val_loss:.3f}" if i < len(r.rounds) else "—" for _, r in runs]
        cells.append("—" if rec.train_loss is None else f"{rec.train_loss:.3f}")
        cells.append("—" if rec.round == 0 else f"{rec.survivors}/{len(rec.sampled)}")
        cells.append("—" if rec.round == 0 else _fmt_bytes(rec.bytes_per_client_upload))
        if user_dp:
            cells.append("—" if rec.epsilon_cumulative is None else f"{rec.epsilon_cumulative:.3g}")
            cells.append("—" if rec.noise_to_signal is None else f"{rec.noise_to_signal:.1f}")
        if res.dpsgd_epsilon is not None:
            cells.append(f"{max(rec.dpsgd_epsilon.values()):.3g}" if rec.dpsgd_epsilon else "—")
        cells.append(f"{sum(v for k, v in rec.phase_seconds.items() if '.' not in k):.1f}")
        table.add_row(*cells)
    console.print(table)

    first, last = res.rounds[0].val_loss, res.rounds[-1].val_loss
    console.print(
        f"model: {res.loaded.description}; {res.loaded.num_trainable:,} trainable parameters "
        f"travel per client"
    )
    console.print(f"data: {res.corpus_source}")
    console.print(
        f"validation loss {first:.3f} → {last:.3f} (perplexity "
        f"{res.rounds[0].val_perplexity:.1f} → {res.rounds[-1].val_perplexity:.1f})"
    )
    wall_total = time.perf_counter() - wall0
    console.print("wall time: " + ", ".join(f"{label} {r.seconds:.1f} s" for label, r in runs)
                  + f"; total {wall_total:.1f} s (set-up and every run)",
                  markup=False, highlight=False)
    report: dict[str, Any] = {
        "command": "secagg train",
        "config": {
            **cfg.to_json(),
            "aggregator": kind.value,
            "clip": args.clip,
            "value_bits": args.value_bits,
            "drop_phase": args.drop_phase,
            "dp": None if args.dp is None else {
                "mechanism": args.dp, "epsilon": args.epsilon, "delta": args.delta,
                "l2_clip": args.dp_clip, "bits": args.dp_bits,
                "allow_noise_dominated": args.allow_noise_dominated,
            },
            "dp_sgd": fp_main["dp_sgd"],
            "lightsecagg": _lightsecagg_json(args, cfg) if kind is AggregatorKind.LIGHTSECAGG
            else None,
            "compare": args.compare,
            "deterministic_secrets": deterministic,
            "device": resolve_device(args.device),
            "engine": res.engine,
            "workers": res.workers,
            "ray_address": args.ray_address,
            "resumed_from": None if resume_main is None else resume_main.round,
        },
        "versions": _versions(),
        "model": res.loaded.description,
        "trainable_parameters": res.loaded.num_trainable,
        "data": res.corpus_source,
        "aggregator": res.aggregator,
        "engine": res.engine,
        "workers": res.workers,
        "local_training": res.local_training,
        "seconds": res.seconds,
        "seconds_total": wall_total,
        "initial_val_loss": first,
        "final_val_loss": last,
        "rounds": [r.to_json() for r in res.rounds],
    }
    if main_label in plans:
        report["user_dp_plan"] = plans[main_label].to_json()
    if user_dp:
        report["user_dp_epsilon"] = res.user_dp_epsilon
        dominated = [r.round for r in res.rounds if r.noise_dominates]
        report["noise_dominated_rounds"] = dominated
        console.print(
            f"user-level DP: ε spent {res.user_dp_epsilon:.3g} at δ {args.delta:g} over "
            f"{len(res.rounds) - 1} rounds (realised survivor counts); noise dominated "
            f"{len(dominated)} of {len(res.rounds) - 1} rounds"
        )
    if res.dpsgd_epsilon is not None:
        eps = list(res.dpsgd_epsilon.values())
        report["dpsgd_epsilon_per_client"] = {str(k): v for k, v in res.dpsgd_epsilon.items()}
        report["dpsgd_epsilon_max"] = max(eps) if eps else 0.0
        report["dpsgd_epsilon_median"] = float(np.median(eps)) if eps else 0.0
        console.print(
            f"DP-SGD: sample-level ε per client after the run (δ {args.delta:g}): max "
            f"{report['dpsgd_epsilon_max']:.3g}, median {report['dpsgd_epsilon_median']:.3g} "
            f"over the {len(eps)} clients that trained"
        )
    if len(runs) > 1:
        base = runs[1][1]
        gap = abs(res.final_vector - base.final_vector)
        diff = float(gap.max())
        rel = float(
            (gap**2).sum() ** 0.5 / max(float((base.final_vector**2).sum() ** 0.5), 1e-30)
        )
        blast = base.rounds[-1].val_loss
        report["baseline"] = _run_json(runs[1][0], base)
        report["max_abs_param_diff_vs_baseline"] = diff
        report["median_abs_param_diff_vs_baseline"] = float(np.median(gap))
        report["relative_l2_param_diff_vs_baseline"] = rel
        report["val_loss_gap_vs_baseline"] = (last - blast) / blast
        console.print(
            f"parameter gap {main_label} vs plain after {cfg.rounds} rounds: max {diff:.3g}, "
            f"median {float(np.median(gap)):.3g}, relative L2 {rel:.3g}; final val loss "
            f"{last:.4f} vs {blast:.4f} ({100 * (last - blast) / blast:+.1f}%)"
        )
    if args.samples:
        lines = sample_text(
            res.loaded, prompts=[_PROMPTS[i % len(_PROMPTS)] for i in range(args.samples)],
            seed=seed,
        )
        report["samples"] = lines
        console.print("[bold]samples from the final model[/bold] (↵ marks a newline):")
        for line in lines:
            console.print("  " + line.replace("\n", " ↵ "), markup=False, highlight=False)
    with _hf_progress_bars(show_bar and sys.stderr.isatty()):  # off a TTY: no tqdm lines
        saved = save_pretrained(res.loaded, out, seed=cfg.seed, spec=cfg.spec,
                                model_path=cfg.model_path)
    report["saved_model"] = {k: str(v) for k, v in saved.items()}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _write_metrics_csv(out / "metrics.csv", runs)
    _plot(out / "loss.png", runs)
    what = ", ".join(f"{k} {v}" for k, v in saved.items())
    console.print(f"wrote {out / 'report.json'}, {out / 'metrics.csv'}, {out / 'loss.png'}; "
                  f"{what}")
    return 0
