"""LightSecAgg core: exact decoding from any U of N, clean aborts below U, field
arithmetic against a Python-integer reference, the transition table."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import (
    AbortedError,
    LocalProtocolError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.lightsecagg import LightSecAggConfig, Phase, max_bits
from secagg.lightsecagg import _derive as dv
from secagg.lightsecagg import client as client_mod
from secagg.lightsecagg import messages as m
from secagg.lightsecagg.field import P, inverse, lagrange_matrix, matmul, prg_elements
from tests.lightsecagg.harness import expected, make_round, rng, run

SMALL_PRIMES = (11, 13, 17, 31, 101, 257)


def _ref_lagrange(src, dst, prime):
    out = []
    for x in dst:
        row = []
        for i, si in enumerate(src):
            num, den = 1, 1
            for j, sj in enumerate(src):
                if j != i:
                    num = num * (x - sj) % prime
                    den = den * (si - sj) % prime
            row.append(num * pow(den, prime - 2, prime) % prime)
        out.append(row)
    return out


@given(st.data())
def test_lagrange_matrix_equals_the_textbook_formula(data):
    prime = data.draw(st.sampled_from((*SMALL_PRIMES, P)))
    k = data.draw(st.integers(1, min(8, prime // 2)))
    pts = data.draw(st.lists(st.integers(0, min(prime - 1, 10**6)), min_size=k + 2,
                             max_size=k + 4, unique=True))
    src, dst = pts[:k], pts[k:]
    got = lagrange_matrix(src, dst, prime=prime)
    assert got.tolist() == _ref_lagrange(src, dst, prime)


@given(st.integers(1, 8), st.sampled_from((1, 2, 7, 1023, 1024, 1025, 2100)),
       st.integers(1, 6), st.integers(0, 2**32))
def test_matmul_is_exact_mod_p(r, k, cols, seed):
    src = rng(seed)
    a = prg_elements(src.child("a").random_bytes(32), r * k).reshape(r, k)
    b = prg_elements(src.child("b").random_bytes(32), k * cols).reshape(k, cols)
    b[0, 0] = P - 1  # the largest element on a limb boundary
    got = matmul(a, b)
    ref = (a.astype(object) @ b.astype(object)) % P
    assert got.tolist() == ref.tolist()


def test_inverse_and_prg_elements():
    x = np.array([1, 2, P - 1, 12345], dtype=np.uint64)
    assert ((inverse(x) * x) % np.uint64(P)).tolist() == [1, 1, 1, 1]
    with pytest.raises(ParameterError):
        inverse(np.array([3, 0], dtype=np.uint64))
    seed = bytes(range(32))
    long = prg_elements(seed, 5000)
    assert int(long.max()) < P and prg_elements(seed, 17).tolist() == long[:17].tolist()


@given(st.data())
def test_any_u_of_n_responses_decode_the_exact_aggregate_mask(data):
    """Encode with the protocol's matrices, keep any U evaluations of the summed
    polynomial, decode: the sum of the survivors' mask pieces comes back exactly."""
    prime = data.draw(st.sampled_from((257, 65537, P)))
    n = data.draw(st.integers(2, 9))
    t = data.draw(st.integers(1, n - 1))
    u = data.draw(st.integers(t + 1, n))
    big_l = data.draw(st.integers(1, 4))
    alphas = [u + i + 1 for i in range(n)]
    enc = lagrange_matrix(range(1, u + 1), alphas, prime=prime)
    clients = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    coeffs = {c: np.array(data.draw(st.lists(st.integers(0, prime - 1), min_size=u * big_l,
                                             max_size=u * big_l)), dtype=np.uint64)
              .reshape(u, big_l) for c in clients}
    q = np.uint64(prime)
    total = np.zeros((n, big_l), dtype=np.uint64)
    for c in clients:
        total = (total + (enc.astype(object) @ coeffs[c].astype(object)) % prime
                 ).astype(np.uint64) % q
    responders = data.draw(st.lists(st.integers(0, n - 1), min_size=u, max_size=u, unique=True))
    dec = lagrange_matrix([alphas[j] for j in responders], range(1, u - t + 1), prime=prime)
    got = (dec.astype(object) @ total[responders].astype(object)) % prime
    want = sum(coeffs[c][: u - t].astype(object) for c in clients) % prime
    assert got.tolist() == want.tolist()


