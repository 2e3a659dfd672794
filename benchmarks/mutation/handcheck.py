"""Check surviving mutants again in a fresh interpreter: the mutated source on disk.

``mutmut`` 3 imports the code once and picks the active mutant when a mutated
function is *called* (its trampoline).  Code that runs only at import — tables built
by a function at module level, like ``secagg/masking/phase.py``'s transition tables —
is evaluated before any mutant is active, so such a mutant "survives" whatever the
tests check.  This script applies each named mutant's diff (``mutmut show``) to a
fresh copy of the working tree and runs the target's test selection there in a new
interpreter (``-x``: the first failure decides; the long jobs left out, so a mutant
they alone would kill stays a survivor).  A clean copy is run first; it must
pass, or nothing is judged.

Verdicts go to ``<workdir>/<target>/hand-verdicts.json``; ``score.py`` counts a
mutant that mutmut left alive and this script killed as *killed by hand*.

Usage (from the repository root)::

    python benchmarks/mutation/handcheck.py masking-small --workdir /tmp/mut26 NAME ...
    python benchmarks/mutation/handcheck.py masking-small --workdir /tmp/mut26 --survivors
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import TARGETS, copy_tree

VERDICTS = "hand-verdicts.json"


def _pytest(tree: Path, target: str, timeout: float) -> tuple[int, str]:
    _, _, tests, extra = TARGETS[target]
    # the target's selection less the long jobs (a subset: a mutant it kills, the whole
    # selection kills; one it misses is left a survivor)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m",
           "not long", *extra, *tests]
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(tree)}
    try:
        res = subprocess.run(
            cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    tail = (res.stdout.strip().splitlines() or [""])[-1]
    return res.returncode, tail


def apply_diff(tree: Path, diff: str) -> None:
    """Apply ``mutmut show``'s one-file diff: each hunk's old lines (context and
    removed) must occur exactly once in the file, and are replaced by its new lines.
    (``patch`` refuses a hunk at a function's end, which has no trailing context.)"""
    lines = diff.splitlines()
    path = tree / lines[0].removeprefix("--- ").strip()
    text = path.read_text("utf-8")
    hunks: list[tuple[list[str], list[str]]] = []
    for line in lines[2:]:
        if line.startswith("@@"):
            hunks.append(([], []))
        elif hunks and line.startswith("-"):
            hunks[-1][0].append(line[1:])
        elif hunks and line.startswith("+"):
            hunks[-1][1].append(line[1:])
        elif hunks and line.startswith(" "):
            hunks[-1][0].append(line[1:])
            hunks[-1][1].append(line[1:])
    if not hunks:
        raise ValueError("no hunk in the diff")
    for old, new in hunks:
        before, after = "\n".join(old) + "\n", "\n".join(new) + "\n"
        if text.count(before) != 1:
            raise ValueError(f"the hunk's old lines occur {text.count(before)} times in {path}")
        text = text.replace(before, after)
    path.write_text(text, "utf-8")


def _survivors(work: Path) -> list[str]:
    res = subprocess.run(
        [sys.executable, "-m", "mutmut", "results"], cwd=work, capture_output=True, text=True
    )
    alive = (": survived", ": no tests")
    lines = res.stdout.splitlines()
    return [ln.split(":")[0].strip() for ln in lines if ln.strip().endswith(alive)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument(
        "--workdir", default=os.environ.get("SECAGG_MUTATION_WORKDIR", "/tmp/secagg-mutation")
    )
    ap.add_argument("--survivors", action="store_true", help="every mutant mutmut left alive")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per test run")
    ap.add_argument("names", nargs="*")
    args = ap.parse_intermixed_args()  # NAMEs may follow --workdir
    work = Path(args.workdir) / args.target
    if not (work / "mutants").is_dir():
        print(f"no mutmut run in {work}", file=sys.stderr)
        return 2
    names = list(args.names) + (_survivors(work) if args.survivors else [])
    if not names:
        print("no mutant named", file=sys.stderr)
        return 2
    record = work / VERDICTS
    verdicts = json.loads(record.read_text("utf-8")) if record.exists() else {}
    with tempfile.TemporaryDirectory(prefix="secagg-handcheck-") as tmp:
        clean = Path(tmp) / "clean"
        copy_tree(clean)
        rc, tail = _pytest(clean, args.target, args.timeout)
        if rc != 0:
            print(f"the unmutated tree fails its tests ({tail}): nothing judged", file=sys.stderr)
            return 1
        print(f"unmutated tree: {tail}")
        for name in names:
            show = subprocess.run(
                [sys.executable, "-m", "mutmut", "show", name],
                cwd=work,
                capture_output=True,
                text=True,
            )
            diff = show.stdout[show.stdout.find("--- ") :] if "--- " in show.stdout else ""
            if not diff:
                print(f"{name}: no diff from `mutmut show`", file=sys.stderr)
                return 1
            tree = Path(tmp) / "mutant"
            shutil.rmtree(tree, ignore_errors=True)
            copy_tree(tree)
            try:
                apply_diff(tree, diff)
            except ValueError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return 1
            t0 = time.monotonic()
            rc, tail = _pytest(tree, args.target, args.timeout)
            verdict = "survived" if rc == 0 else "killed"
            verdicts[name] = {"verdict": verdict, "pytest_exit": rc, "last_line": tail}
            record.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n", "utf-8")
            print(f"{name}: {verdict} ({tail}; {time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
