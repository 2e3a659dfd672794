"""``secagg conformance``: check an outside implementation of one party.

The outside party runs as a subprocess speaking the line protocol of
``protocols/conformance.md`` on stdin/stdout; every other party is our reference
state machine.  Checks (client role: ``kat``, ``rounds``, ``malicious``,
``malformed``; server role: ``kat``, ``rounds``, ``malformed``):

* ``kat`` — the known-answer round of ``protocols/vectors/secagg_round.json``
  with the outside party in every seat: every byte it sends must equal the vector;
* ``rounds`` — generated rounds (configs within a policy, edge inputs, dropouts in
  every phase): completes exactly when the oracle says, with the exact sum;
* ``malicious`` — a malicious server (withhold, truncate, split views, replay,
  substitute keys, both shares) against the outside client: it never answers the
  hostile message, and refused bytes change nothing;
* ``malformed`` — byte-level mutations of messages before the genuine ones:
  refused bytes change nothing, never a wrong sum.

Generated checks search with hypothesis and report the smallest failing case
(shrunk) with its transcript.  Needs the ``test`` extra.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from secagg._extras import require
from secagg.errors import SecAggError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.policy import ClientPolicy
from secagg.phase import Phase
from secagg.primitives.prg import dtype_for_bits
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime.api import build_config
from secagg.testing.reference_party import PROTOCOL, _hex, _unhex
from secagg.testing.rounds import (
    Expected,
    LocalServer,
    Mutation,
    RoundRecord,
    Schedule,
    ServerAttack,
    ServerStep,
    Step,
    exact_sum,
    expected_matches,
    play_round,
    predict,
    reference_clients,
    reference_graph,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceError",
    "PartyProcess",
    "ProcessClient",
    "ProcessServer",
    "add_arguments",
    "run",
    "run_conformance",
]

#: check name -> the roles it applies to
CHECKS: dict[str, tuple[str, ...]] = {
    "kat": ("client", "server"),
    "rounds": ("client", "server"),
    "malicious": ("client",),
    "malformed": ("client", "server"),
}
_STATUSES = ("ok", "refused", "aborted", "completed", "error")
VECTOR = Path(__file__).resolve().parents[2] / "protocols" / "vectors" / "secagg_round.json"


class ConformanceError(SecAggError):
    """The outside party broke the line protocol (crash, hang, garbage)."""


# -- the outside party -------------------------------------------------------------------------


class PartyProcess:
    """One outside party: a subprocess spoken to line by line.

    Parameters
    ----------
    command:
        Shell command line that starts the party.
    role:
        ``"client"`` or ``"server"`` (sent in the ``hello`` line).
    timeout:
        Seconds one command may take before the party counts as hung.
    """

    def __init__(self, command: str, role: str, *, timeout: float = 20.0) -> None:
        self.command, self.role, self.timeout = command, role, timeout
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(  # noqa: S602 - the user's own command line
            command, shell=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, text=True, bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ask(f"hello {PROTOCOL} role={role}")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def stderr_tail(self) -> str:
        self._err.seek(0)
        return self._err.read()[-2000:].decode("utf-8", "replace")

    def ask(self, line: str) -> tuple[list[str], str, str]:
        """Send one command; returns ``(payload lines, status, reason)``.

        Raises
        ------
        ConformanceError
            The party exited, hung past ``timeout``, answered garbage or ``error``.
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise ConformanceError(f"party is gone: {exc}; stderr: {self.stderr_tail()}") from exc
        payload: list[str] = []
        end = time.monotonic() + self.timeout
        while True:
            try:
                got = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise ConformanceError(f"no answer within {self.timeout:g} s to "
                                       f"{line.split()[0]!r}") from None
            if got is None:
                raise ConformanceError(f"party exited; stderr: {self.stderr_tail()}")
            word, _, rest = got.partition(" ")
            if word in _STATUSES:
                if word == "error":
                    raise ConformanceError(f"party answered error: {rest}")
                return payload, word, rest
            if word not in ("send", "result"):
                raise ConformanceError(f"unexpected line from party: {got[:120]!r}")
            payload.append(got)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


