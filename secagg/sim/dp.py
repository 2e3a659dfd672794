"""``secagg simulate ... --dp ddgauss|skellam --epsilon E [--delta D]``.

:mod:`secagg.sim.cli` owns the flags and dispatches here with its
argparse namespace (at least: protocol, clients, length, dropout, drop_phase,
neighbors, threshold, bits, security, seed, dp, epsilon, delta; optional: rounds,
sampling_rate, l2_clip).  :func:`run` plans the DP parameters for the target
``(ε, δ)``, builds synthetic client updates, runs one round of the distributed-DP
pipeline through :func:`secagg.runtime.dp_secure_mean` on the chosen engine, and
returns the JSON dict.

Synthetic data: client ``i``'s update is uniform in ``[-0.5, 0.5]^d`` scaled to an L2
norm uniform in ``[0.25, 1.5]·c`` (so some are clipped), drawn from the seeded stream.
"""

from __future__ import annotations

import argparse
import enum
import math
import time
from typing import Any, TypeVar

import numpy as np

from secagg.dp.distributed import DDPRound, Mechanism, plan
from secagg.errors import AbortedError, ParameterError
from secagg.primitives.rand import (
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    random_unit_float64,
)
from secagg.sim.report import SCHEMA

__all__ = ["run"]

E = TypeVar("E", bound=enum.Enum)
DEFAULT_DELTA = 1e-5
DEFAULT_BITS = 20


def _enum(cls: type[E], value: object, default: E) -> E:
    if value is None:
        return default
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError as exc:
        raise ParameterError(f"unknown {cls.__name__} {value!r}") from exc


