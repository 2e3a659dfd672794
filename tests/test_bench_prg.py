"""``secagg bench prg --quick --json -`` runs and reports the agreed keys (never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secagg.bench import cli as bench_cli
from secagg.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]


def test_bench_prg_quick_json_to_stdout():
    res = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "bench", "prg", "--quick", "--json", "-"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    doc = json.loads(res.stdout)  # stdout holds only the JSON; tables went to stderr
    assert "limit_ratio" in res.stderr
    for key in ("benchmark", "elements", "masks", "ours", "raw", "limit_ratio", "machine",
                "baseline", "target_limit_ratio"):
        assert key in doc, key
    assert doc["benchmark"] == "prg" and doc["quick"] is True and doc["elements"] == 10**6
    for side in ("ours", "raw"):
        assert {"best_s", "throughput_GBps", "elements_per_s", "chunk_elements"} <= set(doc[side])
    assert isinstance(doc["limit_ratio"], float)
    machine = doc["machine"]
    assert {"cpu_model", "logical_cores", "python", "versions"} <= set(machine)
    assert {"numpy", "cryptography", "torch", "tenseal"} <= set(machine["versions"])


def test_unknown_benchmark_is_a_typed_error():
    with pytest.raises(ParameterError):
        bench_cli.load("no-such-bench")


def test_raw_baseline_equals_apply_masks():
    import numpy as np

    from secagg.bench.prg import raw_masked_add
    from secagg.primitives import prg

    seeds = [(b"a" * 16, 1), (b"b" * 16, -1)]
    v1 = np.arange(1000, dtype=np.uint32)
    v2 = v1.copy()
    prg.apply_masks(v1, seeds, 32)
    raw_masked_add(v2, [(prg.prg_key(s), sg == 1) for s, sg in seeds], chunk=96,
                   buf=np.empty(96, np.uint32), zeros=bytes(4 * 96))
    assert np.array_equal(v1, v2)