@given(n=st.integers(3, 7), data=st.data())
def test_round_sum_is_exact_with_any_dropout_pattern_that_leaves_u(n, data):
    t = data.draw(st.integers(1, n - 2))
    u = data.draw(st.integers(t + 1, n - 1))
    length = data.draw(st.integers(1, 40))
    cfg, xs, clients, server = make_round(n, length, privacy=t, target=u,
                                          seed=data.draw(st.integers(0, 2**20)))
    drops = data.draw(st.dictionaries(st.integers(1, n), st.sampled_from((0, 1, 2, 3)),
                                      max_size=n))
    run(clients, server, drops)
    if server.phase is Phase.FINALIZING:
        server.finalize()
    alive = [v for v in cfg.clients if v not in drops]
    if len(alive) >= u and all(
        len([v for v in cfg.clients if drops.get(v, 9) > s]) >= u for s in range(4)
    ):
        assert server.phase is Phase.COMPLETED
        res = server.result
        assert res is not None
        assert set(server.survivors) == {v for v in cfg.clients if drops.get(v, 9) > 2}
        assert np.array_equal(res, expected(xs, server.survivors, cfg.bits))
    else:
        assert server.phase is Phase.ABORTED
        assert server.result is None


def test_fewer_than_u_responses_abort_and_reveal_nothing():
    _cfg, _xs, clients, server = make_round(8, 50, privacy=2, target=5)
    # 4 of the 8 survivors of the masked-input phase never answer the unmask request
    run(clients, server, {1: 3, 2: 3, 3: 3, 4: 3})
    assert server.phase is Phase.ABORTED and server.aborted
    assert server.result is None and server.running_sum_bytes == 0
    assert "U = 5" in (server.abort_reason or "")
    with pytest.raises(LocalProtocolError):
        server.finalize()
    with pytest.raises(LocalProtocolError):
        server.deadline_passed()


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_too_few_at_any_earlier_phase_aborts_and_tells_the_rest(stage):
    _cfg, _xs, clients, server = make_round(6, 10, privacy=1, target=4)
    run(clients, server, {1: stage, 2: stage, 3: stage})
    assert server.aborted and server.result is None
    told = [c for u, c in clients.items() if u > 3]
    assert all(c.phase is Phase.ABORTED for c in told)


def test_transition_table_every_pair_outside_it_aborts_the_client():
    cfg, _xs, _clients, _server = make_round(4, 5, privacy=1, target=2)
    sid = cfg.session_id
    samples = {
        m.MessageType.KEYS_BROADCAST: m.KeysBroadcast(session_id=sid, sender=0, recipient=1,
                                                      keys=()),
        m.MessageType.SHARES_FORWARD: m.SharesForward(session_id=sid, sender=0, recipient=1,
                                                      boxes=()),
        m.MessageType.UNMASK_REQUEST: m.UnmaskRequest(session_id=sid, sender=0, recipient=1,
                                                      survivors=(1,)),
        m.MessageType.ABORT: m.Abort(session_id=sid, sender=0, recipient=1, reason="x"),
        m.MessageType.ADVERTISE_KEY: m.AdvertiseKey(session_id=sid, sender=0, recipient=1,
                                                    public_key=bytes(32)),
    }
    waiting = (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT)
    for phase, (t, msg) in itertools.product(waiting, samples.items()):
        if (phase, t) in client_mod.TRANSITIONS:
            continue
        _, _, cl, _ = make_round(4, 5, privacy=1, target=2)
        c = cl[1]
        c.start()
        c._phase = phase  # the table alone decides: no handler runs for these pairs
        with pytest.raises(RemoteProtocolError):
            c.receive(m.encode(msg))
        assert c.phase is Phase.ABORTED


def test_config_bounds():
    sid = bytes(32)
    ok = {"session_id": sid, "clients": (1, 2, 3, 4), "bits": 8, "length": 3}
    LightSecAggConfig(**ok, privacy=1, target=2, dropout=2)
    for t, u, d in [(0, 2, 1), (2, 2, 1), (1, 4, 1), (1, 2, 3), (1, 2, -1)]:
        with pytest.raises(ParameterError):
            LightSecAggConfig(**ok, privacy=t, target=u, dropout=d)
    with pytest.raises(ParameterError):  # overflow rule
        LightSecAggConfig(**{**ok, "bits": 30}, privacy=1, target=2, dropout=0)
    assert max_bits(4) == 29 and max_bits(500) == 22
    assert 500 * (2**22 - 1) < P <= 500 * (2**23 - 1)


def test_aborted_round_outcome_type():
    # the scheme halves' contract: an abort is an AbortedError upstream, here data
    assert issubclass(AbortedError, Exception)
    _cfg, _xs, clients, server = make_round(3, 4, privacy=1, target=2)
    run(clients, server, {1: 0, 2: 0})
    assert server.aborted


def test_coded_share_boxes_are_bound_to_sender_and_receiver():
    cfg, _xs, _clients, _server = make_round(4, 6, privacy=1, target=3)
    ad12 = dv.box_ad(session_id=cfg.session_id, sender=1, receiver=2)
    ad21 = dv.box_ad(session_id=cfg.session_id, sender=2, receiver=1)
    assert ad12 != ad21
