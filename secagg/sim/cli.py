"""``secagg simulate``: one aggregation round in-process, with dropouts, as JSON.

``--protocol secagg|secagg+`` runs the masking state machines here;
``--protocol he-ckks|he-bfv`` is dispatched to ``secagg.he.simulate.run(args)`` and
``--dp ddgauss|skellam`` to ``secagg.dp.simulate.run(args)`` (each returns the
JSON dict).  Heavy modules are imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

__all__ = ["add_arguments", "run", "simulate_masking"]

_PROTOCOLS = ("secagg", "secagg+", "he-ckks", "he-bfv")
_DROP_PHASES = ("share-keys", "masked-input", "consistency", "unmasking")
#: Runs with at least this many client x element products show a progress bar.
_PROGRESS_WORK = 10**7


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the common ``simulate`` flags (shared with the HE and DP teams)."""
    parser.add_argument("--protocol", choices=_PROTOCOLS, default="secagg+")
    parser.add_argument("--clients", type=int, default=100, metavar="N")
    parser.add_argument("--length", type=int, default=1000, metavar="M", help="elements per input")
    parser.add_argument("--dropout", type=float, default=0.0, metavar="F", help="fraction dropped")
    parser.add_argument(
        "--drop-phase",
        choices=_DROP_PHASES,
        default="masked-input",
        help="dropped clients stop replying before this phase",
    )
    parser.add_argument("--neighbors", type=int, default=None, metavar="K")
    parser.add_argument("--threshold", type=int, default=None, metavar="T")
    parser.add_argument(
        "--bits",
        type=int,
        default=None,
        metavar="B",
        help="modulus exponent (masking default: 32)",
    )
    parser.add_argument("--security", choices=("semi-honest", "malicious"), default="semi-honest")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="deterministic (INSECURE) randomness for a reproducible run",
    )
    parser.add_argument("--dp", choices=("none", "ddgauss", "skellam"), default="none")
    parser.add_argument("--epsilon", type=float, default=1.0, metavar="E")
    parser.add_argument("--delta", type=float, default=1e-5, metavar="D")
    parser.add_argument(
        "--rounds", type=int, default=1, help="--dp: training rounds the epsilon budget covers"
    )
    parser.add_argument(
        "--sampling-rate", type=float, default=1.0, help="--dp: client sampling rate per round"
    )
    parser.add_argument("--l2-clip", type=float, default=1.0, help="--dp: per-client L2 clip norm")
    parser.add_argument(
        "--preset",
        choices=("ckks-4096", "bfv-4096", "ckks-8192-flare"),
        default=None,
        help="he-*: parameter preset (default: the scheme's add-only preset)",
    )
    parser.add_argument(
        "--custody",
        choices=("shared-client-key", "separate-decryptor"),
        default=None,
        help="he-*: who holds the secret key (default: separate-decryptor)",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write JSON here ('-' = stdout)"
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip tracemalloc on the server (server_peak_mb becomes null)",
    )
    parser.add_argument("--workers", type=int, default=None, help="threads for client masking")


def run(args: argparse.Namespace) -> int:
    """Run the simulation the flags describe; print or write the JSON result."""
    if args.dp != "none":
        result = _delegate("secagg.dp.simulate", args)
    elif args.protocol in ("he-ckks", "he-bfv"):
        result = _delegate("secagg.he.simulate", args)
    else:
        result = simulate_masking(args)
    text = json.dumps(result, indent=2, sort_keys=False)
    if args.json == "-":
        print(text)
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    else:
        _summary(result)
    return 0


def _delegate(module: str, args: argparse.Namespace) -> dict[str, Any]:
    """Call ``module.run(args)`` (the HE / DP teams' simulations)."""
    from secagg.errors import LocalProtocolError

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("secagg"):
            raise LocalProtocolError(f"{module} is not available in this build") from None
        raise
    result: dict[str, Any] = mod.run(args)
    return result


def _summary(res: dict[str, Any]) -> None:
    """One human-readable line (any protocol's result dict)."""
    if res.get("aborted"):
        status = f"ABORTED: {res.get('abort_reason')}"
    else:
        status = f"exact={res.get('exact')}"
    parts = [f"{res.get('protocol')} n={res.get('clients')} m={res.get('length')}"]
    if res.get("neighbors") is not None:
        parts.append(f"k={res['neighbors']} t={res.get('threshold')}")
    parts.append(f"survivors={res.get('survivors')} {status};")
    for key, label in (("client_cpu_total_s", "client CPU"), ("server_cpu_total_s", "server CPU")):
        if isinstance(res.get(key), (int, float)):
            parts.append(f"{label} {res[key]:.3f} s,")
    if isinstance(res.get("bytes_per_client_upload"), (int, float)):
        parts.append(f"upload {res['bytes_per_client_upload']:.0f} B/client,")
    if isinstance(res.get("wall_s"), (int, float)):
        parts.append(f"wall {res['wall_s']:.2f} s")
    print(" ".join(parts))