class ProcessClient:
    """An outside client as a :class:`~secagg.testing.rounds.ClientEndpoint`."""

    def __init__(self, party: PartyProcess) -> None:
        self.party = party

    def begin(self, config: RoundConfig, client: int, inputs: np.ndarray, seed: bytes,
              identity: bytes | None) -> None:
        self.party.ask(
            f"round config={config.to_bytes().hex()} id={client} seed={seed.hex()} "
            f"label=client/{client} input={','.join(str(v) for v in inputs.tolist())} "
            f"identity={identity.hex() if identity else '-'}"
        )

    def _step(self, line: str) -> Step:
        payload, status, reason = self.party.ask(line)
        msgs = []
        for p in payload:
            word, _, rest = p.partition(" ")
            if word != "send":
                raise ConformanceError(f"a client answered {word!r}")
            msgs.append(_unhex(rest))
        if status not in ("ok", "refused", "aborted"):
            raise ConformanceError(f"a client answered status {status!r}")
        return Step(status, tuple(msgs), reason)

    def start(self) -> Step:
        return self._step("start")

    def deliver(self, data: bytes) -> Step:
        return self._step(f"deliver {_hex(data)}")


class ProcessServer:
    """An outside server as a :class:`~secagg.testing.rounds.ServerEndpoint`."""

    def __init__(self, party: PartyProcess) -> None:
        self.party = party

    def begin(self, config: RoundConfig) -> None:
        self.party.ask(f"round config={config.to_bytes().hex()}")

    def _step(self, line: str) -> ServerStep:
        payload, status, reason = self.party.ask(line)
        msgs: list[tuple[int, bytes]] = []
        total: tuple[int, ...] | None = None
        for p in payload:
            word, _, rest = p.partition(" ")
            if word == "send":
                r, _, hx = rest.partition(" ")
                msgs.append((int(r), _unhex(hx)))
            else:
                total = tuple(int(v) for v in rest.split(",")) if rest else ()
        if status == "completed" and total is None:
            raise ConformanceError("server completed without a result line")
        return ServerStep(status, tuple(msgs), reason, total)

    def deliver(self, sender: int, data: bytes) -> ServerStep:
        return self._step(f"deliver {sender} {_hex(data)}")

    def deadline(self) -> ServerStep:
        return self._step("deadline")


# -- checks ---------------------------------------------------------------------------------


