"""The Ray pool on a two-node ``ray.cluster_utils.Cluster`` started on this machine.

One cluster for the module (a start costs seconds), joined by its explicit
address (a stale ``ray_current_cluster`` file does not matter) and shut down at
the end.  Clients land on both nodes; the round is exact and its transcript
digest equals the in-process one; an actor killed mid-round turns its clients
into dropouts of that phase.

In the default suite (small sizes; the module costs ≈ 30 s, most of it the
cluster start): the developers' guide asks for a real Ray cluster under test, not
only the error paths.
"""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from secagg.masking.config import ProtocolKind, SecurityMode  # noqa: E402
from secagg.runtime import (  # noqa: E402
    Hooks,
    Listener,
    MaskingServerParty,
    Phase,
    RoundDriver,
    run_masking_round,
)
from secagg.runtime.ray_pool import RayPool  # noqa: E402

from ._rounds import TWO_PHASE_DROPS, masking_setup  # noqa: E402


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        ray.init(address=c.address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.mark.parametrize("security", [SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS])
def test_two_node_round_is_exact_with_clients_on_both_nodes(cluster, security) -> None:
    st = masking_setup(security=security)
    drops = dict(TWO_PHASE_DROPS)
    want = run_masking_round(st.factory, dropouts=drops)
    pool = RayPool(st.factory, workers=2, address=cluster.address)
    try:
        out = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                          hooks=Hooks(drop_before=drops)).run()
        nodes = {pool.node_of(u) for u in st.config.clients}
    finally:
        pool.close()
    assert len({n for n, _ in pool.placement}) == 2 and len(nodes) == 2
    assert ray.is_initialized()  # the pool joined the cluster; it does not own it
    assert not out.aborted and out.engine == "ray" and out.workers == 2
    np.testing.assert_array_equal(out.result, st.expected(out.survivors))
    assert out.transcript_digest == want.transcript_digest
    assert out.survivors == want.survivors


class _KillActor(Listener):
    def __init__(self, pool: RayPool) -> None:
        self.pool, self.done = pool, False

    def on_phase_start(self, phase: Phase | None, clients: int) -> None:
        if phase is Phase.MASKED_INPUT and not self.done:  # mid-round, keys shared
            self.done = True
            ray.kill(self.pool.actors[0], no_restart=True)


def test_killed_actor_makes_its_clients_dropouts(cluster) -> None:
    st = masking_setup(n=16, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=9)
    pool = RayPool(st.factory, workers=4, address=cluster.address)
    try:
        kill = _KillActor(pool)
        out = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                          listener=kill).run()
        victims = {u for u in st.config.clients if pool.owner(u) == 0}
    finally:
        pool.close()
    assert kill.done and pool.dead_workers == {0}
    assert not out.aborted, out.abort_reason
    assert set(out.survivors) == set(st.config.clients) - victims
    assert set(out.sets["U2"]) >= victims  # they had shared their keys
    np.testing.assert_array_equal(out.result, st.expected(out.survivors))


def test_he_bfv_round_on_ray_actors(cluster) -> None:
    pytest.importorskip("tenseal")
    from secagg.he import Preset, Scheme, generate_keys
    from secagg.primitives.rand import InsecureDeterministicRandom
    from secagg.runtime import he_sum

    keys = generate_keys(Preset.BFV_4096.params, n_threads=1)
    gen = np.random.default_rng(2)  # test data
    xs = {u: gen.integers(0, 1 << 16, size=100).astype(np.int64) for u in range(1, 6)}
    res = he_sum(xs, scheme=Scheme.BFV, preset=Preset.BFV_4096, keys=keys, dropouts={2},
                 engine="ray", workers=2, ray_address=cluster.address, n_threads=1,
                 rng=InsecureDeterministicRandom(3, warn=False))
    assert not res.aborted and res.engine == "ray" and res.contributors == (1, 3, 4, 5)
    np.testing.assert_array_equal(res.total, sum(xs[u] for u in res.contributors))
