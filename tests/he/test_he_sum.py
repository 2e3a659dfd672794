"""he_sum end to end: property-based sums with random lengths, client counts and
dropouts; CKKS within the stated bound, BFV exact; the key-holder inbox check."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ParameterError, RemoteProtocolError
from secagg.he import (
    EnvelopeKind,
    HEParams,
    KeyCustody,
    Preset,
    Scheme,
    decode_envelope,
    generate_keys,
    quantization_spec,
)
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime import he_sum
from secagg.sim.he import check_key_holder_inbox, run

pytest.importorskip("tenseal")

CKKS_KEYS = generate_keys(Preset.CKKS_4096.params)
BFV_KEYS = generate_keys(Preset.BFV_4096.params)
# lengths around the slot counts (2048 CKKS, 4096 BFV), not multiples of them
LENGTHS = st.one_of(st.integers(1, 40), st.sampled_from([2047, 2048, 2049, 4095, 4097, 6000]))


@st.composite
def rounds(draw, slots=2048):
    n = draw(st.integers(1, 5))
    dropped = draw(st.sets(st.integers(1, n), max_size=n))
    m, chunk = draw(LENGTHS), draw(st.integers(1, 3))
    chunks = -(-(-(-m // slots)) // chunk)
    # clients that stop in the middle of their upload (after 0 .. chunks-1 chunks)
    partial = {}
    if chunks > 1:
        for i in range(1, n + 1):
            if i not in dropped and draw(st.booleans()):
                partial[i] = draw(st.integers(0, chunks - 1))
    return n, sorted(dropped), partial, m, chunk, draw(st.integers(0, 2**32))


@settings(max_examples=12)
@given(rounds(), st.sampled_from(list(KeyCustody)))
def test_ckks_sum_within_stated_bound(case, custody):
    n, dropped, partial, m, chunk, seed = case
    g = np.random.default_rng(seed)
    xs = {i: g.uniform(-1, 1, m) for i in range(1, n + 1)}
    res = he_sum(xs, scheme=Scheme.CKKS, keys=CKKS_KEYS, custody=custody, dropouts=dropped,
                 partial_dropouts=partial, max_ciphertexts_per_chunk=chunk, min_contributors=1,
                 rng=InsecureDeterministicRandom(seed, warn=False))
    alive = [i for i in xs if i not in dropped and i not in partial]
    if not alive:
        assert res.aborted and res.sum is None and res.count == 0
        return
    assert not res.aborted and res.contributors == tuple(alive)
    expected = np.sum([xs[i] for i in alive], axis=0)
    assert res.sum.shape == (m,)
    assert np.max(np.abs(res.sum - expected)) <= res.error_bound
    assert res.error_bound == Preset.CKKS_4096.params.ckks_error_bound(len(alive))
    assert res.ciphertexts_per_client == -(-m // 2048)


@settings(max_examples=12)
@given(rounds(slots=4096))
def test_bfv_sum_is_exact(case):
    n, dropped, partial, m, chunk, seed = case
    g = np.random.default_rng(seed)
    xs = {i: g.integers(0, 1 << 22, m) for i in range(1, n + 1)}
    xs[1][: min(m, 3)] = (1 << 22) - 1  # extreme values
    res = he_sum(xs, scheme=Scheme.BFV, keys=BFV_KEYS, dropouts=dropped,
                 partial_dropouts=partial, max_ciphertexts_per_chunk=chunk, min_contributors=1)
    alive = [i for i in xs if i not in dropped and i not in partial]
    if not alive:
        assert res.aborted
        return
    expected = np.sum([xs[i] for i in alive], axis=0)
    assert res.total is not None and res.total.dtype == np.int64
    assert np.array_equal(res.total, expected)
    assert res.error_bound == 0.0


@settings(max_examples=6)
@given(st.integers(2, 4), LENGTHS, st.integers(0, 2**32))
def test_bfv_float_inputs_are_quantized_and_dequantized(n, m, seed):
    g = np.random.default_rng(seed)
    xs = {i: g.uniform(-1, 1, m) for i in range(1, n + 1)}
    res = he_sum(xs, scheme=Scheme.BFV, keys=BFV_KEYS,
                 rng=InsecureDeterministicRandom(seed, warn=False))
    spec = quantization_spec(Preset.BFV_4096.params)
    # stochastic rounding: each value is off by less than one step
    assert np.max(np.abs(res.sum - sum(xs.values()))) < n * spec.step
    assert np.array_equal(spec.dequantize_sum(res.total.astype(np.uint64), n), res.sum)


def test_partial_dropouts_and_min_contributors():
    g = np.random.default_rng(0)
    xs = {i: g.uniform(-1, 1, 5000) for i in range(1, 5)}
    res = he_sum(xs, scheme=Scheme.CKKS, keys=CKKS_KEYS, max_ciphertexts_per_chunk=1,
                 partial_dropouts={2: 2, 3: 0}, dropouts=[4])
    assert res.aborted and res.count == 0 and "min_contributors" in res.abort_reason
    res = he_sum(xs, scheme=Scheme.CKKS, keys=CKKS_KEYS, max_ciphertexts_per_chunk=1,
                 partial_dropouts={2: 2})
    assert res.contributors == (1, 3, 4)
    assert np.max(np.abs(res.sum - xs[1] - xs[3] - xs[4])) <= res.error_bound
    np.testing.assert_allclose(res.mean, res.sum / 3)


def test_observer_sees_only_aggregates_at_the_key_holder():
    g = np.random.default_rng(1)
    xs = {i: g.uniform(-1, 1, 3000) for i in range(1, 4)}
    for custody, direction in ((KeyCustody.SEPARATE_DECRYPTOR, "to_decryptor"),
                               (KeyCustody.SHARED_CLIENT_KEY, "to_client")):
        log = []
        he_sum(xs, scheme=Scheme.CKKS, keys=CKKS_KEYS, custody=custody, dropouts=[2],
               observer=lambda d, p, b: log.append((d, p, b)))
        uploads = [b for d, _, b in log if d == "to_server"]
        inbox = [b for d, _, b in log if d == direction]
        assert {p for d, p, _ in log if d == "to_server"} == {1, 3}
        assert inbox and all(decode_envelope(b).kind is EnvelopeKind.AGGREGATE_CHUNK
                             for b in inbox)
        check_key_holder_inbox(uploads, inbox)
        # the check does catch a leak: an individual upload in the inbox
        with pytest.raises(RemoteProtocolError):
            check_key_holder_inbox(uploads, [*inbox, uploads[0]])


def test_he_sum_rejects_bad_arguments():
    x = {1: np.zeros(10), 2: np.zeros(10)}
    with pytest.raises(ParameterError):
        he_sum({1: np.zeros(10), 2: np.zeros(11)}, scheme=Scheme.CKKS, keys=CKKS_KEYS)
    with pytest.raises(ParameterError):
        he_sum(x, scheme=Scheme.CKKS, keys=BFV_KEYS)
    with pytest.raises(ParameterError):
        he_sum(x, scheme=Scheme.CKKS, keys=CKKS_KEYS, dropouts=[9])
    with pytest.raises(ParameterError):
        he_sum({0: np.zeros(3)}, scheme=Scheme.CKKS, keys=CKKS_KEYS)
    with pytest.raises(ParameterError):
        he_sum({1: np.zeros(3), 2: np.zeros(3, dtype=np.int64)}, scheme=Scheme.BFV)
    small = HEParams(scheme=Scheme.CKKS, poly_modulus_degree=4096,
                     coeff_mod_bit_sizes=(42, 20), scale_bits=31, max_clients=2)
    with pytest.raises(ParameterError, match="max_clients"):
        he_sum({i: np.zeros(3) for i in (1, 2, 3)}, scheme=Scheme.CKKS, preset=small)


def _args(**kw):
    base = dict(protocol="he-ckks", clients=6, length=3000, dropout=0.34,
                drop_phase="masked-input", seed=5, bits=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_simulate_json_fields():
    ckks = run(_args())
    for key in ("protocol", "clients", "survivors", "aborted", "exact", "client_cpu_s",
                "server_cpu_s", "bytes_per_client_upload", "server_peak_mb", "wall_s",
                "max_abs_error"):
        assert key in ckks
    assert ckks["survivors"] == 4 and not ckks["aborted"]
    assert ckks["max_abs_error"] <= ckks["error_bound"] and ckks["within_error_bound"]
    bfv = run(_args(protocol="he-bfv", drop_phase="unmasking"))
    assert bfv["exact"] is True and bfv["survivors"] == 6  # late drops already uploaded
    assert bfv["bytes_per_param"] < 20
    with pytest.raises(ParameterError, match="overflow"):
        run(_args(protocol="he-bfv", bits=40))
    with pytest.raises(ParameterError):
        run(_args(bits=16))  # --bits is BFV-only
