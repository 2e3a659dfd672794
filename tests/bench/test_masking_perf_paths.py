"""Behaviour of the fast paths used at scale (10^4 clients): a client's own view of the
Harary graph, and the codec of long id lists (U3 goes to every survivor).  Each is checked
against the straightforward definition, including the error cases."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import DecodeError, ParameterError
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, RoundConfig
from secagg.masking.graph import all_neighbors, neighbors, permutation

SID = b"s" * 32


def _cfg(ids: list[int], k: int) -> RoundConfig:
    return RoundConfig.create(session_id=SID, clients=ids, bits=32, length=4,
                              protocol=ProtocolKind.SECAGG_PLUS, neighbors=k, threshold=2,
                              graph_seed=b"g" * 32)


@pytest.mark.parametrize(("n", "k"), [(2001, 86), (1500, 7), (999, 9), (64, 63)])
def test_client_view_of_the_graph_matches_the_server_view(n, k):
    gen = np.random.default_rng(n)  # test data only: sparse, unordered ids
    ids = sorted({int(x) for x in gen.integers(1, 2**32 - 1, size=n)})
    cfg = _cfg(ids, k)
    adj = all_neighbors(cfg)
    perm = permutation(cfg)
    assert sorted(perm) == ids
    for u in [ids[0], ids[-1], *(ids[int(i)] for i in gen.integers(0, len(ids), size=40))]:
        assert neighbors(cfg, u) == adj[u]


def test_client_view_of_the_graph_rejects_strangers():
    cfg = _cfg(list(range(1, 101)), 10)
    for bad in (0, 101, 2**40, "7", None):
        with pytest.raises(KeyError):
            neighbors(cfg, bad)  # type: ignore[arg-type]


def _request(survivors, dropped=()):
    return m.UnmaskingRequest(session_id=SID, sender=m.SERVER_ID, recipient=5,
                              survivors=survivors, dropped=dropped)


def test_long_id_lists_round_trip_and_share_one_validation():
    survivors = tuple(range(3, 20003, 2))
    dropped = (4, 6, 2**32 - 1)
    msgs = [_request(survivors, dropped) for _ in range(3)]
    wire = [m.encode(x) for x in msgs]
    assert wire[0] == wire[1] == wire[2]
    back = m.decode(wire[0])
    assert isinstance(back, m.UnmaskingRequest)
    assert back.survivors == survivors and back.dropped == dropped
    assert all(type(v) is int for v in back.survivors)
    # the byte layout: u32 count, then u32 ids, big-endian
    body = wire[0][2 + 1 + 1 + 32 + 4 + 4 :]
    assert body[:4] == len(survivors).to_bytes(4, "big")
    assert body[4:8] == (3).to_bytes(4, "big")


@pytest.mark.parametrize("bad", [(3, 2), (1, 1), (0, 5), (1, 2**32), (1, True), (1, 2.0)])
def test_bad_id_lists_are_rejected_even_after_a_good_one(bad):
    good = tuple(range(1, 5000))
    _request(good)
    _request(good)  # validated once, reused
    with pytest.raises(ParameterError):
        _request(bad)
    with pytest.raises(ParameterError):
        _request(good, dropped=bad)


def test_unsorted_ids_on_the_wire_are_a_decode_error():
    wire = bytearray(m.encode(_request((1, 2, 3))))
    pos = wire.index((2).to_bytes(4, "big") + (3).to_bytes(4, "big"))
    wire[pos : pos + 4] = (7).to_bytes(4, "big")  # survivors 1, 7, 3
    with pytest.raises(DecodeError):
        m.decode(bytes(wire))
