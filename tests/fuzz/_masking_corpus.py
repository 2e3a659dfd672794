"""A recorded masking round and factories that rebuild a party at any stage by
replaying it (parties are deterministic under InsecureDeterministicRandom)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from adversarial._harness import Manual, Round, make_round

from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.masking.client import Client
from secagg.masking.server import Server
from secagg.sim import ProtocolKind, SecurityMode

__all__ = ["Trace", "client_snapshot", "server_snapshot", "trace"]


@dataclass
class Trace:
    round: Round
    log: list[tuple[str, int, bytes]]

    def to_client(self, u: int) -> list[bytes]:
        return [d for dr, c, d in self.log if dr == "to_client" and c == u]

    def to_server(self) -> list[tuple[int, bytes]]:
        return [(c, d) for dr, c, d in self.log if dr == "to_server"]

    def client_at(self, u: int, fed: int) -> Client:
        """Client ``u`` after ``start()`` and its first ``fed`` server messages."""
        rnd = self.round
        c = Client(
            config=rnd.config,
            client_id=u,
            input_vector=rnd.inputs[u],
            rng=rnd.rng.child(f"client/{u}"),
            identity_key=rnd.identity_keys.get(u),  # type: ignore[arg-type]
        )
        c.start()
        for data in self.to_client(u)[:fed]:
            c.receive(data)
        return c

    def server_at(self, fed: int) -> Server:
        """The server after the first ``fed`` client messages."""
        s = Server(config=self.round.config)
        for u, data in self.to_server()[:fed]:
            s.receive(u, data)
        return s

    def all_bytes(self) -> list[bytes]:
        return [d for _, _, d in self.log]


@lru_cache(maxsize=4)
def trace(security: SecurityMode, protocol: ProtocolKind = ProtocolKind.SECAGG) -> Trace:
    neighbors = 4 if protocol is ProtocolKind.SECAGG_PLUS else None
    rnd = make_round(
        6 if protocol is ProtocolKind.SECAGG_PLUS else 5,
        security=security,
        protocol=protocol,
        neighbors=neighbors,
        bits=20,
        length=6,
        seed=11,
    )
    run = Manual(rnd)
    run.start()
    while run.outbox:
        run.deliver()
    assert run.server.phase.value == "finalizing" and not run.client_errors
    result = run.server.finalize()
    assert np.array_equal(result, rnd.expected_sum(rnd.config.clients))
    abort = m.Abort(
        session_id=rnd.config.session_id,
        sender=0,
        recipient=1,
        code=AbortReason.TOO_FEW_SHARES,
        reason="fuzz ✓",
    )
    log = [*list(rnd.recorder.log), ("to_client", 1, m.encode(abort))]
    return Trace(round=rnd, log=log)


def client_snapshot(c: Client) -> tuple[object, ...]:
    return (
        c.phase,
        c.abort_reason,
        tuple(sorted(c._peers)),
        tuple(sorted(c._held.items())),
        tuple(c._jobs),
        c._signed,
        None if c._b is None else bytes(c._b),
    )


def server_snapshot(s: Server) -> tuple[object, ...]:
    return (
        s.phase,
        s.abort_reason,
        s.sets,
        s.awaiting,
        None if s._sum is None else s._sum.tobytes(),
        tuple(sorted(s._signatures.items())),
        tuple(sorted((k, o.tobytes(), y.tobytes()) for k, (o, y) in s._shares_from.items())),
    )
