"""A core-only install (numpy + cryptography, no extras) runs ``secagg simulate``.

Each case runs a fresh interpreter whose ``sitecustomize`` (tests/core_only/)
makes every optional dependency unimportable — rich, torch, tenseal, ray, flwr,
opacus, transformers, peft, matplotlib, psutil, scipy — so CI checks the core
install without building a second environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "tests" / "core_only"


def _core_python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SHIM), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_shim_hides_every_extra():
    r = _core_python(
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        continue\n"
        "    raise SystemExit(f'{name} is importable')\n",
        "rich", "torch", "tenseal", "ray", "flwr", "opacus",
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_simulate_with_its_progress_display_runs_without_rich():
    # the README's example turns the progress display on at n*m >= 10^7; lower the bar
    # so a small round takes the same path (the display is where rich was imported)
    code = (
        "import sys\n"
        "import secagg.sim.cli as sim\n"
        "sim._PROGRESS_WORK = 1\n"
        "from secagg.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'rich' not in sys.modules\n"
        "raise SystemExit(rc)\n"
    )
    r = _core_python(code, "simulate", "--clients", "20", "--length", "100", "--dropout", "0.1",
                     "--seed", "1", "--json", "-")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["exact"] is True and out["survivors"] == 18


def test_he_on_a_core_install_names_the_extra_in_one_line():
    r = _core_python("from secagg.cli import main; raise SystemExit(main())",
                     "simulate", "--protocol", "he-ckks", "--clients", "3", "--length", "4")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "secagg[he]" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
