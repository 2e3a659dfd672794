"""Randomised Hadamard rotation: orthogonality, inverse, agreement with the matrix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.linalg import hadamard

from secagg.dp.rotation import RandomizedHadamard, fwht, padded_dim
from secagg.errors import ParameterError

SEED = bytes(range(16))


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128, 256, 2048])
def test_fwht_matches_sylvester_matrix(n: int) -> None:
    x = np.linspace(-3.0, 5.0, n)
    assert np.allclose(fwht(x), hadamard(n) @ x)


def test_padded_dim() -> None:
    assert [padded_dim(d) for d in (1, 2, 3, 4, 5, 1000, 1024, 1025)] == [
        1,
        2,
        4,
        4,
        8,
        1024,
        1024,
        2048,
    ]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ParameterError):
            padded_dim(bad)  # type: ignore[arg-type]


@given(
    d=st.integers(1, 300),
    data=st.data(),
)
def test_rotation_is_orthogonal_and_inverse_recovers_input(d: int, data) -> None:
    x = np.asarray(
        data.draw(st.lists(st.floats(-1e6, 1e6), min_size=d, max_size=d)), dtype=np.float64
    )
    rot = RandomizedHadamard(seed=SEED, dim=d)
    y = rot.forward(x)
    assert y.shape == (padded_dim(d),)
    assert np.isclose(np.linalg.norm(y), np.linalg.norm(x), rtol=1e-12, atol=1e-9)
    assert np.allclose(rot.inverse(y), x, rtol=1e-9, atol=1e-6)


def test_rotation_matrix_is_orthogonal() -> None:
    rot = RandomizedHadamard(seed=SEED, dim=16)
    m = np.stack([rot.forward(e) for e in np.eye(16)], axis=1)
    assert np.allclose(m.T @ m, np.eye(16))
    assert not np.allclose(m, hadamard(16) / 4.0)  # the signs are not all +1


def test_rotation_flattens_a_spike() -> None:
    """A one-hot vector becomes ±1/sqrt(D) everywhere (what keeps wrap-around rare)."""
    rot = RandomizedHadamard(seed=SEED, dim=1024)
    e = np.zeros(1024)
    e[17] = 1.0
    assert np.allclose(np.abs(rot.forward(e)), 1 / 32)


def test_seed_selects_the_signs() -> None:
    x = np.arange(10.0)
    a = RandomizedHadamard(seed=SEED, dim=10).forward(x)
    b = RandomizedHadamard(seed=SEED, dim=10).forward(x)
    c = RandomizedHadamard(seed=b"\x01" * 16, dim=10).forward(x)
    assert np.array_equal(a, b) and not np.allclose(a, c)


@pytest.mark.parametrize(
    "call",
    [
        lambda: RandomizedHadamard(seed=b"short", dim=4),
        lambda: RandomizedHadamard(seed=SEED, dim=0),
        lambda: RandomizedHadamard(seed=SEED, dim=4).forward(np.ones(5)),
        lambda: RandomizedHadamard(seed=SEED, dim=4).forward(np.array([1.0, np.nan, 0, 0])),
        lambda: RandomizedHadamard(seed=SEED, dim=3).inverse(np.ones(3)),
        lambda: fwht(np.ones(3)),
        lambda: fwht(np.ones((2, 2))),
    ],
)
def test_bad_inputs_raise(call) -> None:
    with pytest.raises(ParameterError):
        call()


def test_block_fwht_equals_the_butterfly_on_a_large_vector() -> None:
    """The dense-block transform is the radix-2 butterfly up to float rounding."""
    n = 1 << 17
    x = np.sin(np.arange(n, dtype=np.float64))
    a = x.copy()
    h = 1
    while h < n:  # reference: textbook in-place butterflies
        v = a.reshape(-1, 2, h)
        top = v[:, 0, :].copy()
        v[:, 0, :] += v[:, 1, :]
        v[:, 1, :] = top - v[:, 1, :]
        h *= 2
    assert np.allclose(fwht(x), a, rtol=0, atol=1e-9 * np.abs(a).max())
