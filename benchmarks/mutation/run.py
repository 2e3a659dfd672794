"""Run ``mutmut`` over one target of issue 20 in a scratch copy of the tree.

``mutmut`` reads its configuration only from ``pyproject.toml`` and writes its
mutants under ``mutants/`` of the directory it runs in, so one configuration can
be run at a time per tree.  This script copies the working tree (tracked and
untracked-but-not-ignored files) to ``<workdir>/<target>``, replaces the
``[tool.mutmut]`` table there with the target's, and runs ``mutmut run`` and
``mutmut results`` under ``nice``.  A second run with the same workdir keeps the
earlier ``mutants/`` cache, so only mutants of changed functions (or, with
``--rerun``, the survivors) are tested again.

Usage (from the repository root)::

    python benchmarks/mutation/run.py primitives [--max-children 2]
    python benchmarks/mutation/run.py masking-server --rerun   # survivors again
    python benchmarks/mutation/run.py masking-plane --rerun \
        --skip-listed benchmarks/mutation/masking-equivalent.md   # less the equivalent ones
    python benchmarks/mutation/run.py masking-server --sample 80 --seed 1   # a random sample

With ``--sample N --seed S`` every mutant of the target is generated, and ``mutmut run``
is given a uniformly random sample of N mutant names, drawn with
``random.Random(S).sample`` from the sorted list of all names.  The seed, the population
and the sampled names are written to ``<workdir>/<target>/mutation-sample.json``;
``score.py`` then counts only the sampled mutants (the rest stay *not checked*) and
gives a 95% Wilson interval.  ``--rerun`` in a sampled workdir reruns only the sampled
mutants not yet killed.

Targets are listed in ``TARGETS``; ``benchmarks/mutation/README.md`` has the scores.
Long job: minutes to an hour per target on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: target -> (source path, only_mutate globs or None, test selection, extra pytest args)
TARGETS: dict[str, tuple[str, list[str] | None, list[str], list[str]]] = {
    # the label-registry test scans the source text, which mutmut rewrites
    "primitives": (
        "secagg/primitives/",
        None,
        ["tests/primitives/"],
        ["--ignore=tests/primitives/test_label_registry.py"],
    ),
    "encoding": ("secagg/encoding/", None, ["tests/encoding/"], []),
    "accounting": (
        "secagg/dp/",
        ["*secagg/dp/accounting.py"],
        [
            "tests/dp/test_accounting.py",
            "tests/dp/test_accounting_checks.py",
            "tests/dp/test_accounting_reference.py",
        ],
        [],
    ),
    "masking-server": ("secagg/masking/", ["*secagg/masking/server.py"], ["tests/masking/"], []),
    "masking-client": ("secagg/masking/", ["*secagg/masking/client.py"], ["tests/masking/"], []),
    "masking-common": ("secagg/masking/", ["*secagg/masking/_common.py"], ["tests/masking/"], []),
    "masking-plane": ("secagg/masking/", ["*secagg/masking/_plane.py"], ["tests/masking/"], []),
    "masking-messages": (
        "secagg/masking/",
        ["*secagg/masking/messages.py"],
        ["tests/masking/"],
        [],
    ),
    # a triage aid, not a score: messages.py against the codec's own quick tests only
    # (a mutant that survives here may still be killed by a round test of masking-messages)
    "masking-messages-quick": (
        "secagg/masking/",
        ["*secagg/masking/messages.py"],
        [
            "tests/masking/test_messages.py",
            "tests/masking/test_messages_pinned.py",
            "tests/masking/test_messages_reference.py",
            "tests/masking/test_messages_constructors.py",
            "tests/masking/test_messages_entry_points.py",
            "tests/masking/test_wire_size.py",
            "tests/masking/test_vectors.py",
        ],
        [],
    ),
    # the package's small modules together (config, graph, parameters, policy, ...)
    "masking-small": (
        "secagg/masking/",
        [
            f"*secagg/masking/{name}.py"
            for name in ("abort", "config", "graph", "params", "params_cli", "phase", "policy")
        ],
        ["tests/masking/"],
        [],
    ),
}

SAMPLE_FILE = "mutation-sample.json"

# Generate the mutants (the first steps of ``mutmut run``, mutmut 3.8.1) without running
# any test, so that the names to sample from are known before the run.
_GENERATE = """
import os
from mutmut.__main__ import (copy_also_copy_files, copy_src_dir, create_mutants,
                             setup_source_paths, store_lines_covered_by_tests)
