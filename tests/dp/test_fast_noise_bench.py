"""`secagg bench dp`'s pipeline row counts the CSPRNG bytes the encode consumes."""

from __future__ import annotations

import numpy as np

from secagg.bench.dp import _Counting
from secagg.dp.distributed import DDPParams, DDPRound, Mechanism
from secagg.primitives.rand import AesCtrRandom, InsecureDeterministicRandom, random_uint64


def test_counting_source_counts_every_byte_and_keeps_the_stream() -> None:
    n = [0]
    src = _Counting(AesCtrRandom(key=b"c" * 32), n)
    a = random_uint64(src, 10).tobytes() + src.random_bytes(3) + src.child("x").random_bytes(5)
    assert n[0] == 80 + 3 + 5
    ref = AesCtrRandom(key=b"c" * 32)
    assert a[:83] == ref.random_bytes(83)
    n2 = [0]
    _Counting(InsecureDeterministicRandom(1, warn=False), n2).fill(bytearray(9))
    assert n2[0] == 9


def test_encode_consumption_is_counted() -> None:
    p = DDPParams(mechanism=Mechanism.DDGAUSS, dim=1000, l2_clip=1.0, bits=16, scale=50.0,
                  local_stddev=20.0, min_survivors=10, max_clients=10)
    rnd = DDPRound(params=p, rotation_seed=b"r" * 16)
    n = [0]
    rnd.encode(np.full(1000, 0.01), _Counting(AesCtrRandom(), n))
    # at least the rounding uniforms (8 B) and two words per accepted noise draw
    assert n[0] >= 8 * 1024 + 16 * 1024
