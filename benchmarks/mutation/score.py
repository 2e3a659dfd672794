"""The mutation score of one ``mutmut`` run, per module, net of equivalent mutants.

Usage::

    python benchmarks/mutation/score.py <dir with mutants/> [equivalents.md ...]

Reads the verdicts mutmut stored under ``mutants/`` in the directory and the mutant names listed in
the equivalents files (lines ``- `name` — reason``).  Prints a markdown table:
mutants, killed (``timeout`` and *killed by hand* counted apart, as killed), survived,
no tests (no selected test runs the mutated function: a survivor), not checked,
equivalent, and the score ``killed / (mutants - equivalent - not checked)``.  A mutant
listed as equivalent that was killed is reported: the list is then wrong.

If the directory holds ``hand-verdicts.json`` (``handcheck.py``: the mutant's source
applied to a fresh tree, the tests run in a new interpreter), a mutant mutmut left
alive that the hand check killed is counted as *killed by hand* (a kill: mutmut's
trampoline cannot activate a mutant of code that runs only at import).

If the directory holds ``mutation-sample.json`` (``run.py --sample``), only the sampled
mutants are counted: the table is marked *sampled*, says the population (all mutants
of the target) and adds the 95% Wilson score interval of the score, the sampled
non-equivalent mutants being a uniform draw (without replacement: the interval, which
ignores the finite-population correction, is conservative).
"""

from __future__ import annotations

import collections
import json
import math
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

    sample: set[str] | None = None
    record = work / "mutation-sample.json"
    if record.exists():
        rec = json.loads(record.read_text("utf-8"))
        sample = set(rec["names"])
        print(
            f"**sampled**: {len(sample)} of {rec['population']} mutants of `{rec['target']}` "
            f"(`random.Random({rec['seed']}).sample`); the others are not counted\n"
        )

    hand: dict[str, str] = {}
    verdicts = work / "hand-verdicts.json"
    if verdicts.exists():
        hand = {k: v["verdict"] for k, v in json.loads(verdicts.read_text("utf-8")).items()}

    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seen: set[str] = set()
    for meta in sorted(work.glob("mutants/**/*.py.meta")):
        codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        for name, code in codes.items():
            if sample is not None and name not in sample:
                continue
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
            if status in ("survived", "no tests") and hand.get(name) == "killed":
                status = "killed by hand"
            c[status] += 1
    # one equivalents file may list several modules: check the names of the modules read
    for name in sorted(equivalent - seen):
        if re.sub(r"\.x[_ǁ].*$", "", name) in rows and (sample is None or name in sample):
            print(f"warning: {name} is listed as equivalent but is not a mutant of this run")
    for name in sorted((sample or set()) - seen):
        print(f"warning: sampled mutant {name} is not a mutant of this run")
    cols = ["killed", "timeout", "killed by hand", "survived", "no tests", "not checked",
            "equivalent"]
    wilson = sample is not None
    head = "| module | " + ("sampled" if wilson else "mutants") + " | " + " | ".join(cols)
    print(head + " | score |" + (" 95% Wilson |" if wilson else ""))
    print("|---|---:|" + "---:|" * len(cols) + "---:|" + ("---:|" if wilson else ""))
    total: collections.Counter[str] = collections.Counter()
    for module in sorted(rows):
        total.update(rows[module])
        print(_row(module, rows[module], cols, wilson))
    print(_row("**total**", total, cols, wilson))
    return 0


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (95% for the default ``z``)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, center - half), min(1.0, center + half))


def _row(label: str, c: collections.Counter[str], cols: list[str], wilson: bool) -> str:
    denom = c["mutants"] - c["equivalent"] - c["not checked"]
    killed = c["killed"] + c["timeout"] + c["killed by hand"]
    score = f"{100 * killed / denom:.1f}%" if denom else "n/a"
    row = f"| {label} | {c['mutants']} | " + " | ".join(str(c[k]) for k in cols) + f" | {score} |"
    if wilson:
        lo, hi = wilson_interval(killed, denom)
        row += f" {100 * lo:.1f}–{100 * hi:.1f}% |" if denom else " n/a |"
    return row


if __name__ == "__main__":
    sys.exit(main())