from mutmut.mutation.trampoline import set_mutant_under_test
set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
store_lines_covered_by_tests()
create_mutants({children})
"""


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def mutmut_table(target: str) -> str:
    src, only, tests, extra = TARGETS[target]
    lines = [
        "[tool.mutmut]",
        f"source_paths = {_toml_list([src])}",
        f"pytest_add_cli_args_test_selection = {_toml_list(tests)}",
        'also_copy = ["secagg/", "protocols/", "tests/"]',
        f"pytest_add_cli_args = {_toml_list(['-p', 'no:cacheprovider', '-q', *extra])}",
    ]
    if only:
        lines.append(f"only_mutate = {_toml_list(only)}")
    return "\n".join(lines) + "\n"


def copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = Path(os.fsdecode(raw))
        src = ROOT / rel
        if not src.is_file():
            continue  # deleted in the working tree
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists() or out.read_bytes() != src.read_bytes():
            shutil.copy2(src, out)


def all_mutant_names(work: Path) -> list[str]:
    """Every mutant name mutmut generated in ``work`` (its ``mutants/**/*.py.meta``), sorted."""
    names: set[str] = set()
    for meta in work.glob("mutants/**/*.py.meta"):
        names |= set(json.loads(meta.read_text("utf-8"))["exit_code_by_key"])
    return sorted(names)


def draw_sample(
    work: Path, target: str, n: int, seed: int, env: dict[str, str], nice: int
) -> list[str]:
    """Generate the mutants, draw ``n`` names uniformly with ``random.Random(seed)``, record them.

    An existing record with the same target, size and seed is reused (so a stopped
    sampled run is continued with the same names); a different one is an error.
    """
    record = work / SAMPLE_FILE
    if record.exists():
        old = json.loads(record.read_text("utf-8"))
        if (old["target"], old["n"], old["seed"]) != (target, n, seed):
            raise SystemExit(f"{record} holds another sample ({old['n']}, seed {old['seed']})")
        return list(old["names"])
    subprocess.run(
        ["nice", "-n", str(nice), sys.executable, "-c", _GENERATE.format(children=1)],
        cwd=work,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    population = all_mutant_names(work)
    if n > len(population):
        raise SystemExit(f"--sample {n} but the target has only {len(population)} mutants")
    names = sorted(random.Random(seed).sample(population, n))  # not secret: a reproducible sample
    record.write_text(
        json.dumps(
            {"target": target, "n": n, "seed": seed, "population": len(population), "names": names},
            indent=1,
        )
        + "\n",
        "utf-8",
    )
    print(f"{target}: sampled {n} of {len(population)} mutants (seed {seed}) -> {record}")
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument(
        "--workdir", default=os.environ.get("SECAGG_MUTATION_WORKDIR", "/tmp/secagg-mutation")
    )
    ap.add_argument("--max-children", type=int, default=2)
    ap.add_argument("--nice", type=int, default=15)
    ap.add_argument(
        "--rerun",
        action="store_true",
        help="test again every mutant not yet killed (survived, no tests, not checked)",
    )
    ap.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="run a uniformly random sample of N of the target's mutants (see --seed)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    ap.add_argument(
        "--skip-listed",
        action="append",
        default=[],
        metavar="EQUIVALENT_MD",
        help="with --rerun: leave out the mutants listed in this equivalents file "
        "(their last verdict stands; repeatable)",
    )
    args = ap.parse_args()

    work = Path(args.workdir) / args.target
    work.mkdir(parents=True, exist_ok=True)
    copy_tree(work)
    pyproject = work / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text).rstrip() + "\n\n"
    pyproject.write_text(text + mutmut_table(args.target), "utf-8")

    mutmut = [sys.executable, "-m", "mutmut"]
    # CI=1: the derandomized hypothesis profile (tests/conftest.py), so that a mutant
    # is killed or not the same way on every run
    # HYPOTHESIS_PROFILE=mutation: that profile without shrinking (a killed mutant is
    # reported at its first failing example; the verdicts are the same)
    env = {**os.environ, "CI": "1", "HYPOTHESIS_PROFILE": "mutation"}
    names: list[str] = []
    sampled: list[str] | None = None
    if args.sample is not None:
        sampled = draw_sample(work, args.target, args.sample, args.seed, env, args.nice)
    elif (work / SAMPLE_FILE).exists():
        sampled = json.loads((work / SAMPLE_FILE).read_text("utf-8"))["names"]
    if sampled is not None and not args.rerun:
        names = sampled
    if args.rerun:
        res = subprocess.run(
            [*mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True, env=env
        )
        again = (": survived", ": no tests", ": not checked")
        names = [
            ln.split(":")[0].strip() for ln in res.stdout.splitlines() if ln.strip().endswith(again)
        ]
        if sampled is not None:  # the unsampled mutants stay "not checked"
            names = [n for n in names if n in set(sampled)]
        listed: set[str] = set()
        for md in args.skip_listed:
            listed |= set(re.findall(r"^- `([^`]+)`", Path(md).read_text("utf-8"), re.M))
        names = [n for n in names if n not in listed]
        if not names:
            print(f"{args.target}: nothing to rerun in {work}")
            return 0
    t0 = time.monotonic()
    rc = subprocess.call(
        [
            "nice",
            "-n",
            str(args.nice),
            *mutmut,
            "run",
            "--max-children",
            str(args.max_children),
            *names,
        ],
        cwd=work,
        env=env,
    )
    wall = time.monotonic() - t0
    subprocess.call([*mutmut, "results", "--all", "true"], cwd=work, env=env)
    print(f"\n{args.target}: mutmut run exited {rc} after {wall:.0f} s wall in {work}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
