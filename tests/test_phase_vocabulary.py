"""One phase vocabulary for the whole project (issue #11 item 2).

* The source tree defines exactly one phase enum, :class:`secagg.phase.Phase`
  (a grep over ``secagg/``); the retired names (``ServerPhase``, ``ClientPhase``,
  ``DropPhase``, ``HEServerPhase``, ``collecting_phase``, ``secagg.runtime.phases``
  ...) occur nowhere in code, tests, examples or docs.
* Every package that names phases re-exports that one enum, and every server
  says which phase it collects (``collecting -> Phase | None``).
* The CLI / JSON spellings are ``Phase.value`` / ``Phase.key`` and did not move.
"""

from __future__ import annotations

import re
from pathlib import Path

from secagg.phase import ROUND_PHASES, TERMINAL, Phase

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

ENUM_CLASS = re.compile(r"^\s*class\s+(\w*Phase)\b.*Enum", re.MULTILINE)
RETIRED = re.compile(
    r"\b(ServerPhase|ClientPhase|DropPhase|HEServerPhase|LightServerPhase|MaskingPhase"
    r"|collecting_phase)\b|secagg\.runtime\.phases|runtime/phases\.py"
)
SCANNED = ("secagg", "examples", "tests", "benchmarks", "protocols")
DOCS = ("README.md", "SECURITY.md")


def _files() -> list[Path]:
    out = [ROOT / d for d in DOCS if (ROOT / d).is_file()]
    for d in SCANNED:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in {".py", ".md"} and path.resolve() != THIS:
                out.append(path)
    return out


def test_exactly_one_phase_enum_in_the_package() -> None:
    found = [
        (str(path.relative_to(ROOT)), name)
        for path in sorted((ROOT / "secagg").rglob("*.py"))
        for name in ENUM_CLASS.findall(path.read_text())
    ]
    assert found == [("secagg/phase.py", "Phase")]


def test_no_retired_phase_name_anywhere() -> None:
    hits = []
    for path in _files():
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if RETIRED.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_every_package_exports_the_same_enum() -> None:
    import secagg.lightsecagg
    import secagg.masking
    import secagg.masking.phase
    import secagg.runtime
    import secagg.sim

    for mod in (secagg.masking, secagg.masking.phase, secagg.lightsecagg, secagg.runtime,
                secagg.sim):
        assert mod.Phase is Phase, mod.__name__


def test_cli_and_json_spellings_are_stable() -> None:
    """``--drop-before`` takes ``Phase.value``; per-phase JSON keys are ``Phase.key``."""
    assert [p.value for p in ROUND_PHASES] == [
        "advertise-keys", "graph-seed", "share-keys", "masked-input", "consistency",
        "unmasking"]
    assert [p.key for p in ROUND_PHASES] == [
        "advertise_keys", "graph_seed", "share_keys", "masked_input", "consistency",
        "unmasking"]
    assert [p.order for p in Phase] == list(range(len(Phase)))
    assert {Phase.COMPLETED, Phase.ABORTED} == TERMINAL
    assert all(p.round is not None for p in ROUND_PHASES)
    assert {p for p in Phase if p.round is None} == {Phase.INIT, Phase.FINALIZING} | TERMINAL


def test_lightsecagg_parties_use_the_one_enum() -> None:
    import numpy as np

    from secagg.lightsecagg import Client, LightSecAggConfig, Server
    from secagg.primitives.rand import InsecureDeterministicRandom

    rng = InsecureDeterministicRandom(3, warn=False)
    cfg = LightSecAggConfig.create(session_id=bytes(32), clients=(1, 2, 3, 4), length=5,
                                   bits=16, privacy=1, target=3)
    server = Server(config=cfg)
    assert server.phase is Phase.ADVERTISE_KEYS and server.collecting is Phase.ADVERTISE_KEYS
    client = Client(config=cfg, client_id=1, input_vector=np.zeros(5, np.uint32),
                    rng=rng.child("c1"))
    assert client.phase is Phase.INIT
    client.start()
    assert client.phase is Phase.ADVERTISE_KEYS
