"""One spelling per concept (issue #18 item 9): ``neighbors``, never the British
form, in code, tests, examples and docs — the API (``Client.neighbors``,
``secagg.masking.graph.neighbors`` / ``all_neighbors``,
``AbortReason.NOT_A_NEIGHBOR``), the CLI (``--neighbors``) and the JSON keys."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BRITISH = "neigh" + "bour"  # spelled in two parts so this file does not match itself
DIRS = ("secagg", "tests", "examples", "benchmarks", "protocols")
SUFFIXES = {".py", ".md", ".toml", ".json", ".txt"}


def test_no_british_neighbor_spelling_in_the_tree() -> None:
    files = [*sorted(ROOT.glob("*.md")), ROOT / "pyproject.toml"]
    for d in DIRS:
        files += sorted(p for p in (ROOT / d).rglob("*") if p.suffix in SUFFIXES)
    hits = []
    for path in files:
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if BRITISH in line.lower():
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits[:20])
