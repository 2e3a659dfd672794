"""HE rounds through the driver on the local engines: same sum, same contributors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tenseal")

from secagg.he import Preset, Scheme, generate_keys
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime import he_sum


def test_bfv_sum_is_the_same_on_inprocess_and_processes() -> None:
    keys = generate_keys(Preset.BFV_4096.params, n_threads=1)
    gen = np.random.default_rng(5)  # test data
    xs = {u: gen.integers(0, 1 << 16, size=300).astype(np.int64) for u in range(1, 7)}
    outs = []
    for engine in ("inprocess", "processes"):
        frames: list[tuple[str, int]] = []
        res = he_sum(xs, scheme=Scheme.BFV, preset=Preset.BFV_4096, keys=keys,
                     dropouts={3}, partial_dropouts={5: 0}, engine=engine, workers=2,
                     rng=InsecureDeterministicRandom(1, warn=False), n_threads=1,
                     observer=lambda d, u, b: frames.append((d, u)))
        assert not res.aborted and (res.engine, res.workers) == (engine, 2)
        assert res.contributors == (1, 2, 4, 6)
        want = sum(xs[u] for u in res.contributors)
        np.testing.assert_array_equal(res.total, want)
        assert ("to_decryptor", 0) in frames and all(u not in (3, 5) for _, u in frames)
        assert len(res.transcript_digest) == 64
        outs.append(res.total.tobytes())
    assert outs[0] == outs[1]
