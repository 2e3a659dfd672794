"""The DP core (samplers, rotation, encoding, accounting, simulate) needs no torch/opacus."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_torch_or_opacus() -> None:
    code = (
        "import sys\n"
        "import secagg.dp, secagg.sim.dp, secagg.dp.dpsgd, secagg.bench.dp\n"
        "heavy = ('torch', 'opacus', 'transformers', 'peft', 'scipy')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
