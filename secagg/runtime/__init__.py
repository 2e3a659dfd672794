"""The one runtime of every engine: a :class:`RoundDriver` over client pools.

* :mod:`secagg.runtime.driver` — :class:`RoundDriver` (the server loop, deadlines,
  fault-injection hooks, transcript digest, metrics) and the server adapters;
* :mod:`secagg.runtime.pool` — the :class:`ClientPool` interface, the in-process
  and the multi-process pools; :mod:`secagg.runtime.ray_pool` — the Ray pool
  (extra ``ray``);
* :mod:`secagg.runtime.parties` — picklable client recipes the workers build
  their clients from;
* :mod:`secagg.runtime.api` — :func:`secure_sum`, :func:`secure_sum_floats`,
  :func:`he_sum`, :func:`dp_secure_mean` on any engine;
* :class:`Phase` — the project's one phase enum (:mod:`secagg.phase`), re-exported;
* :mod:`secagg.runtime.schemes` — the client and server halves of every
  aggregation scheme (float update → protocol input → float aggregate).

Nothing here is imported by the protocol cores; ``secagg.sim`` (simulations,
attacks, reports, CLI) sits on top of this package.
"""

from secagg.phase import Phase
from secagg.runtime.api import (
    ENGINES,
    DPAggregate,
    FloatSumResult,
    SumResult,
    build_config,
    dp_secure_mean,
    he_sum,
    make_pool,
    run_masking_round,
    secure_sum,
    secure_sum_floats,
)
from secagg.runtime.driver import (
    HEServerParty,
    Hooks,
    Listener,
    MaskingServerParty,
    PhaseStats,
    RoundDriver,
    RoundOutcome,
)
from secagg.runtime.pool import ClientPool, InProcessPool, ProcessPool, Reply

__all__ = [
    "ENGINES",
    "ClientPool",
    "DPAggregate",
    "FloatSumResult",
    "HEServerParty",
    "Hooks",
    "InProcessPool",
    "Listener",
    "MaskingServerParty",
    "Phase",
    "PhaseStats",
    "ProcessPool",
    "Reply",
    "RoundDriver",
    "RoundOutcome",
    "SumResult",
    "build_config",
    "dp_secure_mean",
    "he_sum",
    "make_pool",
    "run_masking_round",
    "secure_sum",
    "secure_sum_floats",
]
