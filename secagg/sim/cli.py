"""``secagg simulate``: one aggregation round with dropouts, as JSON.

``--protocol secagg|secagg+`` runs the masking state machines;
``--protocol he-ckks|he-bfv`` is :func:`secagg.sim.he.run` and ``--dp
ddgauss|skellam`` :func:`secagg.sim.dp.run` (each returns the JSON dict).  Every
round runs on the engine ``--engine`` names (in-process threads, forked worker
processes, or Ray actors — ``--ray-address`` joins a cluster) through the one
driver; the JSON of every engine carries ``engine``, ``workers`` and
``transcript_digest``.  Heavy modules are imported inside :func:`run` only.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument(
        "--engine",
        choices=("inprocess", "processes", "ray", "net"),
        default="inprocess",
        help="where the clients run: threads here, forked processes, Ray actors, or "
        "(net) client processes talking mutual TLS to a server here (secagg.net)",
    )
    parser.add_argument(
        "--crash",
        type=float,
        default=0.0,
        metavar="F",
        help="--engine net: fraction of clients SIGKILLed at random points of random phases",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="threads / processes / Ray actors hosting the clients (default: one per CPU)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="--engine ray: join this cluster (host:port or ray://...; default: a local Ray)",
    )
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds each phase waits for replies (default: until every client answered)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulation the flags describe; print or write the JSON result."""
    from secagg.errors import ParameterError

    if args.ray_address is not None and args.engine != "ray":
        raise ParameterError("--ray-address needs --engine ray")
    if args.workers is not None and args.workers < 1:
        raise ParameterError("--workers must be >= 1")
    if args.engine == "net":
        result = _simulate_net(args)
    elif args.crash:
        raise ParameterError("--crash needs --engine net")
    elif args.dp != "none":
        from secagg.sim import dp

        result = dp.run(args)
    elif args.protocol in ("he-ckks", "he-bfv"):
        from secagg.sim import he

        result = he.run(args)
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


def _simulate_net(args: argparse.Namespace) -> dict[str, Any]:
    """``--engine net``: :func:`secagg.net.simulate.simulate_net` (masking rounds only)."""
    from secagg.errors import ParameterError
    from secagg.masking.config import ProtocolKind, SecurityMode
    from secagg.net.simulate import simulate_net

    if args.dropout:
        raise ParameterError("--engine net injects faults with --crash, not --dropout")
    if args.dp != "none" or args.protocol not in ("secagg", "secagg+"):
        raise ParameterError("--engine net runs the masking protocols (secagg, secagg+) only")
    return simulate_net(
        clients=args.clients,
        length=args.length,
        bits=32 if args.bits is None else args.bits,
        protocol=ProtocolKind(args.protocol),
        security=SecurityMode(args.security),
        neighbors=args.neighbors,
        threshold=args.threshold,
        crash=args.crash,
        seed=args.seed,
        phase_timeout=args.phase_timeout if args.phase_timeout is not None else 10.0,
        client_procs=args.workers,
        measure_memory=not args.no_memory,
    )


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


