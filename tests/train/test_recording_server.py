"""The server side of the loop never holds an individual update in the clear.

A recording observer stores every byte the (simulated) server receives during real
training rounds; a wrapper on the client side keeps the true updates.  Then:

* no 32-byte window of any client's update (float32 or float64 bytes) and no window
  of its quantized vector appears anywhere in what the server received;
* the masked vector a client sent is statistically uniform mod 2^b and uncorrelated
  with that client's quantized update.

The same detector run on the insecure plain aggregator finds every update — so the
check can fail.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import numpy.typing as npt
import pytest

from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.train.aggregators import (
    AggregateResult,
    Aggregator,
    AggregatorKind,
    InsecurePlainAggregator,
    make_aggregator,
)
from secagg.train.loop import TrainConfig, run_training


class ClientSideTap(Aggregator):
    """Keeps the clients' true updates (client side) and forwards to the real aggregator."""

    def __init__(self, inner: Aggregator) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.updates: list[dict[int, np.ndarray]] = []

    @property
    def description(self) -> str:
        return self.inner.description

    def aggregate(
        self, updates: Mapping[int, npt.ArrayLike], *, dropped: Collection[int] = ()
    ) -> AggregateResult:
        self.updates.append({k: np.asarray(v, dtype=np.float64).copy() for k, v in updates.items()})
        return self.inner.aggregate(updates, dropped=dropped)


def _windows(data: bytes, width: int = 32, count: int = 20) -> list[bytes]:
    step = max(1, (len(data) - width) // count)
    return [data[i : i + width] for i in range(0, len(data) - width, step)][:count]


def _leaks(update: np.ndarray, quantized: np.ndarray | None, blob: bytes) -> bool:
    forms = [update.astype("<f4").tobytes(), update.astype("<f8").tobytes()]
    if quantized is not None:
        forms.append(quantized.astype(quantized.dtype.newbyteorder("<")).tobytes())
    return any(w in blob for f in forms for w in _windows(f))


def _train(tiny_config: TrainConfig, agg: Aggregator) -> ClientSideTap:
    tap = ClientSideTap(agg)
    run_training(tiny_config, tap, sampling_rng=InsecureDeterministicRandom(9, warn=False))
    return tap


def test_plain_baseline_is_caught_leaking(tiny_config: TrainConfig) -> None:
    received: list[bytes] = []
    agg = InsecurePlainAggregator(observer=lambda d, c, b: received.append(b))
    tap = _train(tiny_config, agg)
    blob = b"".join(received)
    assert all(_leaks(u, None, blob) for u in tap.updates[0].values())


@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS])
def test_masked_server_sees_nothing_individual(tiny_config: TrainConfig, kind) -> None:
    from secagg.masking import messages as m

    received: dict[int, list[bytes]] = {}

    def observer(direction: str, client: int, data: bytes) -> None:
        if direction == "to_server":
            received.setdefault(client, []).append(bytes(data))

    secret_seed = 21
    agg = make_aggregator(kind, max_clients=tiny_config.per_round, clip=0.05, value_bits=16,
                          rng=InsecureDeterministicRandom(secret_seed, warn=False),
                          observer=observer)
    tap = _train(tiny_config, agg)
    (updates,) = tap.updates
    spec = agg.spec  # type: ignore[attr-defined]
    # Re-derive each client's exact quantized input (secure_sum_floats rounds with
    # rng.child("quantize/<id>"), rng = the aggregator's per-round child): the test
    # knows the seed, the server does not.
    root = InsecureDeterministicRandom(secret_seed, warn=False).child("aggregation/1")
    quantized = {u: spec.quantize(x, root.child(f"quantize/{u}")) for u, x in updates.items()}
    blob = b"".join(b for msgs in received.values() for b in msgs)
    assert blob
    masked: dict[int, np.ndarray] = {}
    for client, msgs in received.items():
        for data in msgs:
            msg = m.decode(data)
            if isinstance(msg, m.MaskedInput):
                masked[client] = msg.vector
    assert set(masked) == set(updates)
    for u, x in updates.items():
        assert np.abs(spec.dequantize(quantized[u]) - x).max() <= spec.step  # q encodes x
        assert not _leaks(x, quantized[u], blob), f"client {u}'s update is readable"
        y = masked[u].astype(np.float64)
        q = quantized[u].astype(np.float64)
        n, mod = y.size, float(1 << spec.bits)
        # uniform mod 2^b: 16 equal buckets, chi-square with 15 dof (p ~ 1e-6 bound)
        counts = np.bincount((y * 16 / mod).astype(np.int64), minlength=16)
        chi2 = float(((counts - n / 16) ** 2 / (n / 16)).sum())
        assert chi2 < 55, chi2
        assert abs(y.mean() / mod - 0.5) < 6 * 0.2887 / np.sqrt(n)
        # uncorrelated with the quantized update
        corr = float(np.corrcoef(y, q)[0, 1])
        assert abs(corr) < 6 / np.sqrt(n), corr
        assert np.mean(masked[u].astype(np.int64) == quantized[u].astype(np.int64)) < 0.01


def test_he_server_sees_only_ciphertexts(tiny_config: TrainConfig) -> None:
    pytest.importorskip("tenseal")
    from secagg.train.aggregators import available_kinds

    assert AggregatorKind.HE_CKKS in available_kinds()  # ours: never skipped
    received: list[bytes] = []
    agg = make_aggregator(
        AggregatorKind.HE_CKKS, max_clients=tiny_config.per_round, clip=0.05,
        rng=InsecureDeterministicRandom(3, warn=False),
        observer=lambda d, c, b: received.append(bytes(b)) if d == "to_server" else None,
    )
    tap = _train(tiny_config, agg)
    blob = b"".join(received)
    assert len(blob) > 8 * tap.updates[0][next(iter(tap.updates[0]))].size
    assert not any(_leaks(x, None, blob) for x in tap.updates[0].values())


@pytest.mark.parametrize("kind", [AggregatorKind.SECAGG, AggregatorKind.SECAGG_PLUS])
def test_masks_are_fresh_every_round(kind) -> None:
    """Same client, same update, two rounds, seeded secrets: different masked vectors
    (otherwise y_1 - y_2 = x_1 - x_2 would leak the change of the update)."""
    from secagg.masking import messages as m

    seen: list[np.ndarray] = []

    def observer(direction: str, client: int, data: bytes) -> None:
        if direction == "to_server" and client == 2:
            msg = m.decode(data)
            if isinstance(msg, m.MaskedInput):
                seen.append(msg.vector.copy())

    agg = make_aggregator(kind, max_clients=3, rng=InsecureDeterministicRandom(4, warn=False),
                          observer=observer)
    ups = {c: np.linspace(-0.01, 0.01, 2000) for c in (1, 2, 3)}
    agg.aggregate(ups)
    agg.aggregate(ups)
    assert len(seen) == 2
    assert np.mean(seen[0] == seen[1]) < 0.01
