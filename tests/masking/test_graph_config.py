"""Neighbor graphs and round configuration."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode, default_parameters
from secagg.masking.graph import all_neighbors, neighbors, permutation

SID = b"s" * 32
SEED = b"g" * 32


def _cfg(n: int, k: int, *, seed: bytes = SEED, sid: bytes = SID) -> RoundConfig:
    return RoundConfig.create(
        session_id=sid,
        clients=list(range(1, n + 1)),
        bits=16,
        length=4,
        protocol=ProtocolKind.SECAGG_PLUS,
        neighbors=k,
        threshold=2,
        graph_seed=seed,
    )


@given(st.integers(4, 40), st.integers(2, 12))
def test_harary_graph_is_symmetric_and_regular(n: int, k: int) -> None:
    k = min(k, n - 1)
    cfg = _cfg(n, k)
    adj = all_neighbors(cfg)
    degrees = [len(v) for v in adj.values()]
    for u, nb in adj.items():
        assert u not in nb
        assert nb == neighbors(cfg, u)  # a client recomputes its own neighborhood
        for v in nb:
            assert u in adj[v]
    assert min(degrees) == k
    # only the odd-k, odd-n Harary graph has one vertex of degree k + 1
    assert max(degrees) == k + (1 if k % 2 and n % 2 and k < n - 1 else 0)


def test_permutation_depends_on_seed_and_session_and_is_reproducible() -> None:
    p = permutation(_cfg(50, 6))
    assert p == permutation(_cfg(50, 6))
    assert sorted(p) == list(range(1, 51))
    assert p != permutation(_cfg(50, 6, seed=b"h" * 32))
    assert p != permutation(_cfg(50, 6, sid=b"t" * 32))


def test_complete_graph() -> None:
    cfg = RoundConfig.create(
        session_id=SID, clients=[3, 9, 4], bits=8, length=1, protocol=ProtocolKind.SECAGG
    )
    assert cfg.clients == (3, 4, 9) and cfg.degree == 2
    assert neighbors(cfg, 4) == {3, 9}
    with pytest.raises(KeyError):
        neighbors(cfg, 5)


def test_default_parameters() -> None:
    assert default_parameters(10, ProtocolKind.SECAGG) == (9, 6)
    assert default_parameters(100, ProtocolKind.SECAGG_PLUS) == (42, 22)
    assert default_parameters(5, ProtocolKind.SECAGG_PLUS) == (4, 3)
    with pytest.raises(ParameterError):
        default_parameters(1, ProtocolKind.SECAGG)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"session_id": b"short"},
        {"clients": (1, 1, 2)},
        {"clients": (0, 1, 2)},
        {"clients": (1,)},
        {"bits": 0},
        {"bits": 65},
        {"length": 0},
        {"threshold": 1},
        {"threshold": 5},
        {"protocol": ProtocolKind.SECAGG_PLUS, "neighbors": 2, "graph_seed": b""},
        {"security": SecurityMode.MALICIOUS},
        {
            "security": SecurityMode.MALICIOUS,
            "identity_keys": tuple((i, bytes(32)) for i in range(1, 6)),
            "threshold": 2,
        },
    ],
)
def test_config_rejects(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "session_id": SID,
        "protocol": ProtocolKind.SECAGG,
        "security": SecurityMode.SEMI_HONEST,
        "clients": (1, 2, 3, 4, 5),
        "bits": 16,
        "length": 3,
        "threshold": 3,
    }
    base.update(kwargs)
    with pytest.raises(ParameterError):
        RoundConfig(**base)  # type: ignore[arg-type]


def test_signature_threshold_is_majority() -> None:
    cfg = RoundConfig.create(
        session_id=SID,
        clients=range(1, 11),
        bits=8,
        length=1,
        protocol=ProtocolKind.SECAGG,
        security=SecurityMode.MALICIOUS,
        identity_keys={i: bytes(32) for i in range(1, 11)},
        threshold=5,
    )
    assert cfg.signature_threshold == 6


def test_odd_odd_harary_pairs_wrap_mod_n_as_the_spec_example_says() -> None:
    """protocols/secagg.md §2: n = 5, k = 3 has the ring edges plus {0,3}, {1,4}, {2,0};
    position 0 has degree k + 1, every other position degree k."""
    from secagg.masking.graph import _harary_positions

    adj = {p: _harary_positions(p, 5, 3) for p in range(5)}
    ring = {frozenset({p, (p + 1) % 5}) for p in range(5)}
    extra = {frozenset({0, 3}), frozenset({1, 4}), frozenset({2, 0})}
    edges = {frozenset({p, q}) for p, qs in adj.items() for q in qs}
    assert edges == ring | extra
    assert [len(adj[p]) for p in range(5)] == [4, 3, 3, 3, 3]
