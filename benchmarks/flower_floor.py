"""The floor of our side of ``secagg bench flower``: work the protocol cannot skip.

For the bench's round (n = 100 clients, m = 10^6 parameters, 16 neighbors, a 29-bit
sum, 22 value bits) this times, in process CPU seconds (best of 3), with our own code:

* per client: quantizing the m floats (one 64-bit CSPRNG word per value, AES-CTR),
  adding 17 masks (16 pairwise + the self mask: AES-128-CTR keystream + uint32 adds),
  bit-packing the masked vector for the wire;
* per survivor on the server: unpacking and adding its masked vector, removing its
  self mask;

and prints their sum for the round.  Everything else ours spends in that bench — key
agreement and share boxes, the Flower mod's replay of the round from the Context,
record conversion, the NumPyClient — comes on top, so ``Flower CPU / this floor`` is
an upper bound on the bench's ``ratio``.

Usage::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/flower_floor.py
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np

from secagg.encoding import bitpack
from secagg.encoding.quantize import QuantizationSpec
from secagg.primitives.prg import apply_masks
from secagg.primitives.rand import InsecureDeterministicRandom

N, M, K, BITS, VALUE_BITS = 100, 10**6, 16, 29, 22


def _best(f: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        f()
        times.append(time.process_time() - t)
    return min(times)


def main() -> dict[str, object]:
    spec = QuantizationSpec(
        clip=(2**VALUE_BITS - 1) / 2, value_bits=VALUE_BITS, max_clients=N, bits=BITS
    )
    x = (np.arange(M) % 1000) - 500 + 0.5  # the bench's inputs (on the grid)
    rng = InsecureDeterministicRandom(os.urandom(32), "floor", warn=False)
    seeds = [os.urandom(32) for _ in range(K + 1)]
    vec = spec.quantize(x, rng)
    packed = bitpack.pack(vec, BITS)
    acc = np.zeros(M, dtype=np.uint32)

    def unpack_add() -> None:
        np.add(acc, bitpack.unpack(packed, BITS, M), out=acc)

    client = {
        "quantize": _best(lambda: spec.quantize(x, rng)),
        "17 masks": _best(lambda: apply_masks(vec, [(s, 1) for s in seeds], BITS)),
        "pack": _best(lambda: bitpack.pack(vec, BITS)),
    }
    server = {
        "unpack + add": _best(unpack_add),
        "remove self mask": _best(lambda: apply_masks(acc, [(seeds[0], -1)], BITS)),
    }
    total = N * sum(client.values()) + N * sum(server.values())
    return {
        "clients": N, "elements": M, "neighbors": K, "bits": BITS,
        "per_client_cpu_s": client, "per_survivor_server_cpu_s": server,
        "floor_cpu_s": total, "loadavg": os.getloadavg(),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
