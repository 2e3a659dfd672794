"""What T colluders (with the server) see of an honest client's mask, and where the
privacy padding comes from."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from secagg.lightsecagg import Client
from secagg.lightsecagg import _derive as dv
from secagg.lightsecagg import messages as m
from secagg.lightsecagg.field import P, lagrange_matrix, matmul
from secagg.primitives import aead
from secagg.primitives.kex import KeyPair
from tests.lightsecagg.harness import make_round, rng


@pytest.mark.parametrize(("prime", "n", "t", "u"), [(11, 4, 1, 3), (13, 5, 2, 3), (17, 6, 2, 4)])
def test_t_colluders_view_is_independent_of_an_honest_mask(prime, n, t, u):
    """Exhaustive on a small field: for every set of T colluders and every value of
    the honest client's mask pieces, the colluders' coded shares, over all
    paddings, are uniform on GF(q)^T — the same distribution whatever the mask.
    (Their view together with the aggregate: the server additionally sees only
    ``x_u + z_u`` and evaluations of the *summed* polynomial.)"""
    alphas = [u + i + 1 for i in range(n)]  # the protocol's points (config.alpha)
    enc = lagrange_matrix(range(1, u + 1), alphas, prime=prime).astype(np.int64)
    masks = list(itertools.product(range(prime), repeat=u - t))
    if len(masks) > 40:
        masks = masks[:: len(masks) // 40]
    pads = np.array(list(itertools.product(range(prime), repeat=t)), dtype=np.int64)
    for coll in itertools.combinations(range(n), t):
        rows = enc[list(coll)]  # (T, U)
        dists = set()
        for z in masks:
            coeffs = np.concatenate([np.tile(np.array(z, dtype=np.int64), (len(pads), 1)),
                                     pads], axis=1)  # every padding, this mask
            views = (coeffs @ rows.T) % prime
            counts = Counter(map(tuple, views.tolist()))
            assert len(counts) == prime**t and set(counts.values()) == {1}
            dists.add(frozenset(counts.items()))
        assert len(dists) == 1  # identical (uniform) for every mask value


def test_without_padding_t_colluders_would_learn_the_mask():
    """The check above is not vacuous: with the padding forced to zero (FedML's
    bug) one colluder's share determines a mask value."""
    prime, n, _t, u = 11, 4, 1, 2
    alphas = [u + i + 1 for i in range(n)]
    enc = lagrange_matrix(range(1, u + 1), alphas, prime=prime).astype(np.int64)
    views = {z: int(enc[0, 0] * z % prime) for z in range(prime)}
    assert len(set(views.values())) == prime  # the share reveals z exactly


def _recover_padding(client: Client, seed: int) -> np.ndarray:
    """Run ``client``'s key phase against fake peers, open every coded share and
    interpolate the client's polynomial at the padding points ``beta_{U-T+1..U}``."""
    cfg = client.config
    adv = client.start()
    peers = {v: KeyPair.generate(rng(seed, f"peer/{v}")) for v in cfg.clients if v != client.id}
    keys = tuple(sorted([(client.id, adv.public_key)] + [(v, k.public) for v, k in
                                                          peers.items()]))
    (shares,) = client.receive(m.encode(m.KeysBroadcast(
        session_id=cfg.session_id, sender=0, recipient=client.id, keys=keys)))
    assert isinstance(shares, m.CodedShares)
    rows, points = [], []
    for v, box in shares.boxes:
        key = dv.share_key(peers[v].private, adv.public_key, session_id=cfg.session_id,
                           a=v, b=client.id)
        pt = aead.open_with_ad(key, box, dv.box_ad(session_id=cfg.session_id,
                                                   sender=client.id, receiver=v))
        rows.append(np.frombuffer(pt, dtype="<u4").astype(np.uint64))
        points.append(cfg.alpha(v))
    rows, points = rows[: cfg.target], points[: cfg.target]
    back = lagrange_matrix(points, range(cfg.target - cfg.privacy + 1, cfg.target + 1))
    return matmul(back, np.stack(rows))


def test_padding_comes_from_the_injected_csprng_and_is_not_zero(monkeypatch):
    # numpy's RNG must not be involved: make every use of it fail
    def boom(*a, **k):
        raise AssertionError("numpy RNG used")

    for name in ("default_rng", "random", "randint", "rand", "seed", "RandomState"):
        monkeypatch.setattr(np.random, name, boom)
    cfg, xs, clients, _ = make_round(6, 40, privacy=2, target=4, seed=5)
    pad_a = _recover_padding(clients[1], 5)
    assert pad_a.shape == (cfg.privacy, cfg.piece_length)
    assert np.count_nonzero(pad_a) > 0.99 * pad_a.size  # uniform, not zeros
    # it is exactly the PRG expansion of the secret the injected source gave
    src = rng(5).child("client/1")
    KeyPair.generate(src)  # start() draws the X25519 key first, then the secret
    secret = src.random_bytes(32)
    want = dv.padding_elements(secret, session_id=cfg.session_id, client=1,
                               count=cfg.privacy * cfg.piece_length)
    assert pad_a.reshape(-1).tolist() == want.tolist()
    # another source, everything else equal: another padding
    other = Client(config=cfg, client_id=1, input_vector=xs[1], rng=rng(6, "other"))
    pad_b = _recover_padding(other, 5)
    assert not np.array_equal(pad_a, pad_b)
    assert int(pad_a.max()) < P
