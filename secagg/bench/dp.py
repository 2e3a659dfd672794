"""``secagg bench dp``: noise samplers and the client encoder, against baselines.

What is measured (``n = 10^6`` samples; the same with ``--quick``, fewer repeats):

* **samplers** — :func:`secagg.dp.samplers.discrete_gaussian` (σ = 4 and σ = 300),
  :func:`~secagg.dp.samplers.skellam` (μ = 16 and μ = 9·10^4) and
  :func:`~secagg.dp.samplers.poisson` (λ = 4, 1000), each drawing from
  :class:`~secagg.primitives.rand.SystemRandom`.
* **baseline** — the raw CSPRNG cost of the same count: ``os.urandom`` of ``8n`` bytes
  viewed as 53-bit uniforms (``random_unit_float64``), i.e. one uniform per sample,
  the least any sampler on this CSPRNG could spend.  ``ratio = sampler / baseline``.
* **client encode** — :meth:`secagg.dp.DDPRound.encode` (rotation, clip, scale,
  conditional rounding, noise, wrap) of one ``d``-dimensional update
  (``d = 2^20``, ``2^16`` with ``--quick``), against the bare rotation
  (:meth:`~secagg.dp.rotation.RandomizedHadamard.forward`) of the same vector.
* **client pipeline at a planned point** — the same encode with the parameters
  :func:`secagg.dp.plan` picks for a 429k-parameter model (the default tiny Llama),
  200 clients per round, ε = 8 over 5 rounds, 16-bit sum (``D = 2^19``), drawing from
  :class:`~secagg.primitives.rand.AesCtrRandom` and from ``os.urandom``
  (:class:`~secagg.primitives.rand.SystemRandom`), next to the raw AES-CTR
  keystream of exactly the bytes the encode consumed (counted in the same run).
  Timed in process CPU seconds (:func:`time.process_time`, every thread of the
  process counted), so ``coords_per_s`` is coordinates per CPU-second — a per-core
  figure that a crowded box does not inflate (set ``OPENBLAS_NUM_THREADS=1`` so the
  rotation's matrix products stay on one core).  Target: ≥ 10 M coordinates/s per core.

All timed interleaved, best of ``repeat`` (:func:`secagg.bench.common.best_of`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from secagg.bench.common import best_of, machine_info, markdown_table
from secagg.dp.distributed import DDPParams, DDPRound, Mechanism, plan
from secagg.dp.samplers import discrete_gaussian, poisson, skellam
from secagg.primitives.rand import AesCtrRandom, RandomSource, SystemRandom, random_unit_float64

__all__ = ["markdown", "run"]

N_SAMPLES = 1_000_000


def run(quick: bool) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-serialisable dict."""
    n = N_SAMPLES
    repeat = 3 if quick else 7
    rng = SystemRandom()
    samplers: dict[str, Callable[[], object]] = {
        "csprng_uniforms (baseline)": lambda: random_unit_float64(rng, n),
        "discrete_gaussian σ=4": lambda: discrete_gaussian(rng, 4.0, n),
        "discrete_gaussian σ=300": lambda: discrete_gaussian(rng, 300.0, n),
        "skellam μ=16": lambda: skellam(rng, 16.0, n),
        "skellam μ=9e4": lambda: skellam(rng, 9.0e4, n),
        "poisson λ=4": lambda: poisson(rng, 4.0, n),
        "poisson λ=1000": lambda: poisson(rng, 1000.0, n),
    }
    t = best_of(samplers, repeat=repeat)
    base = t["csprng_uniforms (baseline)"].best_s
    sampler_rows = {
        name: {
            **tm.as_dict(),
            "samples_per_s": n / tm.best_s,
            "ratio_to_baseline": tm.best_s / base,
        }
        for name, tm in t.items()
    }

    dim = (1 << 16) if quick else (1 << 20)
    params = DDPParams(
        mechanism=Mechanism.DDGAUSS,
        dim=dim,
        l2_clip=1.0,
        bits=20,
        scale=2000.0,
        local_stddev=50.0,
        min_survivors=90,
        max_clients=100,
    )
    rnd = DDPRound(params=params, rotation_seed=b"bench-rotation-seed-0001")
    vec = random_unit_float64(rng, dim) - 0.5
    vec /= np.linalg.norm(vec)
    # the same round with the other noise: only the sampler differs
    params_sk = dataclasses.replace(params, mechanism=Mechanism.SKELLAM)
    rnd_sk = DDPRound(params=params_sk, rotation_seed=b"bench-rotation-seed-0001")
    enc = best_of(
        {
            "rotation only (baseline)": lambda: rnd.rotation.forward(vec),
            "encode ddgauss": lambda: rnd.encode(vec, rng),
            "encode skellam": lambda: rnd_sk.encode(vec, rng),
        },
        repeat=repeat,
    )
    rot = enc["rotation only (baseline)"].best_s
    encode_rows = {
        name: {
            **tm.as_dict(),
            "ratio_to_rotation": tm.best_s / rot,
            "coords_per_s": dim / tm.best_s,
        }
        for name, tm in enc.items()
    }
    return {
        "benchmark": "dp",
        "quick": quick,
        "machine": machine_info(),
        "samples": n,
        "samplers": sampler_rows,
        "encode_dim": dim,
        "encode_padded_dim": params.padded_dim,
        "encode": encode_rows,
        "pipeline": _pipeline(repeat),
    }


