"""The cross-team API: secure_sum / secure_sum_floats and the runtime's hooks."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import InsecureConfigurationWarning, ParameterError
from secagg.masking import messages as m
from secagg.phase import ROUND_PHASES, Phase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import (
    ProtocolKind,
    SecurityMode,
    build_config,
    plaintext_sum,
    run_round,
    secure_sum,
    secure_sum_floats,
)


def rng(seed: int = 1) -> InsecureDeterministicRandom:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        return InsecureDeterministicRandom(seed)


def _inputs(n: int, length: int, bits: int, start: int = 1) -> dict[int, np.ndarray]:
    dt = np.uint32 if bits <= 32 else np.uint64
    out = {}
    for u in range(start, start + n):
        raw = hashlib.shake_128(f"x{u}".encode()).digest(length * 8)
        x = np.frombuffer(raw, dtype=np.uint64)[:length]
        out[u] = (x & np.uint64((1 << bits) - 1)).astype(dt)
    return out


@pytest.mark.parametrize("protocol", list(ProtocolKind))
@pytest.mark.parametrize("bits", [8, 32, 64])
def test_secure_sum_exact(protocol: ProtocolKind, bits: int) -> None:
    xs = _inputs(9, 17, bits)
    res = secure_sum(xs, bits=bits, protocol=protocol, rng=rng())
    assert not res.aborted and res.abort_reason is None
    assert res.survivors == tuple(range(1, 10))
    assert res.total is not None
    assert res.total.dtype == (np.uint32 if bits <= 32 else np.uint64)
    np.testing.assert_array_equal(res.total, plaintext_sum(xs, res.survivors, bits))
    assert res.bits == bits and res.bytes_per_client_upload > 17 * (4 if bits <= 32 else 8)
    assert "client_cpu_s" in res.stats and "server_cpu_s" in res.stats


@pytest.mark.parametrize(
    "phase", [p for p in ROUND_PHASES if p is not Phase.GRAPH_SEED]  # v2: a drop there aborts
)
@pytest.mark.parametrize("security", list(SecurityMode))
def test_secure_sum_with_dropouts(phase: Phase, security: SecurityMode) -> None:
    xs = _inputs(10, 5, 16, start=3)
    res = secure_sum(
        xs,
        bits=16,
        protocol=ProtocolKind.SECAGG,
        security=security,
        dropouts={phase: {4, 9}},
        rng=rng(2),
    )
    assert not res.aborted
    if phase in (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT):
        assert set(res.survivors) == set(xs) - {4, 9}
    else:
        assert set(res.survivors) == set(xs)
    assert res.total is not None
    np.testing.assert_array_equal(res.total, plaintext_sum(xs, res.survivors, 16))


def test_abort_gives_no_total() -> None:
    xs = _inputs(6, 4, 16)
    res = secure_sum(
        xs,
        bits=16,
        protocol=ProtocolKind.SECAGG,
        threshold=4,
        dropouts={Phase.MASKED_INPUT: {1, 2, 3}},
        rng=rng(),
    )
    assert res.aborted and res.total is None and res.survivors == ()
    assert res.abort_reason


def test_deterministic_under_seed_and_observer_sees_every_message() -> None:
    xs = _inputs(6, 9, 20)
    logs: list[list[tuple[str, int, bytes]]] = []
    for _ in range(2):
        log: list[tuple[str, int, bytes]] = []
        res = secure_sum(
            xs,
            bits=20,
            dropouts={Phase.MASKED_INPUT: {2}},
            rng=rng(5),
            observer=lambda d, u, b, log=log: log.append((d, u, b)),
        )
        logs.append(log)
    assert logs[0] == logs[1]
    assert {d for d, _, _ in logs[0]} == {"to_server", "to_client"}
    up = sum(len(b) for d, _, b in logs[0] if d == "to_server")
    assert res.bytes_per_client_upload == up / 6
    for _, _, b in logs[0]:
        m.decode(b)  # all of it is valid wire format


def test_executor_does_not_change_bytes() -> None:
    xs = _inputs(7, 300, 32)
    cfg, keys = build_config(
        xs,
        bits=32,
        length=300,
        protocol=ProtocolKind.SECAGG_PLUS,
        security=SecurityMode.MALICIOUS,
        neighbors=4,
        threshold=3,
        rng=rng(9),
    )
    outs = []
    for workers in (1, 2):
        log: list[bytes] = []
        rep = run_round(
            xs,
            config=cfg,
            rng=rng(9),
            identity_keys=keys,
            workers=workers,
            dropouts={Phase.MASKED_INPUT: {3}},
            observer=lambda d, u, b: log.append(b),
            measure_memory=True,
        )
        outs.append((log, rep.total.tobytes() if rep.total is not None else None))
        assert rep.server_peak_mb is not None and rep.server_peak_mb > 0
        assert rep.client_cpu_s["masked_input"] > 0 and rep.server_cpu_s["unmasking"] > 0
    assert outs[0] == outs[1]


def test_server_hook_and_client_hook() -> None:
    xs = _inputs(6, 4, 16)
    cfg, _ = build_config(
        xs,
        bits=16,
        length=4,
        protocol=ProtocolKind.SECAGG,
        security=SecurityMode.SEMI_HONEST,
        neighbors=None,
        threshold=3,
        rng=rng(),
    )

    def server_hook(u: int, msg: m.Message) -> m.Message | None:
        return None if (u == 2 and isinstance(msg, m.MaskedInputRequest)) else msg

    def client_hook(u: int, msg: m.Message) -> m.Message | bytes:
        if u == 5 and isinstance(msg, m.MaskedInput):
            return m.encode(msg)[:-1]  # truncated in transit
        return msg

    rep = run_round(xs, config=cfg, rng=rng(), server_hook=server_hook, client_hook=client_hook)
    assert set(rep.survivors) == {1, 3, 4, 6}
    assert 5 in rep.server_rejections
    assert rep.total is not None
    np.testing.assert_array_equal(rep.total, plaintext_sum(xs, rep.survivors, 16))


def test_secure_sum_floats() -> None:
    spec = QuantizationSpec(clip=2.0, value_bits=12, max_clients=16)
    base = np.linspace(-1.5, 1.5, 11)
    xs = {u: base * (u / 8) for u in range(1, 9)}
    res = secure_sum_floats(xs, spec=spec, dropouts={Phase.MASKED_INPUT: {8}}, rng=rng())
    assert res.count == 7 and res.sum is not None and res.mean is not None
    want = sum(xs[u] for u in range(1, 8))
    assert np.max(np.abs(res.sum - want)) <= 7 * spec.step
    with pytest.raises(ParameterError):
        secure_sum_floats(xs, spec=spec, bits=20)
    small = QuantizationSpec(clip=1.0, value_bits=8, max_clients=4)
    with pytest.raises(ParameterError):
        secure_sum_floats(xs, spec=small)


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ParameterError):
        secure_sum({}, bits=16)
    with pytest.raises(ParameterError):
        secure_sum({1: np.zeros(3, np.uint32), 2: np.zeros(4, np.uint32)}, bits=16)
    with pytest.raises(ParameterError):
        secure_sum({1: np.zeros(3, np.uint64), 2: np.zeros(3, np.uint64)}, bits=16)
    with pytest.raises(ParameterError):
        secure_sum({0: np.zeros(3, np.uint32), 2: np.zeros(3, np.uint32)}, bits=16)
    with pytest.raises(ParameterError):
        secure_sum({1: np.full(3, 9, np.uint32), 2: np.zeros(3, np.uint32)}, bits=3)
