"""Shared round builders for the runtime tests (seeded: same seed, same bytes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime import Phase, build_config
from secagg.runtime.parties import ArrayInputs, MaskingClientFactory, RngRecipe


@dataclass
class Setup:
    config: RoundConfig
    factory: MaskingClientFactory
    inputs: dict[int, np.ndarray]

    def expected(self, survivors: tuple[int, ...]) -> np.ndarray:
        acc = np.zeros(self.config.length, dtype=np.uint64)
        for u in survivors:
            acc += self.inputs[u]
        return (acc % (1 << self.config.bits)).astype(np.uint32)


def masking_setup(*, n: int = 16, length: int = 40, seed: int = 3,
                  protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
                  security: SecurityMode = SecurityMode.SEMI_HONEST,
                  neighbors: int | None = 10, threshold: int | None = None) -> Setup:
    rng = InsecureDeterministicRandom(seed, warn=False)
    ids = list(range(1, n + 1))
    gen = np.random.default_rng(seed)  # test data, not secret
    inputs = {u: gen.integers(0, 1 << 32, size=length, dtype=np.uint64).astype(np.uint32)
              for u in ids}
    cfg, idkeys = build_config(ids, bits=32, length=length, protocol=protocol,
                               security=security, neighbors=neighbors, threshold=threshold,
                               rng=rng)
    factory = MaskingClientFactory(config=cfg, inputs=ArrayInputs(inputs),
                                   rng=RngRecipe.of(rng),
                                   identity={u: k.private_bytes() for u, k in idkeys.items()})
    return Setup(cfg, factory, inputs)


#: dropouts in two phases (SecAgg+ must rebuild pairwise masks and skip a share holder)
TWO_PHASE_DROPS = {2: Phase.SHARE_KEYS, 7: Phase.MASKED_INPUT, 9: Phase.MASKED_INPUT}
