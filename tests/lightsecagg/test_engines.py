"""LightSecAgg through the one RoundDriver on every engine, with clients dropping
before each phase: exact sums, the same transcript digest everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from secagg.lightsecagg import LightSecAggConfig
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime.api import run_lightsecagg_round
from secagg.runtime.parties import (
    GeneratedInputs,
    LightSecAggClientFactory,
    RngRecipe,
    generate_input,
)

ROOT = Path(__file__).resolve().parents[2]
#: two clients drop before every phase (12 clients, U = 5)
DROPS = {1: Phase.ADVERTISE_KEYS, 2: Phase.ADVERTISE_KEYS, 3: Phase.SHARE_KEYS,
         4: Phase.SHARE_KEYS, 5: Phase.MASKED_INPUT, 6: Phase.MASKED_INPUT,
         7: Phase.UNMASKING, 8: Phase.UNMASKING}


def _setup(n: int = 12, length: int = 300, bits: int = 16):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src = InsecureDeterministicRandom(11)
    cfg = LightSecAggConfig.create(session_id=src.child("sid").random_bytes(32),
                                   clients=list(range(1, n + 1)), bits=bits, length=length,
                                   privacy=2, target=4)
    recipe = RngRecipe.of(src)
    factory = LightSecAggClientFactory(config=cfg, inputs=GeneratedInputs(recipe, bits, length),
                                       rng=recipe)

    def expected(survivors):
        acc = np.zeros(length, dtype=np.uint64)
        for u in survivors:
            acc += generate_input(src.child(f"input/{u}"), bits, length)
        return acc % (1 << bits)

    return cfg, factory, expected


def test_drops_before_every_phase_inprocess_and_processes_agree():
    _cfg, factory, expected = _setup()
    outs = {e: run_lightsecagg_round(factory, engine=e, workers=2, dropouts=DROPS)
            for e in ("inprocess", "processes")}
    for out in outs.values():
        assert not out.aborted, out.abort_reason
        assert out.survivors == (7, 8, 9, 10, 11, 12)
        assert out.sets["U4"] == (9, 10, 11, 12)
        np.testing.assert_array_equal(out.result, expected(out.survivors))
        assert not out.client_errors and not out.server_rejections
    assert outs["inprocess"].transcript_digest == outs["processes"].transcript_digest


def test_too_many_drops_abort_through_the_driver():
    _cfg, factory, _ = _setup()
    drops = {u: Phase.UNMASKING for u in range(1, 10)}  # 3 responses < U = 4
    out = run_lightsecagg_round(factory, dropouts=drops)
    assert out.aborted and out.result is None and out.survivors == ()
    assert "U = 4" in (out.abort_reason or "")


@pytest.mark.slow
def test_ray_engine_same_digest():
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    _cfg, factory, expected = _setup()
    want = run_lightsecagg_round(factory, dropouts=DROPS)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        out = run_lightsecagg_round(factory, engine="ray", workers=2, ray_address=c.address,
                                    dropouts=DROPS)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
    np.testing.assert_array_equal(out.result, expected(out.survivors))
    assert out.transcript_digest == want.transcript_digest


@pytest.mark.parametrize("phase", ["advertise-keys", "share-keys", "masked-input", "unmasking"])
def test_cli_simulate_lightsecagg(phase):
    cmd = [sys.executable, "-c", "import secagg.cli as c; c.main()", "simulate", "--protocol",
           "lightsecagg", "--clients", "10", "--length", "64", "--dropout", "0.2",
           "--drop-phase", phase, "--seed", "4", "--json", "-"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["protocol"] == "lightsecagg" and d["exact"] is True and not d["aborted"]
    assert d["dropped"] == 2 and d["survivors"] == (10 if phase == "unmasking" else 8)


def test_cli_simulate_without_a_seed_is_exact():
    cmd = [sys.executable, "-c", "import secagg.cli as c; c.main()", "simulate", "--protocol",
           "lightsecagg", "--clients", "6", "--length", "16", "--json", "-"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["exact"] is True and d["seed"] is None


@pytest.mark.parametrize("extra", [["--dp", "ddgauss"], ["--engine", "net"],
                                   ["--security", "malicious"]])
def test_cli_refuses_what_lightsecagg_does_not_do(extra):
    cmd = [sys.executable, "-c", "import sys, secagg.cli as c; sys.exit(c.main())",
           "simulate", "--protocol", "lightsecagg", "--clients", "6", "--length", "8", *extra]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "lightsecagg" in res.stderr or "semi-honest" in res.stderr
