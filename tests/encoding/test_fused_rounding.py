"""The chunked (fused) quantizer draws the same words and decides the same roundings as
the one-pass definition, across chunk boundaries and for every kind of source."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding import quantize as qmod
from secagg.encoding.modular import dtype_for_bits
from secagg.encoding.quantize import QuantizationSpec, stochastic_round
from secagg.errors import ParameterError
from secagg.primitives.rand import (
    AesCtrRandom,
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    fill_uint64,
    random_uint64,
)


class _BytesOnly:
    """A source without ``fill``: only ``random_bytes`` (a replayable AES stream)."""

    def __init__(self, key: bytes) -> None:
        self._inner = AesCtrRandom(key=key)

    def random_bytes(self, n: int) -> bytes:
        return self._inner.random_bytes(n)

    def child(self, label: str) -> _BytesOnly:  # pragma: no cover - unused
        raise NotImplementedError

    def fork(self, label: str) -> _BytesOnly:  # pragma: no cover - unused
        raise NotImplementedError


def _sources(kind: str) -> tuple[RandomSource, RandomSource]:
    """Two sources that emit the same stream."""
    if kind == "insecure":
        return tuple(InsecureDeterministicRandom(5, warn=False) for _ in range(2))  # type: ignore[return-value]
    if kind == "aes":
        return AesCtrRandom(key=b"q" * 32), AesCtrRandom(key=b"q" * 32)
    return _BytesOnly(b"q" * 32), AesCtrRandom(key=b"q" * 32)


def _reference(x: np.ndarray, spec: QuantizationSpec, rng: RandomSource) -> np.ndarray:
    """The one-pass definition: ``lo + [(w >> 11)·2^-53 < z - lo]``, one word per value."""
    top = float((1 << spec.value_bits) - 1)
    z = (np.clip(np.asarray(x, dtype=np.float64), -spec.clip, spec.clip) + spec.clip)
    z = z / (2.0 * spec.clip) * top
    lo = np.floor(z)
    words = np.frombuffer(rng.random_bytes(8 * len(z)), dtype="<u8").astype(np.uint64)
    u = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (lo + (u < z - lo)).astype(dtype_for_bits(spec.bits))


@pytest.mark.parametrize("kind", ["insecure", "aes", "bytes-only"])
@pytest.mark.parametrize(("value_bits", "clip"), [(22, (2**22 - 1) / 2), (8, 1.0), (52, 3.0)])
def test_fused_quantize_equals_the_one_pass_definition(kind, value_bits, clip) -> None:
    n = 2 * qmod.ROUND_CHUNK + 7  # three chunks, the last one short
    gen = np.random.default_rng(value_bits)  # test data, not secret
    x = gen.standard_normal(n) * clip * 1.5
    x[:6] = [clip, -clip, 0.0, 2 * clip, -2 * clip, clip * (1 - 1e-12)]
    spec = QuantizationSpec(clip=clip, value_bits=value_bits, max_clients=50)
    ours, ref = _sources(kind)
    got = spec.quantize(x, ours)
    want = _reference(x, spec, ref)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    assert got[0] == (1 << value_bits) - 1 and got[1] == 0
    # float32 input: converted exactly, same decisions
    got32 = spec.quantize(x.astype(np.float32), ours)
    want32 = _reference(x.astype(np.float32), spec, ref)
    assert np.array_equal(got32, want32)
    # both sources are at the same position of their streams afterwards
    assert ours.random_bytes(24) == ref.random_bytes(24)


def test_stochastic_round_keeps_shape_input_and_stream() -> None:
    z = np.linspace(-5.0, 5.0, 3 * 1000).reshape(3, 1000) * 7.3
    before = z.copy()
    a, b = AesCtrRandom(key=b"s" * 32), AesCtrRandom(key=b"s" * 32)
    r = stochastic_round(z, a)
    assert r.shape == z.shape and np.array_equal(z, before)
    w = random_uint64(b, z.size).reshape(z.shape)
    lo = np.floor(z)
    assert np.array_equal(r, lo + ((w >> np.uint64(11)).astype(np.float64) * 2.0**-53 < z - lo))


def test_bad_input_draws_nothing() -> None:
    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=4)
    a, b = AesCtrRandom(key=b"n" * 32), AesCtrRandom(key=b"n" * 32)
    for bad in ([0.0, np.nan], [np.inf, 0.0], [0.0, -np.inf], np.zeros((2, 2))):
        with pytest.raises(ParameterError):
            spec.quantize(np.asarray(bad), a)
    assert a.random_bytes(16) == b.random_bytes(16)  # no randomness was consumed
    assert len(spec.quantize(np.zeros(0), SystemRandom())) == 0


@pytest.mark.parametrize("kind", ["insecure", "aes", "bytes-only"])
def test_fill_uint64_is_the_stream_in_place(kind) -> None:
    a, b = _sources(kind)
    buf = np.full(1003, 7, dtype=np.uint64)
    fill_uint64(a, buf, 1000)
    want = np.frombuffer(b.random_bytes(8000), dtype="<u8")
    assert np.array_equal(buf[:1000], want)
    tail = np.empty(5, dtype=np.uint64)  # no spare room: the copy path
    fill_uint64(a, tail)
    assert np.array_equal(tail, np.frombuffer(b.random_bytes(40), dtype="<u8"))
    for bad in (np.zeros(3, dtype=np.int64), np.zeros((2, 2), dtype=np.uint64),
                np.zeros(8, dtype=np.uint64)[::2]):
        with pytest.raises(ParameterError):
            fill_uint64(a, bad)
    with pytest.raises(ParameterError):
        fill_uint64(a, np.zeros(3, dtype=np.uint64), 4)
