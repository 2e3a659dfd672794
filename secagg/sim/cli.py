"""``secagg simulate``: one aggregation round with dropouts, as JSON.

``--protocol secagg|secagg+`` runs the masking state machines, ``--protocol lightsecagg``
:func:`secagg.sim.lightsecagg.run`;
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
import math
import os
import sys
from typing import Any

from secagg.phase import ROUND_PHASES, Phase

__all__ = ["add_arguments", "run", "simulate_masking"]

_PROTOCOLS = ("secagg", "secagg+", "lightsecagg", "he-ckks", "he-bfv")
#: ``--drop-before`` takes ``Phase.value`` (graph-seed is left out: a SecAgg+ client
#: that advertised keys and then drops aborts the round by design).
_DROP_PHASES = tuple(p.value for p in ROUND_PHASES if p is not Phase.GRAPH_SEED)
#: Runs with at least this many client x element products show a progress bar.
_PROGRESS_WORK = 10**7


def _int_at_least(lo: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value

    return parse


def _float_in(lo: float, hi: float | None, *, lo_open: bool, hi_open: bool) -> Any:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    span = f"{left}{lo:g}, {'inf' if hi is None else f'{hi:g}'}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > lo if lo_open else value >= lo)
        if hi is not None:
            ok = ok and (value < hi if hi_open else value <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``simulate`` flags; out-of-range values are usage errors (exit 2)."""
    parser.add_argument(
        "--protocol", choices=_PROTOCOLS, default="secagg+", help="how the round sums"
    )
    parser.add_argument(
        "--clients", type=_int_at_least(2), default=100, metavar="N", help="clients in the round"
    )
    parser.add_argument(
        "--length", type=_int_at_least(1), default=1000, metavar="M", help="elements per input"
    )
    parser.add_argument(
        "--dropout",
        type=_float_in(0.0, 1.0, lo_open=False, hi_open=True),
        default=0.0,
        metavar="F",
        help="fraction of clients that drop, in [0, 1)",
    )
    parser.add_argument(
        "--drop-before",
        "--drop-phase",  # the old name, still accepted
        dest="drop_phase",
        choices=_DROP_PHASES,
        default="masked-input",
        help="dropped clients stop replying before this phase, e.g. masked-input: they "
        "never send their masked input (he-*: share-keys/masked-input = never upload, "
        "later = already uploaded)",
    )
    parser.add_argument(
        "--neighbors",
        type=_int_at_least(1),
        default=None,
        metavar="K",
        help="secagg+: graph degree (default: chosen for n, as secagg params)",
    )
    parser.add_argument(
        "--threshold",
        type=_int_at_least(1),
        default=None,
        metavar="T",
        help="Shamir threshold (default: chosen with k); lightsecagg: privacy threshold T "
        "(default: N // 4)",
    )
    parser.add_argument(
        "--target",
        type=_int_at_least(2),
        default=None,
        metavar="U",
        help="lightsecagg: responses the server decodes from, T < U <= N - D "
        "(default: max(T + 1, ceil(N / 2)))",
    )
    parser.add_argument(
        "--bits",
        type=_int_at_least(1),
        default=None,
        metavar="B",
        help="modulus exponent (default: masking 32, --dp 20); he-bfv: input width",
    )
    parser.add_argument(
        "--security",
        choices=("semi-honest", "malicious"),
        default="semi-honest",
        help="threat model of the masking protocol",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="deterministic (INSECURE) randomness for a reproducible run",
    )
    parser.add_argument(
        "--dp",
        choices=("none", "ddgauss", "skellam"),
        default="none",
        help="distributed-DP mechanism on top of the masking protocol",
    )
    parser.add_argument(
        "--epsilon",
        type=_float_in(0.0, None, lo_open=True, hi_open=True),
        default=1.0,
        metavar="E",
        help="--dp: target epsilon",
    )
    parser.add_argument(
        "--delta",
        type=_float_in(0.0, 1.0, lo_open=True, hi_open=True),
        default=1e-5,
        metavar="D",
        help="--dp: target delta",
    )
    parser.add_argument(
        "--rounds",
        type=_int_at_least(1),
        default=1,
        help="--dp: training rounds the epsilon budget covers",
    )
    parser.add_argument(
        "--sampling-rate",
        type=_float_in(0.0, 1.0, lo_open=True, hi_open=False),
        default=1.0,
        help="--dp: client sampling rate per round, in (0, 1]",
    )
    parser.add_argument(
        "--l2-clip",
        type=_float_in(0.0, None, lo_open=True, hi_open=True),
        default=1.0,
        help="--dp: per-client L2 clip norm",
    )
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
        "--json",
        default=None,
        metavar="PATH",
        help="write the JSON report here ('-' = stdout; default: a text summary on stdout)",
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
        type=_float_in(0.0, 1.0, lo_open=False, hi_open=True),
        default=0.0,
        metavar="F",
        help="--engine net: fraction of clients SIGKILLed at random points of random phases",
    )
    parser.add_argument(
        "--workers",
        type=_int_at_least(1),
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
        type=_float_in(0.0, None, lo_open=True, hi_open=True),
        default=None,
        metavar="S",
        help="seconds each phase waits for replies (default: until every client answered)",
    )


