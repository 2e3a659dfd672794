"""Flatten named float arrays to one vector and back (the order is the name order)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = ["Layout", "flatten", "unflatten"]


@dataclass(frozen=True, slots=True)
class Layout:
    """Names and shapes of the arrays packed into one vector, in packing order."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.shapes):
            raise ParameterError("a layout needs exactly one shape per name")
        if len(set(self.names)) != len(self.names):
            raise ParameterError("duplicate names in layout")
        for shape in self.shapes:
            if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
                raise ParameterError("shapes hold non-negative integers")

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))


def flatten(arrays: Mapping[str, npt.ArrayLike]) -> tuple[npt.NDArray[np.float64], Layout]:
    """Concatenate arrays in sorted-name order into one float64 vector."""
    names = tuple(sorted(arrays))
    parts = [np.asarray(arrays[n], dtype=np.float64) for n in names]
    layout = Layout(names, tuple(tuple(p.shape) for p in parts))
    if not parts:
        return np.zeros(0), layout
    return np.concatenate([p.ravel() for p in parts]), layout


def unflatten(vec: npt.ArrayLike, layout: Layout) -> dict[str, npt.NDArray[np.float64]]:
    """Inverse of :func:`flatten`."""
    v = np.asarray(vec, dtype=np.float64)
    if v.ndim != 1 or v.size != layout.size:
        raise ParameterError(f"vector of size {v.size} does not match layout of size {layout.size}")
    out = {}
    pos = 0
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        k = int(np.prod(shape))
        out[name] = v[pos : pos + k].reshape(shape)
        pos += k
    return out