class _Counting:
    """A RandomSource wrapper that counts the bytes drawn (children share the count)."""

    def __init__(self, inner: RandomSource, counter: list[int]) -> None:
        self._inner = inner
        self._counter = counter

    def random_bytes(self, n: int) -> bytes:
        self._counter[0] += n
        return self._inner.random_bytes(n)

    def fill(self, out: Any, nbytes: int | None = None) -> None:
        fill = getattr(self._inner, "fill", None)
        view = memoryview(out).cast("B")
        k = view.nbytes if nbytes is None else nbytes
        self._counter[0] += k
        if fill is not None:
            fill(out, k)
        else:
            view[:k] = self._inner.random_bytes(k)

    def child(self, label: str) -> _Counting:
        return _Counting(self._inner.child(label), self._counter)

    def fork(self, label: str) -> _Counting:
        return _Counting(self._inner.fork(label), self._counter)


#: The planned point: the default tiny Llama's trainable parameters.
PIPELINE_DIM = 429_056


def _pipeline(repeat: int) -> dict[str, Any]:
    params = plan(mechanism=Mechanism.DDGAUSS, epsilon=8.0, delta=1e-5, dim=PIPELINE_DIM,
                  l2_clip=1.0, bits=16, min_survivors=200, max_clients=200, rounds=5)
    rnd = DDPRound(params=params, rotation_seed=b"bench-rotation-seed-0002")
    aes, system = AesCtrRandom(), SystemRandom()
    vec = random_unit_float64(aes, PIPELINE_DIM) - 0.5
    vec *= 3.0 / np.linalg.norm(vec)  # above the clip: the clip step does work
    counter = [0]
    rnd.encode(vec, _Counting(aes, counter))
    consumed = counter[0]
    buf = np.empty(consumed // 8 + 3, dtype=np.uint64)
    t = best_of(
        {
            "raw AES-CTR bytes consumed (baseline)": lambda: aes.fill(buf.data, consumed),
            "encode, AesCtrRandom": lambda: rnd.encode(vec, aes),
            "encode, SystemRandom (os.urandom)": lambda: rnd.encode(vec, system),
        },
        repeat=repeat,
        clock=time.process_time,
    )
    raw = t["raw AES-CTR bytes consumed (baseline)"].best_s
    rows = {
        name: {**tm.as_dict(), "coords_per_s": PIPELINE_DIM / tm.best_s,
               "ratio_to_raw_bytes": tm.best_s / raw}
        for name, tm in t.items()
    }
    return {
        "dim": PIPELINE_DIM,
        "padded_dim": params.padded_dim,
        "bits": params.bits,
        "local_stddev": params.local_stddev,
        "scale": params.scale,
        "bytes_consumed": consumed,
        "clock": "process_time",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """Two tables: sampler throughput and client encode cost."""
    rows = [
        [name, r["best_s"] * 1e3, r["samples_per_s"] / 1e6, r["ratio_to_baseline"]]
        for name, r in result["samplers"].items()
    ]
    out = f"## dp: samplers ({result['samples']:,} samples, SystemRandom)\n\n"
    out += markdown_table(["sampler", "best ms", "M samples/s", "× baseline"], rows)
    rows = [
        [name, r["best_s"] * 1e3, r["coords_per_s"] / 1e6, r["ratio_to_rotation"]]
        for name, r in result["encode"].items()
    ]
    out += f"\n\n## dp: client encode (d = {result['encode_dim']:,})\n\n"
    out += markdown_table(["step", "best ms", "M coords/s", "× rotation"], rows)
    pl = result.get("pipeline")
    if pl:
        rows = [
            [name, r["best_s"] * 1e3, r["coords_per_s"] / 1e6, r["ratio_to_raw_bytes"]]
            for name, r in pl["rows"].items()
        ]
        out += (
            f"\n\n## dp: client pipeline at a planned point (d = {pl['dim']:,}, D = "
            f"{pl['padded_dim']:,}, {pl['bits']}-bit sum, local σ {pl['local_stddev']:.4g}; "
            f"{pl['bytes_consumed'] / 2**20:.1f} MiB of CSPRNG bytes per encode; "
            "process CPU time)\n\n"
        )
        out += markdown_table(["step", "best ms", "M coords/s", "× raw bytes"], rows)
    return out
