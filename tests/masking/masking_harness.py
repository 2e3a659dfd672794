"""Test harness: drive a small deterministic round step by step and record traffic.

Every message crosses the codec.  ``Harness.drive`` can stop with the server
waiting in a given phase while one client's message is held back, drop clients
before a round, and rewrite server messages per recipient (a malicious server).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from secagg.errors import InsecureConfigurationWarning, SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey
from secagg.sim.runtime import build_config, plaintext_sum

COLLECTING = (
    Phase.ADVERTISE_KEYS,
    Phase.GRAPH_SEED,
    Phase.SHARE_KEYS,
    Phase.MASKED_INPUT,
    Phase.CONSISTENCY,
    Phase.UNMASKING,
)
#: A client dropped "before round r" never sees a message of REPLY_ROUND >= r; the
#: graph-seed request belongs to round 0 (a client that advertised keys reveals).
REPLY_ROUND = {
    m.MessageType.SEED_REQUEST: 0,
    m.MessageType.KEYS_BROADCAST: 1,
    m.MessageType.MASKED_INPUT_REQUEST: 2,
    m.MessageType.CONSISTENCY_REQUEST: 3,
    m.MessageType.UNMASKING_REQUEST: 4,
    m.MessageType.ABORT: 0,
}

Rewrite = Callable[[int, m.Message], m.Message | None]


def det_rng(seed: int) -> InsecureDeterministicRandom:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        return InsecureDeterministicRandom(seed)


@dataclass
class Harness:
    config: RoundConfig
    idkeys: dict[int, SigningKey]
    inputs: dict[int, np.ndarray]
    clients: dict[int, Client]
    server: Server
    sent: dict[int, list[m.Message]] = field(default_factory=dict)  # client -> what it sent
    received: dict[int, list[m.Message]] = field(default_factory=dict)  # client -> what it got
    errors: dict[int, SecAggError] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        n: int = 5,
        *,
        protocol: ProtocolKind = ProtocolKind.SECAGG,
        security: SecurityMode = SecurityMode.SEMI_HONEST,
        neighbors: int | None = None,
        threshold: int | None = None,
        bits: int = 16,
        length: int = 6,
        seed: int = 7,
    ) -> Harness:
        rng = det_rng(seed)
        ids = list(range(1, n + 1))
        cfg, idkeys = build_config(
            ids,
            bits=bits,
            length=length,
            protocol=protocol,
            security=security,
            neighbors=neighbors,
            threshold=threshold,
            rng=rng,
        )
        dt = np.uint32 if bits <= 32 else np.uint64
        inputs = {
            u: (np.arange(length, dtype=np.uint64) * (u + 3) + u * 1000).astype(dt) % dt(1 << bits)
            for u in ids
        }
        clients = {
            u: Client(
                config=cfg,
                client_id=u,
                input_vector=inputs[u],
                rng=rng.child(f"client/{u}"),
                identity_key=idkeys.get(u),
            )
            for u in ids
        }
        return cls(cfg, idkeys, inputs, clients, Server(config=cfg))

    def expected_sum(self, survivors: tuple[int, ...]) -> np.ndarray:
        return plaintext_sum(self.inputs, survivors, self.config.bits)

    def sent_types(self, u: int) -> list[m.MessageType]:
        return [x.TYPE for x in self.sent.get(u, [])]

    def drive(
        self,
        *,
        stop: Phase | None = None,
        hold: int | None = None,
        drops: dict[int, int] | None = None,
        rewrite: Rewrite | None = None,
        finalize: bool = True,
    ) -> m.Message | None:
        """Run the round.  Returns the held message when stopping at ``stop``."""
        drops = drops or {}
        held: m.Message | None = None
        to_server: list[tuple[int, m.Message]] = []
        for u in self.config.clients:
            if drops.get(u, 99) <= 0:
                continue
            to_server.append((u, self.clients[u].start()))
        while True:
            phase0 = self.server.phase
            to_clients: list[tuple[int, m.Message]] = []
            for u, msg in to_server:
                self.sent.setdefault(u, []).append(msg)
                if stop is not None and self.server.phase is stop and u == hold:
                    held = msg
                    continue
                try:
                    to_clients += self.server.receive(u, m.encode(msg))
                except SecAggError as exc:
                    self.errors[-u] = exc
            if stop is not None and self.server.phase is stop and phase0 is stop:
                return held
            if self.server.phase is phase0 and phase0 in COLLECTING:
                to_clients += self.server.deadline_passed()
            if stop is not None and self.server.phase is stop and stop not in COLLECTING:
                return None
            if not to_clients and self.server.phase not in COLLECTING:
                break
            to_server = []
            for u, msg in to_clients:
                out = rewrite(u, msg) if rewrite is not None else msg
                if out is None:
                    continue
                if drops.get(u, 99) <= REPLY_ROUND[out.TYPE] and out.TYPE != m.MessageType.ABORT:
                    continue
                self.received.setdefault(u, []).append(out)
                try:
                    replies = self.clients[u].receive(m.encode(out))
                except SecAggError as exc:
                    self.errors[u] = exc
                    continue
                to_server += [(u, r) for r in replies]
        if finalize and self.server.phase is Phase.FINALIZING:
            self.server.finalize()
        return None
