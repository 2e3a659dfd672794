"""DP-SGD noise from our CSPRNG (never torch's generator unless insecure_rng).

The threat: DP-SGD noise from a predictable generator lets whoever predicts it
subtract it; a Gaussian with the wrong scale silently changes ε.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.dp.dpsgd import gaussian_noise
from secagg.errors import ParameterError
from secagg.primitives.rand import AesCtrRandom, InsecureDeterministicRandom


def test_gaussian_noise_is_standard_normal() -> None:
    """Mean, variance and kurtosis at 5 standard errors (false-failure ≈ 2e-6)."""
    n = 200_000
    z = gaussian_noise(InsecureDeterministicRandom(7, warn=False), n)
    assert z.shape == (n,) and z.dtype == np.float64
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)
    # two-sided tail mass beyond 3σ: 0.0027
    tail = np.mean(np.abs(z) > 3)
    assert abs(tail - 0.0026998) < 5 * math.sqrt(0.0027 / n)


def test_gaussian_noise_reads_only_the_source() -> None:
    a = gaussian_noise(InsecureDeterministicRandom(1, warn=False), 100)
    b = gaussian_noise(InsecureDeterministicRandom(1, warn=False), 100)
    c = gaussian_noise(InsecureDeterministicRandom(2, warn=False), 100)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert gaussian_noise(AesCtrRandom(), 0).shape == (0,)
    with pytest.raises(ParameterError):
        gaussian_noise(AesCtrRandom(), -1)


def test_aes_ctr_random_streams() -> None:
    from secagg.primitives.rand import random_uint64

    key = b"k" * 32
    a, b = AesCtrRandom(key=key), AesCtrRandom(key=key)
    assert a.random_bytes(10) + a.random_bytes(7) == b.random_bytes(17)
    a, b = AesCtrRandom(key=key), AesCtrRandom(key=key)
    assert random_uint64(a, 5).tobytes() + a.random_bytes(3) == b.random_bytes(43)
    big = AesCtrRandom(key=key).random_bytes(1 << 19 | 5)  # several chunks, odd tail
    a = AesCtrRandom(key=key)
    assert random_uint64(a, (1 << 16)).tobytes() + a.random_bytes(5) == big[: (1 << 19) + 5]
    assert AesCtrRandom().random_bytes(32) != AesCtrRandom().random_bytes(32)
    c1, c2 = a.child("x"), a.child("x")
    assert c1.random_bytes(16) != c2.random_bytes(16)  # children are independent streams
    with pytest.raises(ParameterError):
        AesCtrRandom(key=b"short")


def test_aes_ctr_random_rekeys_after_fork() -> None:
    """A forked child must not replay the parent's stream."""
    import os

    rng = AesCtrRandom(key=b"f" * 32)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(w, rng.random_bytes(32))
        os._exit(0)
    os.close(w)
    child = os.read(r, 32)
    os.close(r)
    os.waitpid(pid, 0)
    assert child != AesCtrRandom(key=b"f" * 32).random_bytes(32)
    assert rng.random_bytes(32) == AesCtrRandom(key=b"f" * 32).random_bytes(32)


torch = pytest.importorskip("torch")
pytest.importorskip("opacus")


def _one_noisy_step(noise_rng, *, z: float = 2.0, c: float = 0.5, b: int = 8):
    from secagg.dp.dpsgd import DPSGDConfig, make_private

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    ds = torch.utils.data.TensorDataset(torch.randn(b, 64))
    loader = torch.utils.data.DataLoader(ds, batch_size=b)
    pt = make_private(model=model, optimizer=opt, data_loader=loader, noise_rng=noise_rng,
                      config=DPSGDConfig(max_grad_norm=c, noise_multiplier=z,
                                         poisson_sampling=False))
    (x,) = next(iter(pt.data_loader))
    state = torch.get_rng_state()
    pt.model(x).pow(2).mean().backward()
    pt.optimizer.step()
    assert torch.equal(state, torch.get_rng_state()), "DP noise drew from torch's generator"
    return torch.cat([p.grad.flatten() for p in pt.model.parameters()]).numpy().astype(float)


def test_dpsgd_noise_has_the_stated_scale_and_spares_torchs_generator() -> None:
    """Difference of two runs that differ only in the noise seed: std sqrt(2)·z·C/B."""
    g1 = _one_noisy_step(InsecureDeterministicRandom(1, warn=False))
    g2 = _one_noisy_step(InsecureDeterministicRandom(2, warn=False))
    g1b = _one_noisy_step(InsecureDeterministicRandom(1, warn=False))
    assert np.array_equal(g1, g1b)
    d = g1 - g2
    want = math.sqrt(2) * 2.0 * 0.5 / 8
    n = d.size  # 4160 coordinates: 5 SE on the std ≈ 5/sqrt(2n)
    assert abs(d.std() / want - 1) < 5 / math.sqrt(2 * n)
