"""``secagg simulate --protocol lightsecagg``: one LightSecAgg round through the
runtime's :class:`~secagg.runtime.driver.RoundDriver` on any engine.

Flags reused from the masking simulation: ``--threshold`` is the privacy
threshold ``T``, ``--bits`` the input width (default: the largest the overflow
rule ``N (2^bits - 1) < 2^31 - 1`` allows, at most 24); ``--target`` is ``U``
(default ``max(T + 1, ceil(N / 2))``) and ``D = N - U``.  Inputs are drawn inside
the workers from ``child("input/<u>")`` of a seeded source (the ``--seed`` one, else a
fresh random seed used for inputs only); the exactness check regenerates the
survivors' inputs here.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

import numpy as np

from secagg.errors import InsecureConfigurationWarning, ParameterError
from secagg.lightsecagg.config import LightSecAggConfig, max_bits
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom, RandomSource, SystemRandom
from secagg.runtime.api import drop_schedule, run_lightsecagg_round
from secagg.runtime.parties import (
    GeneratedInputs,
    LightSecAggClientFactory,
    RngRecipe,
    generate_input,
)
from secagg.sim.report import SCHEMA
from secagg.sim.runtime import PHASES, choose_dropouts

__all__ = ["run"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the round the flags describe; return the JSON-ready result.

    Raises
    ------
    ParameterError
        On flags that do not make a valid round (``T < U <= N - D``, overflow rule).
    """
    n, length = args.clients, args.length
    if n < 2 or length < 1:
        raise ParameterError("--clients must be >= 2 and --length >= 1")
    if args.security != "semi-honest":
        raise ParameterError("LightSecAgg is a semi-honest protocol (--security semi-honest)")
    bits = min(24, max_bits(n)) if args.bits is None else args.bits
    rng: RandomSource
    if args.seed is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            rng = InsecureDeterministicRandom(args.seed)
    else:
        rng = SystemRandom()
    wall0 = time.perf_counter()
    ids = list(range(1, n + 1))
    cfg = LightSecAggConfig.create(
        session_id=rng.child("server").random_bytes(32), clients=ids, bits=bits,
        length=length, privacy=args.threshold, target=getattr(args, "target", None))
    recipe = RngRecipe.of(rng)
    # simulation inputs come from a seeded source even without --seed, so that the
    # exactness check can regenerate them (client secrets still come from ``rng``)
    in_src: RandomSource = (rng if args.seed is not None else InsecureDeterministicRandom(
        SystemRandom().random_bytes(32), "inputs", warn=False))
    in_recipe = RngRecipe.of(in_src)
    factory = LightSecAggClientFactory(
        config=cfg, inputs=GeneratedInputs(in_recipe, bits, length), rng=recipe)
    dropped = choose_dropouts(ids, args.dropout, rng.child("dropouts"))
    dropouts = {Phase(args.drop_phase): dropped} if dropped else None
    workers = args.workers or os.cpu_count() or 1
    out = run_lightsecagg_round(
        factory,
        engine=args.engine,
        workers=workers,
        ray_address=args.ray_address,
        dropouts=drop_schedule(dropouts, None),
        phase_timeout=args.phase_timeout,
        unmask_threads=min(2, os.cpu_count() or 1),
        measure_memory=not args.no_memory,
    )
    exact = None
    if out.result is not None and not out.aborted:
        acc = np.zeros(length, dtype=np.uint64)
        for u in out.survivors:
            acc += generate_input(in_src.child(f"input/{u}"), bits, length)
        exact = bool(np.array_equal(out.result, acc % (1 << bits)))
    stats = {p.key: s for p, s in out.phases.items()}
    client_cpu = {p: (stats[p].client_cpu_s / stats[p].client_steps
                      if p in stats and stats[p].client_steps else 0.0) for p in PHASES}
    server_cpu = {p: (stats[p].server_cpu_s if p in stats else 0.0) for p in PHASES}
    server_cpu["unmasking"] += out.finalize_cpu_s
    client_total = sum(s.client_cpu_s for s in out.phases.values())
    server_total = sum(server_cpu.values())
    return {
        "schema": SCHEMA,
        "family": "lightsecagg",
        "protocol": "lightsecagg",
        "security": "semi-honest",
        "engine": out.engine,
        "workers": out.workers,
        "transcript_digest": out.transcript_digest,
        "clients": n,
        "length": length,
        "bits": bits,
        "neighbors": None,
        "threshold": None,
        "dropout": args.dropout,
        "dropped_before": args.drop_phase if dropped else None,
        "dropped": len(dropped),
        "survivors": len(out.survivors) if not out.aborted else 0,
        "aborted": out.aborted,
        "abort_reason": out.abort_reason,
        "exact": exact,
        "correct": exact,
        "client_cpu_total_s": client_total,
        "server_cpu_total_s": server_total,
        "total_cpu_s": client_total + server_total,
        "bytes_per_client_upload": out.bytes_to_server / n,
        "wall_s": time.perf_counter() - wall0,
        "seed": args.seed,
        "privacy_T": cfg.privacy,
        "target_U": cfg.target,
        "dropout_tolerance_D": cfg.dropout,
        "client_cpu_s": client_cpu,
        "server_cpu_s": server_cpu,
        "client_cpu_per_client_s": client_total / n,
        "bytes_per_client_download": out.bytes_to_clients / n,
        "server_peak_mb": out.server_peak_mb,
        "phase_wall_s": {p: s.wall_s for p, s in stats.items()},
        "round_wall_s": out.wall_s,
        "sets": {k: len(v) for k, v in out.sets.items()},
        "server_rejections": len(out.server_rejections),
        "client_errors": len(out.client_errors),
    }
