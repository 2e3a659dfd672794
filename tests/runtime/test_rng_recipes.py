"""Every production randomness source can drive a round on every local engine.

``secagg train`` without ``--seed`` draws its secrets from :class:`AesCtrRandom`; the
runtime used to refuse to ship it to pool workers, so the main job died after round 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.primitives.rand import AesCtrRandom, RandomSource, SystemRandom
from secagg.runtime import secure_sum
from secagg.runtime.parties import RngRecipe


@pytest.mark.parametrize("engine", ["inprocess", "processes"])
@pytest.mark.parametrize("source", [AesCtrRandom, SystemRandom])
def test_unseeded_sources_sum_exactly(engine: str, source: type[RandomSource]) -> None:
    gen = np.random.default_rng(3)  # test inputs only, not secrets
    inputs = {u: gen.integers(0, 2**16, 64, dtype=np.uint32) for u in range(1, 6)}
    res = secure_sum(inputs, bits=32, rng=source(), engine=engine, workers=2)
    assert not res.aborted
    want = sum(x.astype(np.uint64) for x in inputs.values()) % 2**32
    assert np.array_equal(res.total, want.astype(np.uint32))


def test_aes_ctr_recipe_ships_no_key_material() -> None:
    src = AesCtrRandom()
    rec = RngRecipe.of(src)
    assert rec.seed is None and rec.fast
    built = rec.build()
    assert isinstance(built, AesCtrRandom)
    assert built.random_bytes(32) != src.random_bytes(32)


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ParameterError, match="cannot be shipped"):
        RngRecipe.of(object())  # type: ignore[arg-type]