def simulate_masking(args: argparse.Namespace) -> dict[str, Any]:
    """The masking (SecAgg / SecAgg+) simulation behind ``secagg simulate``."""
    import os
    import time
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from secagg.errors import InsecureConfigurationWarning, ParameterError
    from secagg.masking.config import ProtocolKind, SecurityMode
    from secagg.primitives.prg import dtype_for_bits
    from secagg.primitives.rand import InsecureDeterministicRandom, RandomSource, SystemRandom
    from secagg.sim.runtime import (
        PHASES,
        DropPhase,
        build_config,
        choose_dropouts,
        plaintext_sum,
        run_round,
    )

    n, length = args.clients, args.length
    if n < 2 or length < 1:
        raise ParameterError("--clients must be >= 2 and --length >= 1")
    bits = 32 if args.bits is None else args.bits
    dt = dtype_for_bits(bits)
    protocol = ProtocolKind(args.protocol)
    security = SecurityMode(args.security)
    rng: RandomSource
    if args.seed is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            rng = InsecureDeterministicRandom(args.seed)
    else:
        rng = SystemRandom()
    wall0 = time.perf_counter()
    ids = list(range(1, n + 1))
    cfg, idkeys = build_config(
        ids,
        bits=bits,
        length=length,
        protocol=protocol,
        security=security,
        neighbors=args.neighbors,
        threshold=args.threshold,
        rng=rng,
    )
    width = np.dtype(dt).itemsize
    inputs = {}
    for u in ids:  # simulation inputs: uniform in Z_{2^bits}, from the (seeded) CSPRNG
        x = np.frombuffer(rng.child(f"input/{u}").random_bytes(width * length), dtype=dt).copy()
        if bits < 8 * width:
            np.bitwise_and(x, dt((1 << bits) - 1), out=x)
        inputs[u] = x
    dropped = choose_dropouts(ids, args.dropout, rng.child("dropouts"))
    dropouts = {DropPhase(args.drop_phase): dropped} if dropped else None
    workers = args.workers or os.cpu_count() or 1
    progress_cb, finish = _progress(n * length >= _PROGRESS_WORK)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            report = run_round(
                inputs,
                config=cfg,
                rng=rng,
                identity_keys=idkeys,
                dropouts=dropouts,
                executor=pool if workers > 1 else None,
                workers=workers,
                measure_memory=not args.no_memory,
                progress=progress_cb,
            )
    finally:
        finish()
    exact = None
    if report.total is not None:
        exact = bool(np.array_equal(report.total, plaintext_sum(inputs, report.survivors, bits)))
    stats = report.stats()
    client_total = float(stats["client_cpu_total_s"])  # type: ignore[arg-type]
    server_total = float(stats["server_cpu_total_s"])  # type: ignore[arg-type]
    return {
        "protocol": protocol.value,
        "security": security.value,
        "clients": n,
        "length": length,
        "bits": bits,
        "neighbors": cfg.degree,
        "threshold": cfg.threshold,
        "dropout": args.dropout,
        "drop_phase": args.drop_phase,
        "dropped": len(dropped),
        "survivors": len(report.survivors) if not report.aborted else 0,
        "aborted": report.aborted,
        "abort_reason": report.abort_reason,
        "exact": exact,
        "client_cpu_s": {p: report.client_cpu_s[p] for p in PHASES},
        "server_cpu_s": {p: report.server_cpu_s[p] for p in PHASES},
        "client_cpu_total_s": client_total,
        "server_cpu_total_s": server_total,
        "total_cpu_s": client_total + server_total,
        "bytes_per_client_upload": report.bytes_per_client_upload,
        "bytes_per_client_download": report.bytes_to_clients / n,
        "server_peak_mb": report.server_peak_mb,
        "wall_s": time.perf_counter() - wall0,
        "round_wall_s": report.wall_s,
        "seed": args.seed,
        "sets": {k: len(v) for k, v in report.sets.items()},
    }


def _progress(enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import Progress

    prog = Progress(console=Console(stderr=True), transient=True)
    prog.start()
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = prog.add_task(phase, total=total)
        prog.update(tasks[phase], completed=done, total=total)

    return update, prog.stop


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(run(p.parse_args()))
