"""RoundDriver over the in-process and the multi-process pool: same seed, same
transcript digest and sum on every engine; dropouts, faults and bad input."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from secagg.errors import LocalProtocolError, MissingExtraError, ParameterError
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.runtime import (
    Hooks,
    InProcessPool,
    Listener,
    MaskingServerParty,
    Phase,
    ProcessPool,
    RoundDriver,
    make_pool,
    run_masking_round,
)
from secagg.runtime.pool import EngineError, Reply

from ._rounds import TWO_PHASE_DROPS, masking_setup

CASES = [
    (ProtocolKind.SECAGG_PLUS, SecurityMode.SEMI_HONEST),
    (ProtocolKind.SECAGG_PLUS, SecurityMode.MALICIOUS),
    (ProtocolKind.SECAGG, SecurityMode.MALICIOUS),
]


@pytest.mark.parametrize(("protocol", "security"), CASES)
def test_same_seed_same_digest_and_sum_on_every_local_engine(protocol, security) -> None:
    st = masking_setup(protocol=protocol, security=security,
                       neighbors=10 if protocol is ProtocolKind.SECAGG_PLUS else None)
    drops = dict(TWO_PHASE_DROPS)
    if security is SecurityMode.MALICIOUS:
        drops[11] = Phase.CONSISTENCY
    seen = []
    for engine, workers in (("inprocess", 1), ("inprocess", 3), ("processes", 2)):
        out = run_masking_round(st.factory, engine=engine, workers=workers, dropouts=drops)
        assert not out.aborted, out.abort_reason
        assert (out.engine, out.workers) == (engine, workers)
        assert set(out.survivors) == set(st.config.clients) - {2, 7, 9}
        np.testing.assert_array_equal(out.result, st.expected(out.survivors))
        seen.append((out.transcript_digest, out.result.tobytes(), out.survivors))
    assert len(set(seen)) == 1
    # a different seed is a different transcript
    other = masking_setup(protocol=protocol, security=security, seed=4,
                          neighbors=10 if protocol is ProtocolKind.SECAGG_PLUS else None)
    assert run_masking_round(other.factory, dropouts=drops).transcript_digest != seen[0][0]


class _KillWorker(Listener):
    """Fault injection: SIGKILL one worker process when ``phase`` starts, or after
    the first reply of ``phase`` (mid-exchange)."""

    def __init__(self, pool: ProcessPool, phase: Phase, *, mid: bool) -> None:
        self.pool, self.phase, self.mid, self.done = pool, phase, mid, False

    def _kill(self) -> None:
        if not self.done:
            self.done = True
            os.kill(self.pool.pids[0], signal.SIGKILL)
            self.pool.procs[0].join(timeout=10)

    def on_phase_start(self, phase: Phase | None, clients: int) -> None:
        if phase is self.phase and not self.mid:
            self._kill()

    def on_reply(self, phase: Phase | None, reply: Reply) -> None:
        if phase is self.phase and self.mid:
            self._kill()


@pytest.mark.parametrize(("phase", "mid"), [(Phase.MASKED_INPUT, False),
                                            (Phase.SHARE_KEYS, True)])
def test_killed_worker_process_makes_its_clients_dropouts(phase: Phase, mid: bool) -> None:
    st = masking_setup(n=16, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=9)
    pool = ProcessPool(st.factory, workers=4)
    try:
        kill = _KillWorker(pool, phase, mid=mid)
        out = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                          listener=kill).run()
        victims = {u for u in st.config.clients if pool.owner(u) == 0}
        assert kill.done and pool.dead_workers == {0}
    finally:
        pool.close()
    assert not out.aborted, out.abort_reason
    assert set(out.survivors) == set(st.config.clients) - victims
    np.testing.assert_array_equal(out.result, st.expected(out.survivors))
    if phase is Phase.MASKED_INPUT:  # dead before it: they had shared keys
        assert set(out.sets["U2"]) >= victims


def test_killed_worker_below_threshold_aborts_cleanly() -> None:
    st = masking_setup(n=8, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=7)
    pool = ProcessPool(st.factory, workers=2)
    try:
        out = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                          listener=_KillWorker(pool, Phase.MASKED_INPUT, mid=False)).run()
    finally:
        pool.close()
    assert out.aborted and out.result is None and out.survivors == ()
    assert out.abort_reason


class _Stop(Listener):
    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool

    def on_phase_start(self, phase: Phase | None, clients: int) -> None:
        if phase is Phase.MASKED_INPUT:
            os.kill(self.pool.pids[1], signal.SIGSTOP)  # alive, but silent


def test_phase_deadline_turns_a_silent_worker_into_dropouts() -> None:
    st = masking_setup(n=12, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=7)
    pool = ProcessPool(st.factory, workers=3)
    t0 = time.monotonic()
    try:
        out = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                          listener=_Stop(pool), phase_timeout=2.0).run()
        silent = {u for u in st.config.clients if pool.owner(u) == 1}
    finally:
        os.kill(pool.pids[1], signal.SIGCONT)
        pool.close()
    assert time.monotonic() - t0 < 60
    assert out.phases[Phase.MASKED_INPUT].closed_by_deadline
    assert set(out.survivors) == set(st.config.clients) - silent
    np.testing.assert_array_equal(out.result, st.expected(out.survivors))


def test_hooks_rewrite_and_drop_frames_and_the_driver_never_reads_bodies() -> None:
    st = masking_setup()
    seen: list[tuple[int, Phase]] = []

    def to_server(u: int, phase: Phase, data: bytes) -> bytes | None:
        seen.append((u, phase))
        if u == 4 and phase is Phase.MASKED_INPUT:
            return data[:-1]  # truncated in transit: the server rejects it
        return None if (u == 5 and phase is Phase.SHARE_KEYS) else data

    out = run_masking_round(st.factory, hooks=Hooks(to_server=to_server))
    assert not out.aborted
    assert 4 in out.server_rejections
    assert set(out.survivors) == set(st.config.clients) - {4, 5}
    np.testing.assert_array_equal(out.result, st.expected(out.survivors))
    assert {p for _, p in seen} - {Phase.GRAPH_SEED} == {  # v2: SecAgg+ seed reveals
        Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT, Phase.UNMASKING}


def test_driver_and_pool_misuse_gives_typed_errors() -> None:
    st = masking_setup(n=4, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=3)
    pool = InProcessPool(st.factory)
    drv = RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients)
    drv.run()
    with pytest.raises(LocalProtocolError):
        drv.run()
    with pytest.raises(ParameterError):
        RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                    phase_timeout=0)
    with pytest.raises(ParameterError):
        RoundDriver(MaskingServerParty(st.config), pool, clients=st.config.clients,
                    hooks=Hooks(drop_before={99: Phase.SHARE_KEYS}))
    with pytest.raises(ParameterError):
        make_pool("threads", st.factory)
    with pytest.raises(ParameterError):
        make_pool("processes", st.factory, workers=0)
    with pytest.raises(ParameterError):
        make_pool("inprocess", st.factory, ray_address="127.0.0.1:6379")
    with pytest.raises(ParameterError):
        run_masking_round(st.factory, dropouts={1: Phase.SHARE_KEYS}, hooks=Hooks())


def test_ray_engine_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    st = masking_setup(n=4, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=3)
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"secagg\[ray\]"):
        make_pool("ray", st.factory)


def test_unreachable_ray_address_fails_fast_and_clearly() -> None:
    pytest.importorskip("ray")
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    st = masking_setup(n=4, protocol=ProtocolKind.SECAGG, neighbors=None, threshold=3)
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="cannot reach the Ray cluster"):
        make_pool("ray", st.factory, ray_address=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 30
    with pytest.raises(ParameterError):
        make_pool("ray", st.factory, ray_address="no-port-here")
