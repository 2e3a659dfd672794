"""Where the distributed-DP client encode spends its CPU, step by step.

The planned point of ``secagg bench dp``'s pipeline row (d = 429,056 → D = 2^19,
200 clients, ε = 8 over 5 rounds, 16-bit sum, AES-CTR randomness), each step timed
alone in process CPU seconds (best of 7): the rotation, the stochastic rounding of
the scaled vector, rotation + clip + conditional rounding, the discrete-Gaussian
noise, the wrap, the whole encode, and the Skellam variants.

Usage::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/dp_steps.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable

import numpy as np

from secagg.dp.distributed import DDPRound, Mechanism, plan
from secagg.encoding.modular import wrap_signed
from secagg.encoding.quantize import stochastic_round
from secagg.primitives.rand import AesCtrRandom, random_unit_float64

DIM = 429_056


def _best_ms(f: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return round(min(times) * 1e3, 2)


def main() -> dict[str, object]:
    params = plan(mechanism=Mechanism.DDGAUSS, epsilon=8.0, delta=1e-5, dim=DIM, l2_clip=1.0,
                  bits=16, min_survivors=200, max_clients=200, rounds=5)
    rnd = DDPRound(params=params, rotation_seed=b"bench-rotation-seed-0002")
    skellam = DDPRound(params=dataclasses.replace(params, mechanism=Mechanism.SKELLAM),
                       rotation_seed=b"bench-rotation-seed-0002")
    aes = AesCtrRandom()
    vec = random_unit_float64(aes, DIM) - 0.5
    vec *= 3.0 / np.linalg.norm(vec)  # above the clip
    z = rnd.rotation.forward(vec) * params.scale
    r = rnd.rotate_clip_round(vec, aes)
    steps = {
        "rotation (forward)": lambda: rnd.rotation.forward(vec),
        "stochastic rounding of z": lambda: stochastic_round(z, aes),
        "rotate + clip + conditional rounding": lambda: rnd.rotate_clip_round(vec, aes),
        "discrete Gaussian noise (D draws)": lambda: rnd.local_noise(aes),
        "wrap into Z_2^b": lambda: wrap_signed(r, params.bits),
        "encode (ddgauss)": lambda: rnd.encode(vec, aes),
        "Skellam noise (D draws)": lambda: skellam.local_noise(aes),
        "encode (skellam)": lambda: skellam.encode(vec, aes),
    }
    ms = {name: _best_ms(f) for name, f in steps.items()}
    return {"dim": DIM, "padded_dim": params.padded_dim, "local_stddev": params.local_stddev,
            "cpu_ms": ms, "coords_per_cpu_s": DIM / (ms["encode (ddgauss)"] / 1e3),
            "loadavg": os.getloadavg()}


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
