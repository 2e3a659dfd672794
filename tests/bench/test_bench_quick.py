"""The performance benchmarks run, report the agreed keys and pass their exactness
self-checks.  Never a timing assertion: figures depend on the machine and its load.

In-process tests use tiny sizes (default suite); the ``secagg bench ... --quick``
command lines, as CI runs them, are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secagg.bench import mask, scale, server
from secagg.bench import round as round_bench
from secagg.errors import ParameterError
from secagg.masking.config import ProtocolKind
from secagg.phase import ROUND_PHASES, Phase

ROOT = Path(__file__).resolve().parents[2]


def _positive(x: object) -> bool:
    return isinstance(x, float) and x > 0 and np.isfinite(x)


def test_mask_small_reports_ratio_memory_and_self_check():
    r = mask.run(True, length=4096 + 3, neighbors=4, repeat=1)
    assert r["benchmark"] == "mask" and r["masks"] == 5 and r["elements"] == 4099
    assert _positive(r["limit_ratio"]) and _positive(r["limit_ratio_chunked"])
    assert r["exact"] is True
    mem = r["memory"]
    assert mem["chunked_peak_extra_bytes"] > 0 and mem["oneshot_peak_bytes"] > 0
    for side in ("ours", "ours_chunked", "limit"):
        assert _positive(r[side]["best_s"]) and _positive(r[side]["throughput_GBps"])
    assert {"cpu_model", "versions"} <= set(r["machine"])
    assert "limit_ratio" in mask.markdown(r)
    pk = r["packing"]
    assert pk["packed_bytes"] == (4099 * 19 + 7) // 8 and pk["pack_best_s"] > 0
    assert pk["pack_to_limit"] == pk["pack_best_s"] / r["limit"]["best_s"]
    assert "pack at b = 19" in mask.markdown(r)


def test_mask_rejects_bad_arguments():
    with pytest.raises(ParameterError):
        mask.run(True, length=1000, neighbors=1)
    with pytest.raises(ParameterError):
        mask.run(True, length=1000, repeat=0)


def test_prepare_round_reaches_masked_input_and_drops():
    ids = list(range(1, 9))
    _, inputs = mask.shifted_inputs(ids, 100)
    assert all(np.shares_memory(inputs[1], inputs[u]) for u in ids)
    assert not np.array_equal(inputs[1], inputs[2])
    prep = mask.prepare_round(inputs, bits=32, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4,
                              threshold=2, drop_before_share=frozenset({3}))
    assert set(prep.requests) == set(ids) - {3}


def test_server_small_is_exact_and_counts_masks():
    r = server.run(True, n=12, length=2000, repeat=1)
    assert r["exact"] is True and r["benchmark"] == "server"
    assert r["dropped_after_share_keys"] == 1
    assert r["masks_regenerated"] == r["self_masks"] + r["pairwise_masks_of_dropped"]
    assert r["self_masks"] == r["survivors"] == 11
    assert r["pairwise_masks_of_dropped"] >= r["threshold"]
    assert _positive(r["limit_ratio"]) and _positive(r["limit_ratio_1thread"])
    assert "limit_ratio" in server.markdown(r)


def test_raw_range_baseline_equals_whole_vector():
    from secagg.bench.prg import raw_masked_add
    from secagg.primitives import prg

    keys = [(prg.prg_key(bytes([7]) * 16), True), (prg.prg_key(bytes([9]) * 16), False)]
    v1 = np.arange(1000, dtype=np.uint32)
    v2 = v1.copy()
    raw_masked_add(v1, keys, chunk=64, buf=np.empty(64, np.uint32), zeros=bytes(256))
    for a, b in ((0, 400), (400, 1000)):
        raw_masked_add(v2, keys, chunk=96, buf=np.empty(96, np.uint32), zeros=bytes(4 * 96),
                       start=a, stop=b)
    assert np.array_equal(v1, v2)


@pytest.mark.parametrize(
    "phase", [p for p in ROUND_PHASES if p is not Phase.GRAPH_SEED]  # v2: a drop there aborts
)
def test_parallel_round_is_exact_for_every_drop_phase(phase):
    r = scale.run_parallel_round(n=16, length=1001, neighbors=6, threshold=3, dropout=0.125,
                                 drop_phase=phase, seed=5)
    assert r["aborted"] is False, r["abort_reason"]
    assert r["exact"] is True
    assert r["dropped"] == 2 and r["client_errors"] == 0 and r["server_rejections"] == 0
    expect_survivors = 16 if phase in (Phase.CONSISTENCY, Phase.UNMASKING) else 14
    assert r["survivors"] == expect_survivors
    assert r["bytes_to_server"] == sum(r["bytes_upload_by_phase"].values())
    assert r["expansion"] > 1.0  # a survivor sends its masked vector plus keys and shares


def test_parallel_round_transcript_is_a_function_of_the_seed():
    kw = {"n": 12, "length": 257, "neighbors": 4, "threshold": 2, "dropout": 0.1}
    a = scale.run_parallel_round(seed=1, workers=2, **kw)
    b = scale.run_parallel_round(seed=1, workers=1, **kw)
    c = scale.run_parallel_round(seed=2, workers=2, **kw)
    assert a["exact"] and b["exact"] and c["exact"]
    assert a["transcript_digest"] == b["transcript_digest"] != c["transcript_digest"]


def test_parallel_round_abort_is_reported_not_exact():
    # 6 of 8 clients gone before masked input: fewer than t + 1 masked inputs
    r = scale.run_parallel_round(n=8, length=10, neighbors=6, threshold=4, dropout=0.75, seed=3)
    assert r["aborted"] is True and r["exact"] is False and r["abort_reason"]


def test_parallel_round_rejects_bad_sizes():
    with pytest.raises(ParameterError):
        scale.run_parallel_round(n=1, length=10)
    with pytest.raises(ParameterError):
        scale.run_parallel_round(n=10, length=10, workers=0)


def test_round_quick_grid_keys():
    r = round_bench.run(True, peer=False)
    assert r["all_exact"] is True and len(r["cells"]) == len(round_bench.QUICK_GRID)
    for c in r["cells"]:
        assert {"client_cpu_mean_s", "server_cpu_s", "wall_s", "bytes_per_client_upload",
                "bytes_to_server", "expansion", "server_peak_rss_mb"} <= set(c)
        assert set(c["client_cpu_mean_s"]) == set(scale.PHASES)
    assert "expansion" in round_bench.markdown(r)


def test_scale_small_reports_building_blocks():
    r = scale.run(True, n=24, length=500, engines=("processes",))
    assert r["exact"] is True and r["clients"] == 24 and r["dropped"] == 1
    bb = r["building_blocks"]
    assert set(bb["per_op_s"]) == {"x25519", "hkdf", "shamir_split", "shamir_reconstruct",
                                   "mask"}
    assert all(v > 0 for v in bb["round_totals_cpu_s"].values())
    assert "wall" in scale.markdown(r)


def _cli(*args: str) -> tuple[dict, str]:
    res = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "bench", *args, "--quick", "--json", "-"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(res.stdout), res.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mask", "server", "round", "scale", "keys"])
def test_cli_quick_json(name):
    doc, human = _cli(name)
    assert doc["benchmark"] == name and doc["quick"] is True
    assert {"cpu_model", "logical_cores", "versions"} <= set(doc["machine"])
    if name == "mask":
        assert doc["elements"] == 10**6 and doc["masks"] == 33 and doc["exact"] is True
        assert isinstance(doc["limit_ratio"], float) and "limit_ratio" in human
    elif name == "server":
        assert doc["exact"] is True and isinstance(doc["limit_ratio"], float)
    elif name == "round":
        assert doc["all_exact"] is True
    elif name == "keys":
        assert doc["exact"] is True and isinstance(doc["limit_ratio"], float)
        assert doc["neighbors"] == 63 and "limit_ratio" in human
    else:
        assert doc["exact"] is True and doc["aborted"] is False


@pytest.mark.slow
def test_cli_all_quick_runs_every_built_benchmark():
    doc, _ = _cli("all")
    assert {"mask", "server", "round", "scale", "keys"} <= set(doc["benchmarks"])
    assert doc["quick"] is True and "machine" in doc


@pytest.mark.slow
def test_round_peer_shaped_rows_report_abort_rates():
    r = round_bench.run(True, peer=True)
    assert len(r["peer_shaped"]) == 4
    for p in r["peer_shaped"]:
        assert 0.0 <= p["abort_rate"] <= 1.0 and p["patterns_tried"] == 20
        assert p["exact"] is (not p["aborted"])
    assert r["peer"]["system"].startswith("Flower")
    assert "aborts" in round_bench.markdown(r)


def test_keys_small_reports_parts_ratios_and_self_checks():
    from secagg.bench import keys

    r = keys.run(True, neighbors=8, repeat=1)
    assert r["benchmark"] == "keys" and r["neighbors"] == 8 and r["exact"] is True
    parts = r["client_per_neighbor"]["parts"]
    assert set(parts) == {"agree", "derive", "aead", "shamir", "mask_setup"}
    for p in [*parts.values(), r["client_per_neighbor"]["total"], *r["server"].values()]:
        assert _positive(p["ours_us"]) and _positive(p["limit_us"]) and _positive(p["limit_ratio"])
    assert r["limit_ratio"] == r["client_per_neighbor"]["total"]["limit_ratio"]
    assert set(r["server"]) == {"decode_share", "reconstruct_secret"}
    assert r["shamir_limit_candidate"] in r["shamir_candidates_us_per_holder"]
    assert "limit_ratio" in keys.markdown(r)
    with pytest.raises(ParameterError):
        keys.run(True, neighbors=2)
    with pytest.raises(ParameterError):
        keys.run(True, neighbors=8, repeat=0)
