"""``secagg bench``: what a core install cannot run is skipped, not fatal; --quick
makes no timing verdicts (issue 18, item 4)."""

from __future__ import annotations

import json
import types

import pytest

from secagg.bench import cli as bench_cli
from secagg.cli import main
from secagg.errors import MissingExtraError


def _fake(name: str, *, missing: bool = False) -> types.ModuleType:
    mod = types.ModuleType(f"secagg.bench.{name}")

    def run(quick: bool) -> dict:
        if missing:
            raise MissingExtraError("'tenseal' is not installed; install the extra: "
                                    "pip install 'secagg[he]'")
        return {"benchmark": name, "quick": quick, "exact": True}

    mod.run = run  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def fake_benchmarks(monkeypatch):
    mods = {"prg": _fake("prg"), "he": _fake("he", missing=True), "dp": _fake("dp")}
    monkeypatch.setattr(bench_cli, "BENCHMARKS", tuple(mods))
    monkeypatch.setattr(bench_cli, "load", lambda name: mods[name])
    monkeypatch.setattr("secagg.bench.common.machine_info", lambda: {"cpu_model": "test"})


def test_all_skips_what_is_not_installed_and_runs_the_rest(fake_benchmarks, capsys):
    assert main(["bench", "all", "--quick", "--json", "-"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc["benchmarks"]) == {"prg", "dp"}
    assert "secagg[he]" in doc["not_installed"]["he"]
    skip_lines = [line for line in err.splitlines() if line.startswith("he: skipped")]
    assert len(skip_lines) == 1 and "secagg[he]" in skip_lines[0]


def test_one_named_benchmark_without_its_extra_is_one_line_exit_2(fake_benchmarks, capsys):
    assert main(["bench", "he", "--quick"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "secagg[he]" in err[0]


def test_he_quick_makes_no_timing_verdicts(monkeypatch):
    pytest.importorskip("tenseal")
    from secagg.bench import he

    fast = {"bytes_per_param": 1.0, "encrypt_params_per_s": 1.0,
            "encrypt_secret_key_params_per_s": 1.0}
    monkeypatch.setattr(he, "_preset", lambda preset, m, repeat: dict(fast))
    quick, full = he.run(True), he.run(False)
    timing = [k for k in quick["bars"] if "/s" in k]
    assert timing and all(quick["bars"][k] is None for k in timing)
    assert all(full["bars"][k] is False for k in timing)  # 1 param/s misses the bar
    assert quick["bars"]["ckks_bytes_per_param<=26"] is True
