"""secagg.integrations.flower: the drop-in mod + workflow, through Flower's own API.

Rounds run through :class:`InProcessGrid` (Flower's serde on every message, one
Context per node); one test runs the example app under Flower's simulation engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict  # noqa: E402
from flwr.client import NumPyClient  # noqa: E402
from flwr.client.mod import secaggplus_mod as flwr_mod  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.compat.common.recorddict_compat import arrayrecord_to_parameters  # noqa: E402
from flwr.server import ServerConfig  # noqa: E402
from flwr.server.compat.legacy_context import LegacyContext  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.server.workflow import DefaultWorkflow  # noqa: E402
from flwr.server.workflow import SecAggPlusWorkflow as FlwrWorkflow  # noqa: E402

from secagg.errors import (  # noqa: E402
    DecodeError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.integrations.flower import (  # noqa: E402
    InProcessGrid,
    ProtocolMismatchError,
    SecAggPlusMod,
    SecAggPlusWorkflow,
    secaggplus_mod,
)
from secagg.integrations.flower._wire import (  # noqa: E402
    PROTOCOL,
    RECORD,
    STATE_RECORD,
    decode_setup,
)

ROOT = Path(__file__).resolve().parents[1]
M = 37


def _update(nid: int) -> np.ndarray:
    return (np.arange(M) % 5 - 2 + 0.25 * (nid % 7)).astype(np.float32)


def _weight(nid: int) -> int:
    return 10 + nid % 11


class _Client(NumPyClient):
    def __init__(self, nid: int) -> None:
        self.nid = nid

    def fit(self, parameters, config):
        return [_update(self.nid), np.full((2, 2), self.nid % 3, np.float32)], _weight(self.nid), {}


def _client_fn(context):
    return _Client(int(context.node_id)).to_client()


def _app(mod=secaggplus_mod):
    return ClientApp(client_fn=_client_fn, mods=[mod])


NODES = [10**12 + 17 * i for i in range(8)]


def _context(n, rounds=1):
    init = [np.zeros(M, np.float32), np.zeros((2, 2), np.float32)]
    strategy = FedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n, min_available_clients=n,
        initial_parameters=ndarrays_to_parameters(init),
    )
    return LegacyContext(
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=rounds), strategy=strategy,
    )


def _params(ctx):
    return parameters_to_ndarrays(
        arrayrecord_to_parameters(ctx.state.array_records["parameters"], keep_input=True)
    )


def _mean(nodes):
    w = np.array([_weight(v) for v in nodes], dtype=np.float64)
    ups = np.stack([_update(v).astype(np.float64) for v in nodes])
    return (w[:, None] * ups).sum(0) / w.sum()


def _tol(nodes, max_weight=1000.0):
    """Quantization error bound of the weighted mean (22 value bits, clip 8)."""
    step = 2 * 8.0 / ((1 << 22) - 1)
    sw = sum(_weight(v) for v in nodes) / max_weight
    return len(nodes) * step * (1 + 3 / sw) / sw


def _run(grid, workflow, n=len(NODES), rounds=1):
    ctx = _context(n, rounds)
    DefaultWorkflow(fit_workflow=workflow)(grid, ctx)
    return ctx


# -- a round ------------------------------------------------------------------------------


def test_round_releases_the_weighted_mean_and_an_exact_sum():
    grid = InProcessGrid(_app(), NODES)
    wf = SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)
    ctx = _run(grid, wf)
    rep = wf.last_round
    assert not rep.aborted and rep.survivors == tuple(NODES)
    assert (rep.neighbors, rep.threshold) == (4, 3)
    out = _params(ctx)
    step = 2 * 8.0 / ((1 << 22) - 1)
    assert np.max(np.abs(out[0] - _mean(NODES))) < _tol(NODES)
    # the server's sum is exactly the sum of what the clients fed the masking client:
    # the weight coordinate is the quantized sum of num_examples / max_weight
    total_w = (rep.total[-1] / (((1 << 22) - 1) / 2.0)) - len(NODES)
    assert abs(total_w - sum(_weight(v) for v in NODES) / 1000.0) < len(NODES) * step
    assert rep.total.dtype == np.uint32 and rep.bits == 25
    assert not grid.contexts[NODES[0]].state.config_records[STATE_RECORD].get("seed")


def test_dropouts_after_masking_stay_in_the_sum_and_before_masking_do_not():
    late, early = NODES[1], NODES[4]
    grid = InProcessGrid(
        _app(), NODES, drop=lambda nid, i: (nid == late and i >= 4) or (nid == early and i >= 3)
    )
    wf = SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=3, timeout=5.0)
    ctx = _run(grid, wf)
    rep = wf.last_round
    assert not rep.aborted
    kept = [v for v in NODES if v != early]
    assert rep.survivors == tuple(kept)
    assert np.max(np.abs(_params(ctx)[0] - _mean(kept))) < _tol(kept)


def test_too_many_dropouts_abort_and_release_nothing():
    grid = InProcessGrid(_app(), NODES, drop=lambda nid, i: nid in NODES[:5] and i >= 3)
    wf = SecAggPlusWorkflow(num_shares=3, reconstruction_threshold=2)
    ctx = _run(grid, wf)
    assert wf.last_round.aborted and wf.last_round.total is None
    assert not np.any(_params(ctx)[0])


def test_two_rounds_and_state_lives_in_the_context_as_bytes():
    grid = InProcessGrid(_app(), NODES, drop=lambda nid, i: nid == NODES[2] and i == 8)
    wf = SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)
    ctx = _run(grid, wf, rounds=2)
    assert not wf.last_round.aborted
    kept = [v for v in NODES if v != NODES[2]]  # silent from round 2's masked-input stage on
    assert wf.last_round.survivors == tuple(kept)
    assert np.max(np.abs(_params(ctx)[0] - _mean(kept))) < _tol(kept)
    rec = grid.contexts[NODES[2]].state.config_records[STATE_RECORD]
    assert rec["status"] == "active" and isinstance(rec["seed"], bytes)
    for v in rec.values():
        assert isinstance(v, bytes | int | str) or all(isinstance(b, bytes) for b in v)


def test_default_parameters_come_from_the_finder():
    grid = InProcessGrid(_app(), NODES)
    wf = SecAggPlusWorkflow(None, None)
    _run(grid, wf)
    from secagg.masking import ProtocolKind, RoundConfig

    want = RoundConfig.create(
        session_id=bytes(32), clients=list(range(1, 9)), bits=25, length=2,
        protocol=ProtocolKind.SECAGG_PLUS, graph_seed=bytes(32),
    )
    rep = wf.last_round
    assert not rep.aborted and (rep.neighbors, rep.threshold) == (want.degree, want.threshold)


def test_malicious_mode_with_identity_keys():
    from secagg.primitives.sign import SigningKey

    keys = {v: SigningKey.generate() for v in NODES}
    mod = SecAggPlusMod(identity_key=lambda ctxt: keys[int(ctxt.node_id)])
    grid = InProcessGrid(_app(mod), NODES, drop=lambda nid, i: nid == NODES[0] and i >= 4)
    wf = SecAggPlusWorkflow(
        num_shares=7, reconstruction_threshold=4, security="malicious",
        identity_keys={v: k.public for v, k in keys.items()},
    )
    ctx = _run(grid, wf)
    assert not wf.last_round.aborted
    assert np.max(np.abs(_params(ctx)[0] - _mean(NODES))) < _tol(NODES)
    # a node without its identity key cannot take part
    grid = InProcessGrid(_app(), NODES)
    wf2 = SecAggPlusWorkflow(
        num_shares=7, reconstruction_threshold=4, security="malicious",
        identity_keys={v: k.public for v, k in keys.items()},
    )
    _run(grid, wf2)
    assert wf2.last_round.aborted


# -- mixing with Flower's own implementation ----------------------------------------------


def test_flower_mod_with_our_workflow_fails_at_the_first_message():
    grid = InProcessGrid(_app(flwr_mod), NODES)
    with pytest.raises(ProtocolMismatchError, match="Flower's secaggplus_mod"):
        _run(grid, SecAggPlusWorkflow(5, 3))
    assert all(c <= 1 for c in grid.delivered.values())


def test_one_node_with_flowers_mod_is_a_dropout_not_an_abort():
    odd = NODES[6]

    def either(msg, ctxt, call_next):
        mod = flwr_mod if int(ctxt.node_id) == odd else secaggplus_mod
        return mod(msg, ctxt, call_next)

    grid = InProcessGrid(_app(either), NODES)
    wf = SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=3)
    ctx = _run(grid, wf)
    rep = wf.last_round
    kept = [v for v in NODES if v != odd]
    assert not rep.aborted and rep.survivors == tuple(kept)
    assert len(rep.mismatches) == 1 and "Flower's secaggplus_mod" in rep.mismatches[0]
    assert np.max(np.abs(_params(ctx)[0] - _mean(kept))) < _tol(kept)


def test_our_mod_with_flower_workflow_fails_at_the_first_message():
    grid = InProcessGrid(_app(), NODES)
    ctx = _run(grid, FlwrWorkflow(num_shares=5, reconstruction_threshold=3))
    assert not np.any(_params(ctx)[0])  # Flower's workflow halted: nothing released
    assert all(c == 1 for c in grid.delivered.values())
    # the node's error names both sides
    msg = Message(
        content=RecordDict({"secaggplus_configs": ConfigRecord({"stage": "setup"})}),
        dst_node_id=NODES[0], message_type=MessageType.TRAIN, group_id="1",
    )
    with pytest.raises(ProtocolMismatchError, match=r"SecAggPlusWorkflow.*secaggplus_mod"):
        secaggplus_mod(msg, grid.contexts[NODES[0]], _never)


# -- bad input: typed errors or dropouts, never a wrong aggregate --------------------------


def _never(msg, ctxt):
    raise AssertionError("the ClientApp must not run")


def _train_msg(record):
    content = RecordDict({RECORD: ConfigRecord(record)} if record is not None else {})
    InProcessGrid(_app(), [1])  # sets Flower's task identity outside a ServerApp
    return Message(content=content, dst_node_id=NODES[0], message_type=MessageType.TRAIN,
                   group_id="1")


def _ctx():
    return Context(run_id=1, node_id=NODES[0], node_config={}, state=RecordDict(), run_config={})


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (None, RemoteProtocolError),  # no secagg record: never train and answer in the clear
        ({"protocol": "secagg-secaggplus/wire-v0/flower-v0", "stage": "setup", "payload": b""},
         ProtocolMismatchError),
        ({"protocol": PROTOCOL, "stage": "setup"}, DecodeError),  # missing payload
        ({"protocol": PROTOCOL, "stage": "nonsense", "payload": b"x"}, DecodeError),
        ({"protocol": PROTOCOL, "stage": "setup", "payload": b"{not json"}, DecodeError),
        ({"protocol": PROTOCOL, "stage": "setup", "payload": b'{"v":1}'}, RemoteProtocolError),
        ({"protocol": PROTOCOL, "stage": "share-keys", "payload": b"\x00\x01"},
         RemoteProtocolError),  # no round in progress
    ],
)
def test_client_refuses_bad_records(record, error):
    ctxt = _ctx()
    with pytest.raises(error):
        secaggplus_mod(_train_msg(record), ctxt, _never)
    assert STATE_RECORD not in ctxt.state.config_records


class _Tamper(InProcessGrid):
    """Adds replies a hostile network could add."""

    def __init__(self, *a, tamper, **kw):
        super().__init__(*a, **kw)
        self._tamper = tamper
        self.calls = 0

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(super().send_and_receive(messages, timeout=timeout))
        self.calls += 1
        return self._tamper(self.calls, replies)


def _corrupt(reply, payload):
    reply.content.config_records[RECORD]["payload"] = payload
    return reply


@pytest.mark.parametrize(
    "kind", ["duplicate", "stranger", "garbage", "wrong-stage", "no-record", "no-fitres"]
)
def test_server_turns_hostile_replies_into_dropouts(kind):
    victim = NODES[3]

    def tamper(call, replies):
        if call != 4:  # the masked-input stage (setup, seed, share-keys before it)
            return replies
        if kind == "duplicate":
            first = next(r for r in replies if r.metadata.src_node_id == victim)
            twin = _flwr_copy(first)
            _corrupt(twin, bytes(len(twin.content.config_records[RECORD]["payload"])))
            return [*replies, twin]
        if kind == "stranger":
            stranger = _flwr_copy(replies[0])
            stranger.metadata.__dict__["_src_node_id"] = 4242
            return [*replies, stranger]
        out = []
        for r in replies:
            if r.metadata.src_node_id == victim:
                if kind == "garbage":
                    payload = bytearray(r.content.config_records[RECORD]["payload"])
                    _corrupt(r, bytes(payload[: len(payload) // 2]))
                elif kind == "wrong-stage":
                    r.content.config_records[RECORD]["stage"] = "unmask"
                elif kind == "no-fitres":
                    for key in list(r.content.metric_records):
                        del r.content.metric_records[key]
                else:
                    del r.content.config_records[RECORD]
            out.append(r)
        return out

    grid = _Tamper(_app(), NODES, tamper=tamper)
    wf = SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3)
    ctx = _run(grid, wf)
    rep = wf.last_round
    assert not rep.aborted and rep.faults, rep.faults
    kept = list(NODES) if kind in ("duplicate", "stranger") else [v for v in NODES if v != victim]
    assert rep.survivors == tuple(kept)
    assert np.max(np.abs(_params(ctx)[0] - _mean(kept))) < _tol(kept)


def _flwr_copy(msg):
    from flwr.common.serde import message_from_proto, message_to_proto

    return message_from_proto(message_to_proto(msg))


def test_client_refuses_a_second_keys_broadcast_and_stays_aborted():
    """A server that asks twice for shares must not get a second set."""
    quiet = NODES[1]  # answers setup, seed and share-keys, then goes silent
    grid = InProcessGrid(_app(), NODES, drop=lambda nid, i: nid == quiet and i >= 3)
    seen = {}
    orig = grid.send_and_receive

    def spy(messages, *, timeout=None):
        messages = list(messages)
        for mm in messages:
            rec = mm.content.config_records.get(RECORD)
            if rec and rec["stage"] == "share-keys":
                seen[mm.metadata.dst_node_id] = _flwr_copy(mm)
        return orig(messages, timeout=timeout)

    grid.send_and_receive = spy
    wf = SecAggPlusWorkflow(num_shares=7, reconstruction_threshold=3)
    _run(grid, wf)
    assert not wf.last_round.aborted and quiet not in wf.last_round.survivors
    ctxt = grid.contexts[quiet]
    assert ctxt.state.config_records[STATE_RECORD]["status"] == "active"
    with pytest.raises(RemoteProtocolError, match="does not fit phase"):
        secaggplus_mod(seen[quiet], ctxt, _never)
    assert ctxt.state.config_records[STATE_RECORD]["status"] == "aborted"
    with pytest.raises(RemoteProtocolError, match="aborted"):
        secaggplus_mod(seen[quiet], ctxt, _never)
    done = NODES[0]  # a node whose round completed refuses it too
    with pytest.raises(RemoteProtocolError, match="completed"):
        secaggplus_mod(seen[done], grid.contexts[done], _never)


def test_weight_above_max_weight_is_a_dropout_not_a_wrapped_sum():
    grid = InProcessGrid(_app(), NODES)
    wf = SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3, max_weight=19.0)
    ctx = _run(grid, wf)
    kept = [v for v in NODES if _weight(v) <= 19]
    rep = wf.last_round
    assert len(kept) == len(NODES) - 1
    assert rep.survivors == tuple(kept) and any("max_weight" in f for f in rep.faults)
    assert np.max(np.abs(_params(ctx)[0] - _mean(kept))) < _tol(kept, 19.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_shares": 2, "reconstruction_threshold": 1},
        {"num_shares": 5, "reconstruction_threshold": 5},
        {"num_shares": 5, "reconstruction_threshold": None},
        {"num_shares": 5, "reconstruction_threshold": 3, "quantization_range": 1000},
        {"num_shares": 5, "reconstruction_threshold": 3, "security": "paranoid"},
        {"num_shares": 5, "reconstruction_threshold": 3, "security": "malicious"},
        {"num_shares": 5, "reconstruction_threshold": 3, "clipping_range": float("nan")},
        {"num_shares": 1.5, "reconstruction_threshold": 3},
    ],
)
def test_workflow_refuses_bad_arguments(kwargs):
    with pytest.raises(ParameterError):
        SecAggPlusWorkflow(**kwargs)


def test_a_modulus_too_small_for_n_is_refused():
    grid = InProcessGrid(_app(), NODES)
    wf = SecAggPlusWorkflow(5, 3, modulus_range=1 << 23)  # 8 x 22-bit values need 2^25
    with pytest.raises(ParameterError, match="cannot hold"):
        _run(grid, wf)


def test_setup_bytes_round_trip_and_refuse_tampering():
    grid = InProcessGrid(_app(), NODES)
    captured = []
    orig = grid.send_and_receive

    def spy(messages, *, timeout=None):
        messages = list(messages)
        if not captured:
            captured.append(bytes(messages[0].content.config_records[RECORD]["payload"]))
        return orig(messages, timeout=timeout)

    grid.send_and_receive = spy
    _run(grid, SecAggPlusWorkflow(5, 3))
    setup = decode_setup(captured[0])
    assert setup.nodes == tuple(NODES) and setup.config.length == M + 4 + 1
    from secagg.masking import RoundConfig

    assert RoundConfig.from_bytes(bytes.fromhex(json.loads(captured[0])["config"])) == setup.config
    for bad in (json.loads(captured[0])["config"][:-2], "zz", 7):  # truncated, not hex, not str
        doc = json.loads(captured[0])
        doc["config"] = bad
        with pytest.raises(DecodeError):
            decode_setup(json.dumps(doc).encode())
    doc = json.loads(captured[0])
    doc["encoding"]["bits"] = 8  # would wrap
    with pytest.raises(DecodeError):
        decode_setup(json.dumps(doc).encode())


# -- packaging -----------------------------------------------------------------------------


def _python(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120,
    )


def test_missing_flwr_names_the_extra():
    out = _python(
        "import sys; sys.modules['flwr'] = None\n"
        "try:\n    import secagg.integrations.flower\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    assert "MissingExtraError" in out.stdout and "secagg[flower]" in out.stdout, out.stderr


def test_the_core_never_imports_the_integration():
    out = _python(
        "import sys, secagg.masking, secagg.encoding, secagg.primitives, secagg.dp, secagg.he\n"
        "print([m for m in sys.modules if m.startswith(('flwr', 'secagg.integrations'))])"
    )
    assert out.stdout.strip() == "[]", out.stderr


# -- the example app -----------------------------------------------------------------------


def test_example_app_loss_falls_over_three_rounds_in_process(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from flower_app import client_app, server_app

    server_app.LOSSES.clear()
    n = 6
    nodes = [500 + i for i in range(n)]
    grid = InProcessGrid(
        client_app.app, nodes,
        node_config=lambda nid: {"partition-id": nid - 500, "num-partitions": n},
    )
    server_app.make_workflow()(grid, server_app.make_context(_ctx(), n))
    losses = list(server_app.LOSSES)
    assert len(losses) == 4  # initial + 3 rounds
    assert losses[0] > losses[1] > losses[2] > losses[3]


@pytest.mark.slow
def test_example_app_under_flowers_simulation_engine():
    out = subprocess.run(
        [sys.executable, "-m", "flower_app.run", "--nodes", "4"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'examples'}", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    losses = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(losses) == 4, out.stderr[-3000:]
    assert losses[0] > losses[1] > losses[2] > losses[3], (losses, out.stdout, out.stderr[-5000:])


def test_bench_quick():
    from secagg.bench import flower as bench

    res = bench.run(quick=True)
    assert res["exact"] is True
    for key in ("flower_cpu_s", "ours_cpu_s", "ratio", "flower_abort_rate", "ours_abort_rate"):
        assert key in res
    assert res["ratio"] > 1 and res["ours_default_abort_rate"] == 0


# -- distributed DP ------------------------------------------------------------------------


def _dp_workflow(**kw):
    from secagg.integrations.flower import DistributedDP

    dp = DistributedDP(epsilon=30.0, l2_clip=20.0, bits=24, rounds=1, min_survivors=0.75)
    return SecAggPlusWorkflow(num_shares=5, reconstruction_threshold=3, dp=dp, **kw)


def test_distributed_dp_round_releases_a_noisy_unweighted_mean_delta():
    grid = InProcessGrid(_app(), NODES, drop=lambda nid, i: nid == NODES[5] and i >= 4)
    wf = _dp_workflow()
    ctx = _run(grid, wf)
    assert not wf.last_round.aborted
    (params,) = wf._dp_plans.values()
    n = len(NODES)
    sigma_mean = params.local_stddev * np.sqrt(n) / params.scale / n
    ups = np.stack([_update(v) for v in NODES]).astype(np.float64)
    err = np.abs(_params(ctx)[0] - ups.mean(0))
    assert err.max() < 6 * sigma_mean + 2 / params.scale
    # a second round would exceed the budget: refused before anything is sent
    with pytest.raises(ParameterError, match="budget"):
        _run(grid, wf)


def test_client_dp_policy_refuses_weak_or_missing_noise():
    strict = SecAggPlusMod(dp_max_epsilon=1.0)
    grid = InProcessGrid(_app(strict), NODES)
    wf = _dp_workflow()
    _run(grid, wf)
    assert wf.last_round.aborted
    assert any("allows at most" in f for f in wf.last_round.faults)
    grid = InProcessGrid(_app(strict), NODES)
    wf = SecAggPlusWorkflow(5, 3)
    _run(grid, wf)
    assert wf.last_round.aborted
    assert any("requires distributed DP" in f for f in wf.last_round.faults)


def test_num_examples_never_leaves_the_node_in_the_clear():
    grid = InProcessGrid(_app(), NODES)
    seen = []
    orig = grid.send_and_receive

    def spy(messages, *, timeout=None):
        replies = list(orig(messages, timeout=timeout))
        for r in replies:
            rec = r.content.metric_records.get("fitres.num_examples")
            if rec is not None:
                seen.append(rec["num_examples"])
            for arr in r.content.array_records.values():
                assert len(arr) == 0
        return replies

    grid.send_and_receive = spy
    _run(grid, SecAggPlusWorkflow(5, 3))
    assert seen == [1] * len(NODES)


def test_a_client_adding_values_outside_the_range_makes_the_round_release_nothing(monkeypatch):
    """The server half refuses a total no sum of valid encodings can give (visible
    when the modulus has room above n * (2^value_bits - 1), here 2^32 for 8 x 22 bits)."""
    import secagg.integrations.flower.mod as modm

    honest = modm.encode_update
    calls = []

    def encode(enc, arrays, num_examples, rng):
        x = honest(enc, arrays, num_examples, rng)
        calls.append(1)
        if len(calls) == 1:  # the first node to train lies
            x += np.uint32(1 << 31)
        return x

    monkeypatch.setattr(modm, "encode_update", encode)
    grid = InProcessGrid(_app(), NODES)
    wf = SecAggPlusWorkflow(5, 3, modulus_range=1 << 32)
    ctx = _run(grid, wf)
    assert wf.last_round.aborted and "not a sum of valid encodings" in wf.last_round.abort_reason
    assert not np.any(_params(ctx)[0])
