"""One seeded source driving many rounds must never repeat masks, keys or noise.

A seeded ``InsecureDeterministicRandom``'s ``child(label)`` depends only on the
label, so an entry point that derived its per-client streams with ``child`` alone
would, when handed the same source every round, reuse each client's masks — and
the difference of two rounds' masked vectors would reveal the difference of the
updates.  Entry points ``fork`` the caller's source once per call instead.
"""

from __future__ import annotations

import numpy as np

from secagg.primitives.rand import InsecureDeterministicRandom, SystemRandom
from secagg.sim import secure_sum


def _uploads(rng: InsecureDeterministicRandom, inputs: dict[int, np.ndarray]) -> list[bytes]:
    seen: list[bytes] = []

    def observer(direction: str, client: int, data: bytes) -> None:
        if direction == "to_server":
            seen.append(data)

    res = secure_sum(inputs, bits=16, neighbors=2, threshold=2, rng=rng, observer=observer)
    assert not res.aborted
    assert res.total is not None
    np.testing.assert_array_equal(res.total, sum(inputs.values()) % (1 << 16))
    return seen


def test_same_seeded_source_twice_gives_fresh_round_secrets() -> None:
    inputs = {u: np.full(64, u, dtype=np.uint32) for u in range(1, 6)}
    rng = InsecureDeterministicRandom(7, warn=False)
    first = _uploads(rng, inputs)
    second = _uploads(rng, inputs)
    assert len(first) == len(second)
    # identical inputs, same source object: not one upload may repeat (keys, boxes, masked vectors)
    assert not set(first) & set(second)


def test_same_seed_fresh_source_replays_exactly() -> None:
    inputs = {u: np.full(16, u, dtype=np.uint32) for u in range(1, 5)}
    a = _uploads(InsecureDeterministicRandom(3, warn=False), inputs)
    b = _uploads(InsecureDeterministicRandom(3, warn=False), inputs)
    assert a == b


def test_fork_differs_child_replays() -> None:
    rng = InsecureDeterministicRandom(1, warn=False)
    assert rng.child("x").random_bytes(32) == rng.child("x").random_bytes(32)
    assert rng.fork("x").random_bytes(32) != rng.fork("x").random_bytes(32)
    sysrng = SystemRandom()
    assert sysrng.fork("x") is sysrng