def _status_kb(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def simulate_masking(args: argparse.Namespace) -> dict[str, Any]:
    """The masking (SecAgg / SecAgg+) simulation behind ``secagg simulate``.

    Inputs are drawn inside the workers from ``rng.child("input/<u>")`` (no vector
    crosses a process boundary); the exactness check regenerates the survivors'
    inputs here and adds them up.
    """
    import os
    import time
    import warnings

    import numpy as np

    from secagg.errors import InsecureConfigurationWarning, ParameterError
    from secagg.masking.config import ProtocolKind, SecurityMode
    from secagg.primitives.prg import dtype_for_bits
    from secagg.primitives.rand import InsecureDeterministicRandom, RandomSource, SystemRandom
    from secagg.runtime.api import drop_schedule, run_masking_round
    from secagg.runtime.parties import (
        GeneratedInputs,
        MaskingClientFactory,
        RngRecipe,
        generate_input,
    )
    from secagg.sim.runtime import PHASES, DropPhase, build_config, choose_dropouts

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
    rss0_kb = _status_kb("VmRSS")
    rss_reset = _reset_peak_rss()
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
    recipe = RngRecipe.of(rng)
    factory = MaskingClientFactory(
        config=cfg,
        inputs=GeneratedInputs(recipe, bits, length),
        rng=recipe,
        identity={u: k.private_bytes() for u, k in idkeys.items()},
    )
    dropped = choose_dropouts(ids, args.dropout, rng.child("dropouts"))
    dropouts = {DropPhase(args.drop_phase): dropped} if dropped else None
    workers = args.workers or os.cpu_count() or 1
    progress_cb, finish = _progress(args.engine == "inprocess" and n * length >= _PROGRESS_WORK)
    from secagg.sim.runtime import _SimListener

    try:
        out = run_masking_round(
            factory,
            engine=args.engine,
            workers=workers,
            ray_address=args.ray_address,
            dropouts=drop_schedule(dropouts, security),
            listener=_SimListener(None, progress_cb),
            phase_timeout=args.phase_timeout,
            unmask_threads=min(2, os.cpu_count() or 1),
            measure_memory=not args.no_memory,
        )
    finally:
        finish()
    round_wall = out.wall_s
    exact = None
    if out.result is not None and not out.aborted:
        acc = np.zeros(length, dtype=dt)
        for u in out.survivors:
            np.add(acc, generate_input(rng.child(f"input/{u}"), bits, length), out=acc)
        if bits < 8 * np.dtype(dt).itemsize:
            np.bitwise_and(acc, dt((1 << bits) - 1), out=acc)
        exact = bool(np.array_equal(out.result, acc))
    peak_kb = _status_kb("VmHWM")
    stats = {p.key: s for p, s in out.phases.items()}
    client_cpu = {
        p: (
            stats[p].client_cpu_s / stats[p].client_steps
            if p in stats and stats[p].client_steps
            else 0.0
        )
        for p in PHASES
    }
    server_cpu = {p: (stats[p].server_cpu_s if p in stats else 0.0) for p in PHASES}
    server_cpu["unmasking"] += out.finalize_cpu_s
    client_total = sum(s.client_cpu_s for s in out.phases.values())
    server_total = sum(server_cpu.values())
    return {
        "protocol": protocol.value,
        "security": security.value,
        "engine": out.engine,
        "workers": out.workers,
        "clients": n,
        "length": length,
        "bits": bits,
        "neighbors": cfg.degree,
        "threshold": cfg.threshold,
        "dropout": args.dropout,
        "drop_phase": args.drop_phase,
        "dropped": len(dropped),
        "survivors": len(out.survivors) if not out.aborted else 0,
        "aborted": out.aborted,
        "abort_reason": out.abort_reason,
        "exact": exact,
        "transcript_digest": out.transcript_digest,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "client_cpu_total_s": client_total,
        "client_cpu_per_client_s": client_total / n,
        "server_cpu_total_s": server_total,
        "total_cpu_s": client_total + server_total,
        "bytes_per_client_upload": out.bytes_to_server / n,
        "bytes_per_client_download": out.bytes_to_clients / n,
        "server_peak_mb": out.server_peak_mb,
        "server_peak_rss_mb": (peak_kb - rss0_kb) / 1024 if rss_reset else None,
        "memory_note": (
            "server_peak_mb: tracemalloc peak of the server's O(m) steps; "
            "server_peak_rss_mb: this process's peak RSS above its RSS before the round "
            "(with --engine inprocess it includes the clients)"
        ),
        "phase_wall_s": {p: s.wall_s for p, s in stats.items()},
        "wall_s": time.perf_counter() - wall0,
        "round_wall_s": round_wall,
        "seed": args.seed,
        "sets": {k: len(v) for k, v in out.sets.items()},
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