def _get(args: argparse.Namespace, name: str, default: Any) -> Any:
    v = getattr(args, name, None)
    return default if v is None else v


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one simulated DP round; returns the report as a JSON-serialisable dict.

    Raises
    ------
    ParameterError
        On a missing ``--epsilon``, unknown mechanism, or parameters the bit-width
        rule refuses.
    """
    from secagg.runtime.api import dp_secure_mean
    from secagg.sim import Phase, ProtocolKind, SecurityMode, choose_dropouts

    mech = _enum(Mechanism, getattr(args, "dp", None), Mechanism.DDGAUSS)
    eps_target = getattr(args, "epsilon", None)
    if eps_target is None:
        raise ParameterError("--dp needs --epsilon")
    delta = float(_get(args, "delta", DEFAULT_DELTA))
    n = int(_get(args, "clients", 100))
    dim = int(_get(args, "length", 1000))
    bits = int(_get(args, "bits", DEFAULT_BITS))
    rounds = int(_get(args, "rounds", 1))
    q = float(_get(args, "sampling_rate", 1.0))
    clip = float(_get(args, "l2_clip", 1.0))
    dropout = float(_get(args, "dropout", 0.0))
    seed_arg = getattr(args, "seed", None)
    protocol = _enum(ProtocolKind, getattr(args, "protocol", None), ProtocolKind.SECAGG_PLUS)
    security = _enum(SecurityMode, getattr(args, "security", None), SecurityMode.SEMI_HONEST)
    phase = _enum(Phase, getattr(args, "drop_phase", None), Phase.MASKED_INPUT)
    if n < 2 or dim < 1:
        raise ParameterError("need at least 2 clients and length >= 1")

    # Like the masking simulation: os.urandom unless --seed asks for a reproducible run.
    rng: RandomSource
    if seed_arg is None:
        rng = SystemRandom()
        randomness = "os.urandom"
    else:
        rng = InsecureDeterministicRandom(int(seed_arg), label="secagg simulate --dp", warn=False)
        randomness = "InsecureDeterministicRandom(seed): reproducible, not secret"
    ids = list(range(1, n + 1))
    dropped = sorted(choose_dropouts(ids, dropout, rng.child("dropouts")))
    # Calibrate to the survivors we plan for: everyone not scheduled to drop.
    n_min = max(1, n - len(dropped))
    params = plan(
        mechanism=mech,
        epsilon=float(eps_target),
        delta=delta,
        dim=dim,
        l2_clip=clip,
        bits=bits,
        min_survivors=n_min,
        max_clients=n,
        rounds=rounds,
        sampling_rate=q,
    )
    rot_seed = rng.child("rotation-seed").random_bytes(32)  # public, fixed before "training"
    ddp_round = DDPRound(params=params, rotation_seed=rot_seed)

    data = rng.child("data")
    updates: dict[int, np.ndarray] = {}
    for cid in ids:
        v = random_unit_float64(data, dim) - 0.5
        target = clip * (0.25 + 1.25 * float(random_unit_float64(data, 1)[0]))
        updates[cid] = v / max(float(np.linalg.norm(v)), 1e-300) * target

    engine = getattr(args, "engine", None) or "inprocess"
    kwargs: dict[str, Any] = {
        "protocol": protocol,
        "security": security,
        "engine": engine,
        "workers": getattr(args, "workers", None),
        "ray_address": getattr(args, "ray_address", None),
        "phase_timeout": getattr(args, "phase_timeout", None),
    }
    if getattr(args, "neighbors", None) is not None:
        kwargs["neighbors"] = int(args.neighbors)
    if getattr(args, "threshold", None) is not None:
        kwargs["threshold"] = int(args.threshold)
    if dropped:
        kwargs["dropouts"] = {phase: dropped}

    wall0 = time.perf_counter()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "family": "dp",
        "protocol": protocol.value,
        "security": security.value,
        "engine": engine,
        "workers": None,
        "transcript_digest": None,
        "clients": n,
        "length": dim,
        "bits": bits,
        "neighbors": getattr(args, "neighbors", None),  # the round's own values once it ran
        "threshold": getattr(args, "threshold", None),
        "dropout": dropout,
        "dropped_before": phase.value if dropped else None,
        "dropped": len(dropped),
        "survivors": 0,
        "aborted": False,
        "abort_reason": None,
        "exact": None,  # a noisy mean by design: judge it by dp.rmse_vs_true_mean
        "correct": None,
        "client_cpu_total_s": None,
        "server_cpu_total_s": None,
        "total_cpu_s": None,
        "bytes_per_client_upload": None,
        "wall_s": 0.0,
        "seed": seed_arg,
        "randomness": randomness,
        "stats": {},
        "dp": {
            "mechanism": mech.value,
            "epsilon_target": float(eps_target),
            "delta": delta,
            "rounds": rounds,
            "sampling_rate": q,
            "l2_clip": clip,
            "min_survivors": n_min,
            "max_clients": n,
            "bits_per_coordinate": bits,
            "padded_dim": params.padded_dim,
            "upload_bits_per_model_coordinate": bits * params.padded_dim / dim,
            "scale": params.scale,
            "local_stddev_int": params.local_stddev,
            "central_stddev_int": params.central_stddev,
            "noise_sigma_central": params.central_stddev / params.scale,
            "l2_sensitivity_int": params.l2_sensitivity,
            "wrap_probability_bound": params.wrap_probability_bound,
            "epsilon_calibrated": params.epsilon(delta=delta, rounds=rounds, sampling_rate=q),
        },
    }
    try:
        agg = dp_secure_mean(updates, ddp_round, rng=rng.child("round"), **kwargs)
    except AbortedError as exc:
        report.update(aborted=True, abort_reason=str(exc), survivors=0)
        report["dp"]["epsilon_realized"] = None
        report["wall_s"] = time.perf_counter() - wall0
        return report

    m = len(agg.survivors)
    clipped = []
    for c in agg.survivors:
        u = updates[c]
        norm = float(np.linalg.norm(u))
        clipped.append(u * min(1.0, clip / norm) if norm > 0 else u)
    true_mean = np.mean(clipped, axis=0)
    raw_mean = np.mean([updates[c] for c in agg.survivors], axis=0)
    err = agg.mean - true_mean
    expected_rmse = math.sqrt(m * params.local_stddev**2) / (params.scale * m)
    res = agg.result
    stats = {k: v for k, v in res.stats.items() if isinstance(v, (int, float, str, bool))}
    client_cpu = stats.get("client_cpu_total_s")
    server_cpu = stats.get("server_cpu_total_s")
    report.update(
        aborted=False,
        abort_reason=None,
        survivors=m,
        workers=res.workers,
        transcript_digest=res.transcript_digest,
        neighbors=stats.get("neighbors"),
        threshold=stats.get("threshold"),
        client_cpu_total_s=client_cpu,
        server_cpu_total_s=server_cpu,
        total_cpu_s=(
            client_cpu + server_cpu
            if isinstance(client_cpu, (int, float)) and isinstance(server_cpu, (int, float))
            else None
        ),
        bytes_per_client_upload=res.bytes_per_client_upload,
        stats=stats,
    )
    report["dp"].update(
        epsilon_realized=params.epsilon(delta=delta, rounds=rounds, sampling_rate=q, survivors=m),
        rmse_vs_true_mean=float(np.sqrt(np.mean(err**2))),
        max_abs_error_vs_true_mean=float(np.max(np.abs(err))),
        expected_noise_rmse=expected_rmse,
        rmse_vs_unclipped_mean=float(np.sqrt(np.mean((agg.mean - raw_mean) ** 2))),
        true_mean_rms=float(np.sqrt(np.mean(true_mean**2))),
    )
    report["wall_s"] = time.perf_counter() - wall0
    return report
