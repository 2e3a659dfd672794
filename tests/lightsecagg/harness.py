"""A tiny in-memory LightSecAgg round (no driver): for core tests."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np

from secagg.lightsecagg import Client, LightSecAggConfig, Server
from secagg.lightsecagg import messages as m
from secagg.primitives.rand import InsecureDeterministicRandom

#: drop stage: 1 = before KeysBroadcast (no coded shares), 2 = before SharesForward
#: (no masked input), 3 = before UnmaskRequest (no response).  0 = never starts.
STAGES = (0, 1, 2, 3)


def rng(seed: int, label: str = "root") -> InsecureDeterministicRandom:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return InsecureDeterministicRandom(seed, label)


def make_round(n: int, length: int, *, bits: int = 8, seed: int = 1, privacy: int | None = None,
               target: int | None = None) -> tuple[LightSecAggConfig, dict[int, np.ndarray],
                                                   dict[int, Client], Server]:
    src = rng(seed)
    ids = list(range(1, n + 1))
    cfg = LightSecAggConfig.create(session_id=src.child("sid").random_bytes(32), clients=ids,
                                   bits=bits, length=length, privacy=privacy, target=target)
    xs = {u: np.frombuffer(src.child(f"x/{u}").random_bytes(4 * length), dtype="<u4")
          % np.uint32(1 << bits) for u in ids}
    clients = {u: Client(config=cfg, client_id=u, input_vector=xs[u],
                         rng=src.child(f"client/{u}")) for u in ids}
    return cfg, xs, clients, Server(config=cfg)


def run(clients: Mapping[int, Client], server: Server, drops: Mapping[int, int] | None = None,
        tap: list[tuple[str, int, bytes]] | None = None) -> Server:
    """Drive the round; ``drops[u] = stage`` (see :data:`STAGES`)."""
    drops = dict(drops or {})
    out: list[tuple[int, m.Message]] = []
    for u, c in clients.items():
        if drops.get(u, 99) <= 0:
            continue
        data = m.encode(c.start())
        if tap is not None:
            tap.append(("to_server", u, data))
        out += server.receive(u, data)
    stage = 1
    while True:
        if server.collecting is not None and not out:
            out = server.deadline_passed()
            continue
        if not out:
            break
        nxt: list[tuple[int, m.Message]] = []
        for u, msg in out:
            data = m.encode(msg)
            if tap is not None:
                tap.append(("to_client", u, data))
            if drops.get(u, 99) <= stage or isinstance(msg, m.Abort):
                if isinstance(msg, m.Abort) and drops.get(u, 99) > stage:
                    clients[u].receive(data)
                continue
            for r in clients[u].receive(data):
                rd = m.encode(r)
                if tap is not None:
                    tap.append(("to_server", u, rd))
                nxt += server.receive(u, rd)
        if server.collecting is not None and not nxt:
            nxt = server.deadline_passed()
        out = nxt
        stage += 1
    return server


def finish(clients: Mapping[int, Client], server: Server,
           drops: Mapping[int, int] | None = None) -> Server:
    """:func:`run`, then the server's one-shot decode if the round got that far."""
    run(clients, server, drops)
    if server.phase.value == "finalizing":
        server.finalize()
    return server


def expected(xs: Mapping[int, np.ndarray], survivors: tuple[int, ...], bits: int) -> np.ndarray:
    acc = np.zeros(len(next(iter(xs.values()))), dtype=np.uint64)
    for u in survivors:
        acc += xs[u]
    return (acc % (1 << bits)).astype(np.uint32)
