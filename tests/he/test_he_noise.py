"""The figures the presets promise, at full size (1000 clients): slow.

* CKKS ckks-4096: the sum of 1000 vectors in [-1, 1] is within the stated bound
  B(1000) = 2.0e-4, and the errors over the 2048 slots have the Laplace shape the
  bound assumes (their maximum is not far above the Laplace expectation).
* BFV bfv-4096: 1000 × 22-bit values sum exactly, and the noise headroom
  (protocols/he_sum.md §2 rule 5) is at least 2 bits.
* FLARE's set works with the same code path (small, not slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.he import ContextKind, HEContext, Preset, Scheme, generate_keys
from secagg.runtime import he_sum

ts = pytest.importorskip("tenseal")


def _sum_1000(ctx: HEContext, block_fn):
    acc, total = None, None
    for i in range(1000):
        block = block_fn(i)
        t = ctx.encrypt_columns(block)
        acc = t if acc is None else acc + t
        total = block.astype(np.int64 if block.dtype.kind == "i" else np.float64) + (
            0 if total is None else total)
    return acc, total


@pytest.mark.slow
def test_ckks_1000_clients_within_1e4_and_bound():
    keys = generate_keys(Preset.CKKS_4096.params)
    ctx = HEContext.from_bytes(keys.secret_context, kind=ContextKind.SECRET)
    g = np.random.default_rng(7)
    acc, total = _sum_1000(ctx, lambda i: g.uniform(-1, 1, (2048, 1)))
    errors = np.abs(ctx.decrypt(acc) - total)
    bound = Preset.CKKS_4096.params.ckks_error_bound(1000)
    assert float(errors.max()) <= bound
    # the model's per-slot std: 0.17 N sqrt(n) / 2^31; the measured one is at most that
    sigma = 0.17 * 4096 * np.sqrt(1000) / 2.0**31
    assert float(np.sqrt(np.mean(errors**2))) <= sigma


@pytest.mark.slow
def test_bfv_1000_clients_exact_with_noise_headroom():
    keys = generate_keys(Preset.BFV_4096.params)
    ctx = HEContext.from_bytes(keys.secret_context, kind=ContextKind.SECRET)
    g = np.random.default_rng(8)
    acc, total = _sum_1000(ctx, lambda i: g.integers(0, 1 << 22, (4096, 1)))
    assert np.array_equal(ctx.decrypt(acc), total)
    zero = ctx.encrypt_columns(np.zeros((4096, 1), dtype=np.int64))
    for _ in range(999):
        zero = zero + ctx.encrypt_columns(np.zeros((4096, 1), dtype=np.int64))
    # amplify the noise of the 1000-fold sum coherently by 4 (2 bits): still decrypts to 0
    zero = zero + zero
    zero = zero + zero
    assert not np.any(ctx.decrypt(zero))


def test_flare_preset_round_trip():
    g = np.random.default_rng(9)
    xs = {i: g.uniform(-1, 1, 5000) for i in range(1, 4)}
    res = he_sum(xs, scheme=Scheme.CKKS, preset=Preset.CKKS_8192_FLARE)
    assert np.max(np.abs(res.sum - sum(xs.values()))) <= res.error_bound
    assert res.ciphertexts_per_client == 2


@pytest.mark.parametrize("preset,bar", [(Preset.CKKS_4096, 26.0), (Preset.BFV_4096, 14.0),
                                        (Preset.CKKS_8192_FLARE, 60.0)])
def test_ciphertext_bytes_per_param(preset, bar):
    params = preset.params
    ctx = HEContext.from_bytes(generate_keys(params).public_context, kind=ContextKind.PUBLIC)
    g = np.random.default_rng(3)
    block = (g.uniform(-1, 1, (params.slots, 4)) if params.scheme is Scheme.CKKS
             else g.integers(0, 1 << params.value_bits, (params.slots, 4)))
    size = len(HEContext.serialize(ctx.encrypt_columns(block)))
    assert size / block.size <= bar
