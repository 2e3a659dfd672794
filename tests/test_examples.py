"""Every script in examples/ runs with tiny settings and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *argv],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_secure_sum_numpy() -> None:
    out = _run("secure_sum_numpy.py", "--clients", "6", "--length", "200", "--drop", "1")
    assert "5 of 6 clients survived" in out
    m = re.search(r"= ([\d.e+-]+) \(quantization step ([\d.e+-]+)\)", out)
    err, step = map(float, m.groups())
    assert err <= step


def test_deploy_secagg_halves() -> None:
    out = _run("deploy_secagg_halves.py", "--clients", "12", "--length", "200", "--drop", "2")
    assert "client 12 refused the round" in out  # its policy wants malicious mode
    assert "9 of 12 clients survived" in out  # 2 vanished, 1 refused
    m = re.search(r"= ([\d.e+-]+) \(quantization step ([\d.e+-]+)\)", out)
    err, step = map(float, m.groups())
    assert err <= step


def test_he_and_dp() -> None:
    pytest.importorskip("tenseal")
    out = _run("he_and_dp.py", "--clients", "6", "--length", "128", "--drop", "1")
    errs = [float(x) for x in re.findall(r"max \|error\| ([\d.e+-]+)", out)]
    assert len(errs) == 2 and max(errs) < 1e-4
    assert "DP (distributed discrete Gaussian" in out and "5 survivors" in out


@pytest.mark.slow
def test_federated_lora_secagg() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    out = _run("federated_lora_secagg.py", "--tiny", "--rounds", "2", "--clients", "4",
               "--per-round", "4", "--local-steps", "2", "--dropout", "0.25")
    assert out.count("survivors 3/4") == 2
    assert "LoRA parameters travel per client" in out
    first, last = map(float, re.search(r"val loss ([\d.]+) -> ([\d.]+)", out).groups())
    assert last < first


def test_property_test_my_transport() -> None:
    out = _run("property_test_my_transport.py", "--examples", "5")
    assert "never a wrong sum" in out
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "property_test_my_transport.py"), "--bug",
         "--examples", "10", "--no-shrink"],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "caught a bug in my transport" in proc.stdout
