"""The model and data of the example: linear regression in numpy, one non-IID shard per node.

Every node draws its features from its own shifted distribution (so a single node's
model is biased) from a fixed public seed; the server evaluates on a held-out set.
The data are synthetic and not secret, so numpy's generator is fine here.
"""

from __future__ import annotations

import numpy as np

DIM = 16
_TRUE_W = np.linspace(-1.0, 1.0, DIM)
_TRUE_B = 0.5


def _data(seed: int, shift: float, count: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    x = gen.normal(loc=shift, scale=1.0, size=(count, DIM))
    y = x @ _TRUE_W + _TRUE_B + gen.normal(scale=0.1, size=count)
    return x, y


def partition(pid: int, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Node ``pid``'s shard: 40-80 examples around its own feature shift."""
    shift = -1.0 + 2.0 * pid / max(1, num - 1)
    return _data(1000 + pid, shift, 40 + (pid * 7) % 41)


def test_set() -> tuple[np.ndarray, np.ndarray]:
    return _data(7, 0.0, 500)


def initial_parameters() -> list[np.ndarray]:
    return [np.zeros(DIM, dtype=np.float32), np.zeros(1, dtype=np.float32)]


def loss(params: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    w, b = params
    return float(np.mean((x @ w + b[0] - y) ** 2))


def train(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray, *, epochs: int = 5, lr: float = 0.05
) -> list[np.ndarray]:
    """Full-batch gradient descent on the mean squared error."""
    w = params[0].astype(np.float64).copy()
    b = float(params[1][0])
    for _ in range(epochs):
        err = x @ w + b - y
        w -= lr * 2.0 * (x.T @ err) / len(y)
        b -= lr * 2.0 * float(np.mean(err))
    return [w.astype(np.float32), np.array([b], dtype=np.float32)]
