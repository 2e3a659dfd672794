"""The CPU floor of the server's work at dropout in the n = 500 complete-graph round.

At 30 % dropout before masked input the server must rebuild, for each of the
``D`` dropped clients and each of the ``S`` survivors it masked with, one pairwise
seed (an X25519 agreement and an HKDF derivation) and expand and subtract that
mask (HKDF to the PRG key, an AES-128-CTR context, ``4 m`` bytes of keystream, one
``uint32`` subtraction), plus one self mask per survivor.  This script measures each
of those rates on this machine — thread CPU time, best of 5 — and prints the floor
``D S (agree + HKDF) + (D S + S) mask``.  It also runs 2,000 agreements in one and
in two threads, to show whether ``cryptography``'s X25519 releases the GIL (whether
a threaded ``map_fn`` can spread the agreements over cores).

    PYTHONPATH=. python benchmarks/unmask_floor.py [--dropped 150 --survivors 350 --length 100000]

Measuring only: nothing here is runtime code.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.bench.common import best_of
from secagg.primitives.kdf import derive_info
from secagg.primitives.prg import CHUNK_ELEMENTS, apply_masks


def best(f: Callable[[], object]) -> float:
    """Thread CPU seconds of ``f``, best of 5 (after one warm-up run)."""
    return best_of({"f": f}, clock=time.thread_time)["f"].best_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dropped", type=int, default=150)
    ap.add_argument("--survivors", type=int, default=350)
    ap.add_argument("--length", type=int, default=100_000)
    a = ap.parse_args()
    ch = CHUNK_ELEMENTS
    buf = np.empty(ch, dtype="<u4")
    kb = memoryview(buf).cast("B")
    zb = bytes(ch * 4)

    def keystream() -> None:
        enc = Cipher(algorithms.AES(os.urandom(16)), modes.CTR(bytes(16))).encryptor()
        for _ in range(400):
            enc.update_into(zb, kb)

    t = best(keystream)
    gbs = 400 * ch * 4 / t / 1e9
    print(f"AES-128-CTR keystream, update_into a reused {ch * 4 // 1024} KiB buffer: "
          f"{gbs:.2f} GB/s")
    acc = np.zeros(ch, dtype=np.uint32)

    def add() -> None:
        for _ in range(400):
            np.add(acc, buf, out=acc)

    t = best(add)
    print(f"uint32 in-place add (in cache): {400 * ch * 4 / t / 1e9:.2f} GB/s per operand")
    vec = np.zeros(a.length, dtype=np.uint32)
    seeds = [(os.urandom(32), 1) for _ in range(200)]
    per_mask = best(lambda: apply_masks(vec, seeds, 32)) / 200
    print(f"prg.apply_masks at m = {a.length}: {per_mask * 1e6:.1f} us per mask "
          f"(HKDF key, AES-CTR set-up, keystream, add)")
    sks = [X25519PrivateKey.generate() for _ in range(20)]
    pks = [X25519PrivateKey.generate().public_key() for _ in range(50)]

    def agree() -> None:
        for sk in sks:
            for pk in pks:
                sk.exchange(pk)

    per_x = best(agree) / 1000
    print(f"X25519 agreement: {per_x * 1e6:.1f} us")
    ikm, info = os.urandom(32), b"x" * 120
    per_h = best(lambda: [derive_info(ikm, info) for _ in range(2000)]) / 2000
    print(f"HKDF (derive_info, one pairwise seed): {per_h * 1e6:.2f} us")
    w0 = time.perf_counter()
    agree()
    agree()
    one = time.perf_counter() - w0
    with ThreadPoolExecutor(2) as ex:
        w0 = time.perf_counter()
        list(ex.map(lambda _: agree(), range(2)))
        two = time.perf_counter() - w0
    print(f"2,000 X25519 agreements: 1 thread {one:.3f} s wall, 2 threads {two:.3f} s wall "
          f"(x{one / two:.2f})")
    pairs = a.dropped * a.survivors
    masks = pairs + a.survivors
    floor = pairs * (per_x + per_h) + masks * per_mask
    print(f"floor: {pairs} agreements {pairs * per_x:.2f} s + {pairs} seed HKDFs "
          f"{pairs * per_h:.2f} s + {masks} masks {masks * per_mask:.2f} s (keystream alone "
          f"{masks * a.length * 4 / (gbs * 1e9):.2f} s) = {floor:.2f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