@dataclass(slots=True)
class CheckResult:
    """One row of the report."""

    name: str
    passed: bool
    rounds: int = 0
    seconds: float = 0.0
    detail: str = ""
    case: dict[str, Any] | None = None  #: the smallest failing case
    transcript: list[tuple[str, int, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name, "passed": self.passed, "rounds": self.rounds,
            "seconds": round(self.seconds, 3), "detail": self.detail, "case": self.case,
            "transcript": [
                {"direction": d, "client": c, "hex": h, "note": n} for d, c, h, n in self.transcript
            ],
        }


class _Session:
    """Keeps one outside party alive across rounds (restarting it after a crash)."""

    def __init__(self, command: str, role: str, timeout: float) -> None:
        self.command, self.role, self.timeout = command, role, timeout
        self.party: PartyProcess | None = None
        self.rounds = 0

    def get(self) -> PartyProcess:
        if self.party is None or self.party.proc.poll() is not None:
            if self.party is not None:
                self.party.close()
            self.party = PartyProcess(self.command, self.role, timeout=self.timeout)
        return self.party

    def reset(self) -> None:
        if self.party is not None:
            self.party.close()
        self.party = None

    def play(self, config: RoundConfig, inputs: Mapping[int, np.ndarray], seed: bytes,
             identity: Mapping[int, bytes], target: int, schedule: Schedule,
             **kw: Any) -> tuple[RoundRecord, LocalServer | None]:
        """One round with the outside party in seat ``target`` (client role) or
        as the server."""
        self.rounds += 1
        clients: dict[int, Any] = dict(reference_clients(config, inputs, seed, identity))
        ours: LocalServer | None = None
        if self.role == "client":
            pc = ProcessClient(self.get())
            pc.begin(config, target, inputs[target], seed, identity.get(target))
            clients[target] = pc
            ours = LocalServer(config)
            server: Any = ours
        else:
            ps = ProcessServer(self.get())
            ps.begin(config)
            server = ps
        return play_round(config, clients, server, schedule, target=target, **kw), ours


def _kat(sess: _Session) -> CheckResult:
    """The vector round, with the outside party in every seat."""
    t0 = time.monotonic()
    doc = json.loads(VECTOR.read_text())
    par = doc["parameters"]
    seed = int(par["seed"]).to_bytes(32, "big")
    cfg, keys = build_config(
        par["clients"], bits=par["bits"], length=par["length"],
        protocol=ProtocolKind(par["protocol"]), security=SecurityMode(par["security"]),
        neighbors=par["neighbors"], threshold=par["threshold"],
        rng=InsecureDeterministicRandom(seed, warn=False),
    )
    if cfg.session_id.hex() != doc["config"]["session_id"]:
        return CheckResult("kat", False, detail="vector config does not rebuild (stale vector?)")
    identity = {u: k.private_bytes() for u, k in keys.items()}
    dt = dtype_for_bits(cfg.bits)
    inputs = {int(u): np.array([int(v) for v in xs], dtype=dt) for u, xs in doc["inputs"].items()}
    drops = {u: Phase.MASKED_INPUT for u in par["dropped_before_masked_input"]}
    want: dict[tuple[str, int], list[str]] = {}
    for msg in doc["messages"]:
        want.setdefault((msg["direction"], int(msg["client"])), []).append(msg["hex"])
    seats = list(cfg.clients) if sess.role == "client" else [0]
    for seat in seats:
        try:
            rec, _ = sess.play(cfg, inputs, seed, identity, seat, Schedule(drops=drops))
        except ConformanceError as exc:
            sess.reset()
            return CheckResult("kat", False, sess.rounds, time.monotonic() - t0,
                               f"seat {seat}: {exc}")
        got: dict[tuple[str, int], list[str]] = {}
        for d, c, h, note in rec.transcript:
            if note == "genuine":
                got.setdefault((d, c), []).append(h)
        keys_ = [k for k in want if sess.role == "server" or k[1] == seat]
        for k in keys_:
            if got.get(k, []) != want[k]:
                return CheckResult(
                    "kat", False, sess.rounds, time.monotonic() - t0,
                    f"seat {seat}: {k[0]} frames of client {k[1]} differ from the vector",
                    {"seat": seat}, rec.transcript)
        if list(rec.total or ()) != [int(v) for v in doc["sum"]]:
            return CheckResult("kat", False, sess.rounds, time.monotonic() - t0,
                               f"seat {seat}: sum differs from the vector", {"seat": seat},
                               rec.transcript)
    return CheckResult("kat", True, len(seats), time.monotonic() - t0,
                       f"{len(seats)} seat(s) byte-identical to {VECTOR.name}")


def _generated(name: str, sess: _Session, strategy: Any,
               judge: Callable[[Any], tuple[list[str], RoundRecord | None]],
               budget: int, seed: int, deadline: float) -> CheckResult:
    """Search ``strategy`` for a case ``judge`` finds problems with; shrink it."""
    hyp = require("hypothesis", "test")
    t0 = time.monotonic()
    start_rounds = sess.rounds
    last: dict[str, Any] = {}

    def fails(case: Any) -> bool:
        if time.monotonic() > deadline and last:
            return False  # out of time while shrinking: keep the smallest so far
        try:
            problems, rec = judge(case)
        except ConformanceError as exc:
            sess.reset()
            problems, rec = [f"line protocol: {exc}"], None
        if problems:
            last.update(case=case, problems=problems, rec=rec)
        return bool(problems)

    try:
        found = hyp.find(
            strategy, fails,
            settings=hyp.settings(max_examples=budget, database=None, deadline=None,
                                  suppress_health_check=list(hyp.HealthCheck)),
            random=random.Random(seed),  # noqa: S311 - search order, not a secret
        )
    except hyp.errors.NoSuchExample:
        return CheckResult(name, True, sess.rounds - start_rounds, time.monotonic() - t0,
                           "no failing case found")
    except Exception:  # the time limit cut shrinking short (hypothesis calls it flaky)
        if not last:
            raise
        found = last["case"]
    problems, rec = judge(found) if not last or last["case"] is not found else (
        last["problems"], last["rec"])
    return CheckResult(
        name, False, sess.rounds - start_rounds, time.monotonic() - t0,
        "; ".join(problems) if problems else "; ".join(last.get("problems", [])),
        _describe(found), rec.transcript if rec is not None else [],
    )


def _describe(case: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (case.items() if isinstance(case, dict) else []):
        if isinstance(v, Mutation):
            out[k] = {"kind": v.kind.value, "position": v.position, "value": v.value}
        elif hasattr(v, "describe"):
            out[k] = v.describe()
        else:
            out[k] = v.value if hasattr(v, "value") else v
    return out


def run_conformance(command: str, role: str, *, budget: int = 100, seed: int = 0,
                    checks: tuple[str, ...] | None = None, timeout: float = 20.0,
                    time_limit: float = 600.0, policy: ClientPolicy | None = None,
                    ) -> list[CheckResult]:
    """Run the checks of ``role`` against the party started by ``command``.

    Parameters
    ----------
    budget:
        Generated rounds per generated check (before shrinking).
    seed:
        Seed of the search (same seed, same cases).
    time_limit:
        Seconds after which searches stop generating and shrinking.

    Raises
    ------
    ParameterError
        Unknown role or check.
    """
    from secagg.errors import ParameterError

    if role not in ("client", "server"):
        raise ParameterError("role must be client or server")
    names = checks or tuple(c for c, roles in CHECKS.items() if role in roles)
    for c in names:
        if c not in CHECKS or role not in CHECKS[c]:
            raise ParameterError(f"check {c!r} does not apply to the {role} role")
    from hypothesis import strategies as st

    from secagg.testing import strategies as gen

    sess = _Session(command, role, timeout)
    deadline = time.monotonic() + time_limit
    results: list[CheckResult] = []

    @st.composite
    def seated(draw: st.DrawFn, /, **kw: Any) -> dict[str, Any]:
        case = draw(gen.rounds(policy, **kw))
        return {"round": case, "target": draw(st.sampled_from(list(case.config.clients)))}

    def judge_rounds(c: dict[str, Any]) -> tuple[list[str], RoundRecord | None]:
        r = c["round"]
        rec, _ = sess.play(r.config, r.inputs, r.seed, r.identity, c["target"], r.schedule)
        problems = expected_matches(rec, _want(r, rec))
        if role == "server" and rec.accepted_corruptions:
            problems.append(f"accepted {rec.accepted_corruptions} malformed client frame(s)")
        return problems, rec

    @st.composite
    def attacked(draw: st.DrawFn) -> dict[str, Any]:
        c = draw(seated(max_drops=0))
        c["attack"] = draw(gen.server_attacks(c["round"].config))
        return c

    def judge_attack(c: dict[str, Any]) -> tuple[list[str], RoundRecord | None]:
        r, target, attack = c["round"], c["target"], c["attack"]
        rec, ours = sess.play(r.config, r.inputs, r.seed, r.identity, target, r.schedule,
                              attack=attack)
        problems = [f"answered the hostile {t} of a {attack.value} server"
                    for t, _ in rec.attack_answers]
        problems += _no_wrong_sum(rec, r, ours)
        if attack is ServerAttack.TRUNCATE:
            problems += expected_matches(rec, _want(r, rec))
        return problems, rec

    @st.composite
    def malformed(draw: st.DrawFn) -> dict[str, Any]:
        c = draw(seated(max_drops=0))
        c["phase"] = draw(st.sampled_from([Phase.SHARE_KEYS, Phase.MASKED_INPUT,
                                           Phase.CONSISTENCY, Phase.UNMASKING]))
        c["mutation"] = draw(gen.mutations())
        return c

    def judge_malformed(c: dict[str, Any]) -> tuple[list[str], RoundRecord | None]:
        r, target = c["round"], c["target"]
        rec, ours = sess.play(r.config, r.inputs, r.seed, r.identity, target, r.schedule,
                              to_target={c["phase"]: c["mutation"]})
        problems = _no_wrong_sum(rec, r, ours)
        steps = rec.client_steps.get(target, [])
        refused = all(i < len(steps) and steps[i].status == "refused" for i in rec.mutated_steps)
        if c["mutation"].must_refuse and not refused:
            problems.append(f"did not refuse a {c['mutation'].kind.value}d message")
        if refused:
            problems += expected_matches(rec, _want(r, rec))
        return problems, rec

    def server_malformed() -> Any:
        return seated(max_drops=1, corruptions=2)

    try:
        for i, name in enumerate(names):
            if name == "kat":
                results.append(_kat(sess))
            elif name == "rounds":
                results.append(_generated(name, sess, seated(), judge_rounds, budget,
                                          seed + i, deadline))
            elif name == "malicious":
                results.append(_generated(name, sess, attacked(), judge_attack, budget,
                                          seed + i, deadline))
            elif role == "client":
                results.append(_generated(name, sess, malformed(), judge_malformed, budget,
                                          seed + i, deadline))
            else:
                results.append(_generated(name, sess, server_malformed(), judge_rounds,
                                          budget, seed + i, deadline))
    finally:
        sess.reset()
    return results


def _want(r: Any, rec: RoundRecord) -> Expected:
    """The oracle for a generated round (SecAgg+: on the graph the round fixed, or,
    if it never got that far, the one our parties fix with the same randomness)."""
    graph = rec.graph or reference_graph(r.config, r.inputs, r.seed, r.identity, r.schedule)
    return predict(r.config, r.inputs, r.schedule, graph=graph)


def _no_wrong_sum(rec: RoundRecord, r: Any, ours: LocalServer | None) -> list[str]:
    """Whatever happened, a completed round's output is the survivors' exact sum."""
    if not rec.completed or ours is None:
        return []
    want = exact_sum(r.config, r.inputs, ours.server.survivors)
    if tuple(int(v) for v in want.tolist()) != tuple(rec.total or ()):
        return ["WRONG SUM over the survivors the server reported"]
    return []


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--client", metavar="CMD", help="command that starts an outside client")
    who.add_argument("--server", metavar="CMD", help="command that starts an outside server")
    parser.add_argument("--budget", type=int, default=100,
                        help="generated rounds per generated check")
    parser.add_argument("--seed", type=int, default=0, help="search seed")
    parser.add_argument("--check", action="append", choices=sorted(CHECKS),
                        help="run only this check (repeatable)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds the party may take per command")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="write the JSON report here ('-': stdout after the table)")


def run(args: argparse.Namespace) -> int:
    role = "client" if args.client else "server"
    command = args.client or args.server
    t0 = time.monotonic()
    results = run_conformance(command, role, budget=args.budget, seed=args.seed,
                              checks=tuple(args.check) if args.check else None,
                              timeout=args.timeout)
    wall = time.monotonic() - t0
    print(f"secagg conformance: {role} {command!r} (budget {args.budget}, seed {args.seed})")
    print(f"{'check':<10} {'result':<6} {'rounds':>6} {'seconds':>8}  detail")
    for r in results:
        print(f"{r.name:<10} {'PASS' if r.passed else 'FAIL':<6} {r.rounds:>6} "
              f"{r.seconds:>8.1f}  {r.detail[:200]}")
    total = sum(r.rounds for r in results)
    ok = all(r.passed for r in results)
    print(f"{'all' if ok else 'FAILED':<10} {'PASS' if ok else 'FAIL':<6} {total:>6} {wall:>8.1f}")
    for r in results:
        if not r.passed and r.case is not None:
            print(f"\nsmallest failing case of {r.name}:\n{json.dumps(r.case, indent=1)}")
            for d, c, h, note in r.transcript[:60]:
                print(f"  {d:<9} {c:>3} {note:<16} {h[:64]}{'…' if len(h) > 64 else ''}")
    report = {"role": role, "command": command, "budget": args.budget, "seed": args.seed,
              "passed": ok, "rounds": total, "seconds": round(wall, 3),
              "checks": [r.as_dict() for r in results]}
    if args.json == "-":
        print(json.dumps(report, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"JSON report: {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser(prog="secagg conformance")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
