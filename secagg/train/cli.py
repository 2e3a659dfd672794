"""``secagg train``: federated fine-tuning of a tiny causal LM with any aggregator.

Imports nothing heavy at module level (torch, transformers, peft, rich and
matplotlib are loaded inside :func:`run`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from secagg import __version__
from secagg._extras import require
from secagg.errors import InsecureConfigurationWarning, ParameterError
from secagg.primitives.rand import (
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    randbelow,
)
from secagg.train.aggregators import (
    AggregatorKind,
    DPSettings,
    DropTiming,
    available_kinds,
    make_aggregator,
)
from secagg.train.loop import (
    OptimizerKind,
    RoundRecord,
    TrainConfig,
    TrainResult,
    dropout_count,
    run_training,
)
from secagg.train.model import sample_text

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
                   help="secagg/secagg+: when dropped clients stop replying (masked-input)")
    g.add_argument("--compare", choices=["plain"], default=None,
                   help="also train the insecure plain baseline with the same seed and plot both")
    g.add_argument("--server-lr", type=float, default=_DEFAULTS.server_lr,
                   help="server learning rate on the mean update (1.0)")
    q = parser.add_argument_group("quantization (secagg, secagg+, he-bfv; --clip also he-ckks)")
    q.add_argument("--clip", type=float, default=0.05,
                   help="clip every update coordinate to [-clip, clip] (0.05)")
    q.add_argument("--value-bits", type=int, default=16, help="bits per quantized value (16)")
    d = parser.add_argument_group("distributed differential privacy (secagg, secagg+)")
    d.add_argument("--dp", choices=["ddgauss", "skellam"], default=None,
                   help="user-level distributed DP: clients add discrete noise before the "
                   "secure sum (off by default)")
    d.add_argument("--epsilon", type=float, default=10.0,
                   help="DP ε for the whole run (10; no subsampling amplification claimed)")
    d.add_argument("--delta", type=float, default=1e-5, help="DP δ (1e-5)")
    d.add_argument("--dp-clip", type=float, default=1.0,
                   help="L2 clip of each client's update under --dp (1.0)")
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
                   help="output folder for report.json and loss.png (default runs/<timestamp>/)")
    o.add_argument("--samples", type=int, default=3,
                   help="lines to sample from the final model (3)")
    o.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: robust on a shared machine; 0 = torch's default)")
    o.add_argument("--no-progress", action="store_true", help="plain log lines, no progress bar")


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
    return (
        f"[{label}] round {r.round}: train loss {r.train_loss:.3f}  val loss {r.val_loss:.3f} "
        f"ppl {r.val_perplexity:.1f}  {status}  up/client "
        f"{_fmt_bytes(r.bytes_per_client_upload)}  clipped {100 * r.clipped_fraction:.2f}%  "
        f"[{phases}]"
    )


def _train_with_progress(
    label: str,
    cfg: TrainConfig,
    kind: AggregatorKind,
    *,
    args: argparse.Namespace,
    secret_rng: RandomSource,
    console: Any,
    show_bar: bool,
) -> TrainResult:
    rich_progress = require("rich.progress", "train")
    dp = None
    if getattr(args, "dp", None) is not None and kind is not AggregatorKind.PLAIN:
        dp = DPSettings(mechanism=args.dp, epsilon=args.epsilon, delta=args.delta,
                        l2_clip=args.dp_clip, rounds=cfg.rounds)
    agg = make_aggregator(
        kind,
        max_clients=cfg.per_round,
        clip=args.clip,
        value_bits=args.value_bits,
        rng=secret_rng,
        drop_timing=DropTiming(args.drop_phase),
        dp=dp,
        min_survivors=cfg.per_round - dropout_count(cfg.per_round, cfg.dropout),
    )
    console.print(f"[bold]{label}[/bold]: {agg.description}")
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

    def on_round(rec: RoundRecord) -> None:
        progress.console.print(_round_line(label, rec), highlight=False, markup=False)
        stats = f"val {rec.val_loss:.3f} ppl {rec.val_perplexity:.1f}"
        if rec.round:
            stats += f" surv {rec.survivors} up {_fmt_bytes(rec.bytes_per_client_upload)}"
            progress.update(task, advance=1, stats=stats)
        else:
            progress.update(task, stats=stats)

    with progress:
        task = progress.add_task(label, total=cfg.rounds, stats="building model…")
        return run_training(cfg, agg, sampling_rng=sampling, on_round=on_round)


def _plot(path: Path, runs: list[tuple[str, TrainResult]]) -> None:
    mpl = require("matplotlib", "train")
    mpl.use("Agg")
    plt = require("matplotlib.pyplot", "train")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, res in runs:
        xs = [r.round for r in res.rounds]
        ys = [r.val_loss for r in res.rounds]
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("round (0 = initial model)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("secagg train: validation loss per round")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_json(label: str, res: TrainResult) -> dict[str, Any]:
    return {
        "label": label,
        "aggregator": res.aggregator,
        "seconds": res.seconds,
        "rounds": [r.to_json() for r in res.rounds],
    }


def run(args: argparse.Namespace) -> int:
    """Run ``secagg train``; returns the exit status.

    Raises
    ------
    ParameterError
        Bad flags, an unavailable aggregator, or unusable data/model paths.
    """
    rich_console = require("rich.console", "train")
    rich_table = require("rich.table", "train")
    kind = AggregatorKind(args.aggregator)
    if kind not in available_kinds():
        avail = ", ".join(k.value for k in available_kinds())
        raise ParameterError(
            f"aggregator {kind.value!r} is not available in this installation (have: {avail})"
        )
    if args.samples < 0:
        raise ParameterError("--samples must be >= 0")
    if args.threads < 0:
        raise ParameterError("--threads must be >= 0")
    if args.threads:
        require("torch", "train").set_num_threads(args.threads)
    if args.dp is not None and kind not in (AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS):
        raise ParameterError("--dp runs over --aggregator secagg or secagg+")
    deterministic = args.seed is not None
    seed = args.seed if deterministic else randbelow(SystemRandom(), 2**31)
    cfg = config_from_args(args, seed=seed)
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
        if args.dp is not None:
            console.print("[yellow]--seed with --dp: the DP noise is known to whoever knows "
                          "the seed; the (ε, δ) guarantee does not hold against them.[/yellow]")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            secret_rng = InsecureDeterministicRandom(seed, "train/secrets")
    else:
        secret_rng = SystemRandom()
    out = Path(args.out) if args.out is not None else _fresh_out_dir()
    out.mkdir(parents=True, exist_ok=True)

    runs: list[tuple[str, TrainResult]] = []
    main_label = kind.value
    res = _train_with_progress(
        main_label, cfg, kind, args=args, secret_rng=secret_rng, console=console,
        show_bar=show_bar,
    )
    runs.append((main_label, res))
    if args.compare == "plain" and kind is not AggregatorKind.PLAIN:
        base = _train_with_progress(
            "plain (insecure baseline)", cfg, AggregatorKind.PLAIN, args=args,
            secret_rng=secret_rng, console=console, show_bar=show_bar,
        )
        runs.append(("plain (insecure baseline)", base))

    # summary table
    table = rich_table.Table(title="secagg train — summary")
    table.add_column("round", justify="right")
    for label, _ in runs:
        table.add_column(f"{label}\nval loss", justify="right")
    table.add_column(f"{main_label}\ntrain loss", justify="right")
    table.add_column("survivors", justify="right")
    table.add_column("upload/client", justify="right")
    table.add_column("round s", justify="right")
    for i, rec in enumerate(res.rounds):
        cells = [str(rec.round)]
        cells += [f"{r.rounds[i].val_loss:.3f}" for _, r in runs]
        cells.append("—" if rec.train_loss is None else f"{rec.train_loss:.3f}")
        cells.append("—" if rec.round == 0 else f"{rec.survivors}/{len(rec.sampled)}")
        cells.append("—" if rec.round == 0 else _fmt_bytes(rec.bytes_per_client_upload))
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
        f"{res.rounds[0].val_perplexity:.1f} → {res.rounds[-1].val_perplexity:.1f}); "
        f"{res.seconds:.1f} s"
    )
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
                "l2_clip": args.dp_clip,
            },
            "compare": args.compare,
            "deterministic_secrets": deterministic,
        },
        "versions": _versions(),
        "model": res.loaded.description,
        "trainable_parameters": res.loaded.num_trainable,
        "data": res.corpus_source,
        "aggregator": res.aggregator,
        "seconds": res.seconds,
        "initial_val_loss": first,
        "final_val_loss": last,
        "rounds": [r.to_json() for r in res.rounds],
    }
    if len(runs) > 1:
        base = runs[1][1]
        gap = abs(res.final_vector - base.final_vector)
        diff = float(gap.max())
        rel = float(
            (gap**2).sum() ** 0.5 / max(float((base.final_vector**2).sum() ** 0.5), 1e-30)
        )
        report["baseline"] = _run_json(runs[1][0], base)
        report["max_abs_param_diff_vs_baseline"] = diff
        report["median_abs_param_diff_vs_baseline"] = float(np.median(gap))
        report["relative_l2_param_diff_vs_baseline"] = rel
        console.print(
            f"parameter gap {main_label} vs plain after {cfg.rounds} rounds: max {diff:.3g}, "
            f"median {float(np.median(gap)):.3g}, relative L2 {rel:.3g}; final val loss "
            f"{last:.4f} vs {base.rounds[-1].val_loss:.4f}"
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
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _plot(out / "loss.png", runs)
    console.print(f"wrote {out / 'report.json'} and {out / 'loss.png'}")
    return 0
