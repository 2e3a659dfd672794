"""Neighbor graphs: complete (SecAgg) and Harary ``H(k, n)`` over a verifiable
permutation (SecAgg+).  Definition: ``protocols/secagg.md`` §2.

In protocol v2 the permutation key of a SecAgg+ round is the graph key derived from
every graph-seed reveal of ``U1`` (``_common.graph_key``); every client recomputes it
from the reveals it was sent, so neither the server nor any client alone picks it.
The functions below take that key as ``seed`` (``config.graph_seed`` when omitted,
which is only the key of the graph-function tests, not of a round).
"""

from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from secagg.masking.config import ProtocolKind, RoundConfig
from secagg.primitives.kdf import derive
from secagg.primitives.prg import expand

__all__ = ["all_neighbors", "neighbors", "permutation"]

_PERM_PURPOSE = "harary-permutation"


def permutation(config: RoundConfig, *, seed: bytes | None = None) -> tuple[int, ...]:
    """The Harary permutation ``π`` of ``config.clients`` (SecAgg+).

    Sort key of the ``i``-th smallest id ``c_i``: ``(w[2i], w[2i+1], c_i)`` with
    ``w = PRG(HKDF(seed, "harary-permutation", session_id, (n, k)))`` as uint64.
    """
    key = config.graph_seed if seed is None else seed
    return _permutation(config.session_id, key, config.clients, config.degree)


def _order(
    session_id: bytes, graph_seed: bytes, clients: tuple[int, ...], k: int
) -> npt.NDArray[np.intp]:
    """Indices into ``clients`` in permutation order: ``π[i] = clients[order[i]]``."""
    n = len(clients)
    seed = derive(graph_seed, purpose=_PERM_PURPOSE, session_id=session_id, fields=(n, k))
    w = expand(seed, 2 * n, 64)
    ids = np.asarray(clients, dtype=np.uint64)
    order: npt.NDArray[np.intp] = np.lexsort((ids, w[1::2], w[0::2]))
    return order


def _permutation(
    session_id: bytes, graph_seed: bytes, clients: tuple[int, ...], k: int
) -> tuple[int, ...]:
    order = _order(session_id, graph_seed, clients, k)
    return tuple(int(clients[i]) for i in order)


def _harary_positions(pos: int, n: int, k: int) -> set[int]:
    if k >= n - 1:
        return {p for p in range(n) if p != pos}
    h = k // 2
    out = {(pos + d) % n for d in range(1, h + 1)} | {(pos - d) % n for d in range(1, h + 1)}
    if k % 2:
        if n % 2 == 0:
            out.add((pos + n // 2) % n)
        else:
            # odd k, odd n: the pairs {i, i + (n+1)/2} for i = 0 .. (n-1)/2
            half = (n + 1) // 2
            if pos <= (n - 1) // 2:
                out.add((pos + half) % n)
            back = (pos - half) % n
            if back <= (n - 1) // 2:
                out.add(back)
    out.discard(pos)
    return out


def neighbors(config: RoundConfig, client: int, *, seed: bytes | None = None) -> frozenset[int]:
    """``N(client)``: the ids ``client`` exchanges masks and shares with."""
    if config.protocol is ProtocolKind.SECAGG or config.degree >= config.n - 1:
        if client not in config.clients:
            raise KeyError(client)
        return frozenset(c for c in config.clients if c != client)
    # one client's view: one numpy lexsort of the n sort keys, no Python loop over n ids
    clients = config.clients
    try:
        j = bisect_left(clients, client)
    except TypeError:
        raise KeyError(client) from None
    if j == len(clients) or clients[j] != client:
        raise KeyError(client)
    key = config.graph_seed if seed is None else seed
    order = _order(config.session_id, key, clients, config.degree)
    pos = int(np.flatnonzero(order == j)[0])
    return frozenset(
        int(clients[order[q]]) for q in _harary_positions(pos, config.n, config.degree)
    )


def all_neighbors(config: RoundConfig, *, seed: bytes | None = None) -> dict[int, frozenset[int]]:
    """``N(u)`` for every registered client (symmetric)."""
    key = config.graph_seed if seed is None else seed
    return dict(_all(config.protocol, config.session_id, key, config.clients, config.degree))


@lru_cache(maxsize=16)
def _all(
    protocol: ProtocolKind,
    session_id: bytes,
    graph_seed: bytes,
    clients: tuple[int, ...],
    k: int,
) -> tuple[tuple[int, frozenset[int]], ...]:
    n = len(clients)
    if protocol is ProtocolKind.SECAGG or k >= n - 1:
        everyone = frozenset(clients)
        return tuple((c, everyone - {c}) for c in clients)
    perm = _permutation(session_id, graph_seed, clients, k)
    adj: dict[int, set[int]] = {c: set() for c in clients}
    for p, c in enumerate(perm):
        for q in _harary_positions(p, n, k):
            adj[c].add(perm[q])
    return tuple((c, frozenset(adj[c])) for c in clients)
