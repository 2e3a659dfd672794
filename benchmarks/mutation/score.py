"""The mutation score of one ``mutmut`` run, per module, net of equivalent mutants.

Usage::

    python benchmarks/mutation/score.py <dir with mutants/> [equivalents.md ...]

Reads the verdicts mutmut stored under ``mutants/`` in the directory and the mutant names listed in
the equivalents files (lines ``- `name` — reason``).  Prints a markdown table:
mutants, killed (``timeout`` counted apart, as killed), survived, no tests (no
selected test runs the mutated function: a survivor), not checked, equivalent,
and the score ``killed / (mutants - equivalent - not checked)``.  A mutant listed
as equivalent that was killed is reported: the list is then wrong.
"""

from __future__ import annotations

import collections
import json
import re
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    work = Path(sys.argv[1])
    equivalent: set[str] = set()
    for md in sys.argv[2:]:
        equivalent |= set(re.findall(r"^- `([^`]+)`", Path(md).read_text("utf-8"), re.M))
    from mutmut.stats import status_by_exit_code

    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seen: set[str] = set()
    for meta in sorted(work.glob("mutants/**/*.py.meta")):
        codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        for name, code in codes.items():
            status = status_by_exit_code[code]
            module = re.sub(r"\.x[_ǁ].*$", "", name)
            seen.add(name)
            c = rows[module]
            c["mutants"] += 1
            if name in equivalent:
                c["equivalent"] += 1
                if status in ("killed", "timeout"):
                    print(f"warning: {name} is listed as equivalent but was {status}")
                continue
            c[status] += 1
    for name in sorted(equivalent - seen):
        print(f"warning: {name} is listed as equivalent but is not a mutant of this run")
    cols = ["killed", "timeout", "survived", "no tests", "not checked", "equivalent"]
    print("| module | mutants | " + " | ".join(cols) + " | score |")
    print("|---|---:|" + "---:|" * len(cols) + "---:|")
    total: collections.Counter[str] = collections.Counter()
    for module in sorted(rows):
        total.update(rows[module])
        print(_row(module, rows[module], cols))
    print(_row("**total**", total, cols))
    return 0


def _row(label: str, c: collections.Counter[str], cols: list[str]) -> str:
    denom = c["mutants"] - c["equivalent"] - c["not checked"]
    killed = c["killed"] + c["timeout"]
    score = f"{100 * killed / denom:.1f}%" if denom else "n/a"
    return f"| {label} | {c['mutants']} | " + " | ".join(str(c[k]) for k in cols) + f" | {score} |"


if __name__ == "__main__":
    sys.exit(main())