def _check_json_path(path: str | None) -> None:
    """Refuse a ``--json`` path that cannot be written, before the round runs."""
    from secagg.errors import ParameterError

    if path is None or path == "-":
        return
    target = os.path.abspath(path)
    parent = os.path.dirname(target)
    if os.path.isdir(target):
        raise ParameterError(f"--json {path}: is a directory")
    if not os.path.isdir(parent):
        raise ParameterError(f"--json {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (
        os.path.exists(target) and not os.access(target, os.W_OK)
    ):
        raise ParameterError(f"--json {path}: not writable")


def run(args: argparse.Namespace) -> int:
    """Run the simulation the flags describe; print or write the JSON result.

    Raises
    ------
    ParameterError
        On flags that do not fit together or a ``--json`` path that cannot be written
        (checked before the round runs).
    MissingExtraError
        ``he-*`` or ``--engine ray`` without the extra installed.
    """
    from secagg.errors import ParameterError
    from secagg.sim.report import check_report, summary

    if args.ray_address is not None and args.engine != "ray":
        raise ParameterError("--ray-address needs --engine ray")
    if args.workers is not None and args.workers < 1:
        raise ParameterError("--workers must be >= 1")
    if args.clients < 2 or args.length < 1:
        raise ParameterError("--clients must be >= 2 and --length >= 1")
    if not 0.0 <= args.dropout < 1.0:
        raise ParameterError("--dropout must be in [0, 1)")
    he_protocol = args.protocol.startswith("he-")
    if args.dp != "none" and he_protocol:
        raise ParameterError("--dp runs on secagg/secagg+, not on an HE protocol")
    if he_protocol:  # flags that would be silently ignored
        for flag, value in (("--neighbors", args.neighbors), ("--threshold", args.threshold)):
            if value is not None:
                raise ParameterError(f"{flag} applies to secagg/secagg+, not {args.protocol}")
        if args.security != "semi-honest":
            raise ParameterError(f"--security applies to secagg/secagg+, not {args.protocol}")
    else:
        for flag, value in (("--preset", args.preset), ("--custody", args.custody)):
            if value is not None:
                raise ParameterError(f"{flag} applies to he-ckks/he-bfv, not {args.protocol}")
    if args.protocol == "lightsecagg" and (args.dp != "none" or args.engine == "net"):
        raise ParameterError("lightsecagg runs without --dp, on inprocess/processes/ray")
    _check_json_path(args.json)
    if args.engine == "net":
        result = _simulate_net(args)
    elif args.crash:
        raise ParameterError("--crash needs --engine net")
    elif args.dp != "none":
        from secagg.sim import dp

        result = dp.run(args)
    elif args.protocol == "lightsecagg":
        from secagg.sim import lightsecagg

        result = lightsecagg.run(args)
    elif args.protocol in ("he-ckks", "he-bfv"):
        from secagg.sim import he

        result = he.run(args)
    else:
        result = simulate_masking(args)
    check_report(result)  # one schema for every protocol and engine
    text = json.dumps(result, indent=2, sort_keys=False)
    if args.json == "-":
        print(text)
    elif args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise ParameterError(f"--json {args.json}: {exc.strerror or exc}") from None
    else:
        print(summary(result))
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
    res = simulate_net(
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
    return _net_report(res)


def _net_report(res: dict[str, Any]) -> dict[str, Any]:
    """The net engine's dict in the one schema: common keys first, then its own."""
    from secagg.sim.report import SCHEMA

    crashed = res.get("crashed") or {}
    common = {
        "schema": SCHEMA,
        "family": "net",
        "protocol": res["protocol"],
        "security": res["security"],
        "engine": res["engine"],
        "workers": res.get("client_processes"),
        "transcript_digest": res.get("transcript_digest"),
        "clients": res["clients"],
        "length": res["length"],
        "bits": res["bits"],
        "neighbors": res["neighbors"],
        "threshold": res["threshold"],
        "dropout": 0.0,  # --engine net injects faults with --crash (see crashed)
        "dropped_before": None,
        "dropped": len(crashed),
        "survivors": res["survivors"],
        "aborted": res["aborted"],
        "abort_reason": res["abort_reason"],
        "exact": res["exact"],
        "correct": res["exact"],
        "client_cpu_total_s": None,  # not measured across the client processes
        "server_cpu_total_s": None,
        "total_cpu_s": None,
        "bytes_per_client_upload": res["message_bytes_to_server"] / res["clients"],
        "wall_s": res["wall_s"],
        "seed": res["seed"],
    }
    return {**common, **{k: v for k, v in res.items() if k not in common}}


def simulate_masking(args: argparse.Namespace) -> dict[str, Any]:
    """The masking (SecAgg / SecAgg+) simulation behind ``secagg simulate``.

    Inputs are drawn inside the workers from ``inputs_rng.child("input/<u>")`` (no
    vector crosses a process boundary); the exactness check regenerates the
    survivors' inputs here and adds them up.  With ``--seed`` that is the seeded
    source; without it the *inputs* (synthetic, not secret) come from a
    deterministic stream keyed by 32 fresh ``os.urandom`` bytes, so the check can
    regenerate them, while every protocol secret still comes from ``os.urandom``.
    (Drawing the inputs from ``os.urandom`` in the workers made the check compare
    against different vectors: every unseeded run reported ``exact: false``.)
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
    from secagg.runtime.rss import PeakRSS
    from secagg.sim.runtime import PHASES, build_config, choose_dropouts

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
    rss = PeakRSS()
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
    inputs_rng: RandomSource = (
        rng
        if args.seed is not None
        else InsecureDeterministicRandom(
            SystemRandom().random_bytes(32), "simulate inputs (synthetic)", warn=False
        )
    )
    factory = MaskingClientFactory(
        config=cfg,
        inputs=GeneratedInputs(RngRecipe.of(inputs_rng), bits, length),
        rng=recipe,
        identity={u: k.private_bytes() for u, k in idkeys.items()},
    )
    dropped = choose_dropouts(ids, args.dropout, rng.child("dropouts"))
    dropouts = {Phase(args.drop_phase): dropped} if dropped else None
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
            np.add(acc, generate_input(inputs_rng.child(f"input/{u}"), bits, length), out=acc)
        if bits < 8 * np.dtype(dt).itemsize:
            np.bitwise_and(acc, dt((1 << bits) - 1), out=acc)
        exact = bool(np.array_equal(out.result, acc))
    peak_rss_mb = rss.peak_mb()
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
    from secagg.sim.report import SCHEMA

    return {
        "schema": SCHEMA,
        "family": "masking",
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
        "dropped_before": args.drop_phase if dropped else None,
        "dropped": len(dropped),
        "survivors": len(out.survivors) if not out.aborted else 0,
        "aborted": out.aborted,
        "abort_reason": out.abort_reason,
        "exact": exact,
        "correct": exact,
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
        "server_peak_rss_mb": peak_rss_mb,
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
    """A progress display on stderr for long rounds: ``rich`` if installed, else plain lines.

    ``rich`` comes with the ``[train]`` extra only; a core install prints one line per
    phase when it completes instead (and nothing when stderr is not a terminal).
    """
    if not enabled:
        return None, lambda: None
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:
        return _plain_progress()

    prog = Progress(console=Console(stderr=True), transient=True)
    prog.start()
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = prog.add_task(phase, total=total)
        prog.update(tasks[phase], completed=done, total=total)

    return update, prog.stop


def _plain_progress() -> tuple[Any, Any]:
    if not sys.stderr.isatty():
        return None, lambda: None
    finished: set[str] = set()

    def update(phase: str, done: int, total: int) -> None:
        if done >= total and phase not in finished:
            finished.add(phase)
            print(f"  {phase}: {done}/{total} clients", file=sys.stderr, flush=True)

    return update, lambda: None


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_arguments(p)
    sys.exit(run(p.parse_args()))
