"""Hypothesis strategies for SecAgg rounds (needs the ``test`` extra).

Every strategy draws what a user's system must handle: round configurations a
:class:`~secagg.masking.policy.ClientPolicy` accepts, inputs at the edges of
``Z_{2^b}``, dropout schedules by phase, malicious-server actions and byte-level
mutations of any message.  They compose: :func:`rounds` draws a whole
:class:`RoundCase` that :func:`secagg.testing.predict` judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np

from secagg._extras import require
from secagg.errors import ParameterError, PolicyError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.policy import ClientPolicy
from secagg.phase import ROUND_PHASES
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.runtime.api import build_config
from secagg.testing.rounds import (
    ATTACKS_NEEDING_MALICIOUS_MODE,
    Mutation,
    MutationKind,
    Schedule,
    ServerAttack,
    reproducible_rng,
)

require("hypothesis", "test")
from hypothesis import strategies as st  # noqa: E402

__all__ = [
    "RoundCase",
    "accepted_parameters",
    "inputs_for",
    "mutations",
    "round_configs",
    "rounds",
    "schedules",
    "server_attacks",
]

#: A small policy for generated rounds: both graphs, both modes, n <= 8, m <= 4.
_SMALL_N = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundCase:
    """One generated round: config, identity keys, inputs, schedule and the seed
    every party's reproducible randomness derives from."""

    config: RoundConfig
    identity: dict[int, bytes]  #: malicious mode: client -> raw Ed25519 seed
    inputs: dict[int, UIntArray]
    schedule: Schedule
    seed: bytes

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (for reports and failure messages)."""
        c = self.config
        return {
            "n": c.n, "k": c.degree, "t": c.threshold, "bits": c.bits, "length": c.length,
            "protocol": c.protocol.value, "security": c.security.value,
            "inputs": {str(u): x.tolist() for u, x in self.inputs.items()},
            "drops": {str(u): p.value for u, p in sorted(self.schedule.drops.items())},
            "corruptions": [[p.value, u, x.kind.value, x.position, x.value]
                            for p, u, x in self.schedule.corruptions],
            "seed": self.seed.hex(),
        }


@lru_cache(maxsize=512)
def accepted_parameters(policy: ClientPolicy, n: int, protocol: ProtocolKind,
                        security: SecurityMode) -> tuple[tuple[int, int], ...]:
    """Every ``(k, t)`` the policy accepts for ``n`` clients (small ``n`` only)."""
    out = []
    ks = [n - 1] if protocol is ProtocolKind.SECAGG else range(2, n - 1)
    for k in ks:
        for t in range(2, k + 1):
            try:
                cfg = RoundConfig.create(
                    session_id=bytes(32), clients=list(range(1, n + 1)), bits=policy.min_bits,
                    length=policy.min_length, protocol=protocol, security=security,
                    neighbors=k, threshold=t,
                    graph_seed=bytes(32) if protocol is ProtocolKind.SECAGG_PLUS else b"",
                    identity_keys={u: bytes(32) for u in range(1, n + 1)}
                    if security is SecurityMode.MALICIOUS else None,
                )
                policy.check(cfg)
            except (PolicyError, ParameterError):
                continue
            out.append((k, t))
    return tuple(out)


@st.composite
def round_configs(draw: st.DrawFn, policy: ClientPolicy | None = None, *,
                  max_clients: int = _SMALL_N, max_length: int = 4
                  ) -> tuple[RoundConfig, dict[int, bytes]]:
    """``(config, identity seeds)`` that ``policy`` accepts (a permissive small
    policy by default: any graph and mode, ``alpha = 0``), ``n <= max_clients``."""
    pol = policy or ClientPolicy(corrupt_fraction=0.0, dropout_fraction=0.0)
    lo_n = max(3, pol.min_clients)
    hi_n = min(pol.max_clients, max_clients)
    if lo_n > hi_n:
        raise ValueError("the policy accepts no small round (raise max_clients)")
    options = [
        (n, p, s)
        for n in range(lo_n, hi_n + 1)
        for p in sorted(pol.protocols, key=lambda x: x.value)
        for s in sorted(pol.security_modes, key=lambda x: x.value)
        if accepted_parameters(pol, n, p, s)
    ]
    if not options:
        raise ValueError("the policy accepts no (n, k, t) with n <= max_clients")
    n, protocol, security = draw(st.sampled_from(options))
    k, t = draw(st.sampled_from(accepted_parameters(pol, n, protocol, security)))
    bits = draw(st.sampled_from(sorted({pol.min_bits, pol.max_bits,
                                        *(b for b in (1, 8, 16, 31, 32, 33, 64)
                                          if pol.min_bits <= b <= pol.max_bits)})))
    length = draw(st.integers(pol.min_length, max(pol.min_length, min(pol.max_length,
                                                                       max_length))))
    seed = draw(st.binary(min_size=32, max_size=32))
    rng = reproducible_rng(seed, "config")
    cfg, keys = build_config(range(1, n + 1), bits=bits, length=length, protocol=protocol,
                             security=security, neighbors=k, threshold=t, rng=rng)
    return cfg, {u: key.private_bytes() for u, key in keys.items()}


@st.composite
def inputs_for(draw: st.DrawFn, config: RoundConfig) -> dict[int, UIntArray]:
    """One input vector per client, biased to 0 and ``2^b - 1`` (wrap-around)."""
    top = (1 << config.bits) - 1
    elem = st.one_of(st.just(0), st.just(top), st.integers(0, top))
    dt = dtype_for_bits(config.bits)
    out: dict[int, UIntArray] = {}
    for u in config.clients:
        values = draw(st.lists(elem, min_size=config.length, max_size=config.length))
        out[u] = cast(UIntArray, np.array(values, dtype=dt))
    return out


def mutations(*, must_refuse: bool = False) -> st.SearchStrategy[Mutation]:
    """Byte-level changes of any message (``must_refuse``: only those every strict
    decoder refuses whatever the layout — truncation and trailing bytes)."""
    kinds = [MutationKind.TRUNCATE, MutationKind.EXTEND]
    if not must_refuse:
        kinds.append(MutationKind.FLIP)
    return st.builds(
        Mutation, kind=st.sampled_from(kinds), position=st.integers(0, 1 << 16),
        value=st.integers(1, 8),
    )


@st.composite
def schedules(draw: st.DrawFn, config: RoundConfig, *, max_drops: int | None = None,
              corruptions: int = 0, keep: frozenset[int] = frozenset()) -> Schedule:
    """Dropouts by phase (any phase, any client not in ``keep``) and up to
    ``corruptions`` must-refuse mutated copies of client messages."""
    ids = [u for u in config.clients if u not in keep]
    cap = len(ids) if max_drops is None else min(max_drops, len(ids))
    who = draw(st.lists(st.sampled_from(ids), unique=True, max_size=cap)) if ids else []
    drops = {u: draw(st.sampled_from(list(ROUND_PHASES))) for u in who}
    bad = tuple(
        (draw(st.sampled_from(list(ROUND_PHASES))), draw(st.sampled_from(list(config.clients))),
         draw(mutations(must_refuse=True)))
        for _ in range(draw(st.integers(0, corruptions)))
    )
    return Schedule(drops=drops, corruptions=bad)


def server_attacks(config: RoundConfig) -> st.SearchStrategy[ServerAttack]:
    """The malicious-server actions a client of ``config`` must withstand."""
    allowed = [a for a in ServerAttack
               if config.security is SecurityMode.MALICIOUS
               or a not in ATTACKS_NEEDING_MALICIOUS_MODE]
    return st.sampled_from(allowed)


@st.composite
def rounds(draw: st.DrawFn, policy: ClientPolicy | None = None, *, max_drops: int | None = None,
           corruptions: int = 0, keep: frozenset[int] = frozenset(),
           max_clients: int = _SMALL_N) -> RoundCase:
    """A whole :class:`RoundCase`."""
    cfg, identity = draw(round_configs(policy, max_clients=max_clients))
    return RoundCase(
        config=cfg, identity=identity, inputs=draw(inputs_for(cfg)),
        schedule=draw(schedules(cfg, max_drops=max_drops, corruptions=corruptions, keep=keep)),
        seed=draw(st.binary(min_size=32, max_size=32)),
    )
