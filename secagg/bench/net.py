"""``secagg bench net``: a round over loopback mutual TLS next to the process engine.

One SecAgg+ (semi-honest) round of ``n`` clients x ``m`` parameters with 10% of the
clients crashing after key sharing, run twice in the same invocation:

* **net** — :func:`secagg.net.simulate.simulate_net`: the TLS server (its
  control loop, its I/O loops in ``min(4, CPUs)`` threads — ``SECAGG_BENCH_NET_IO``
  to choose) and the round loop here, the clients in separate processes (2 hosting the
  survivors, 2 hosting the crashing clients, each SIGKILLed when the first of its
  clients receives its share boxes, after key sharing — ``SECAGG_BENCH_NET_CRASH_GROUP``
  = 1 gives every crashing client a process of its own, as ``simulate --engine net``
  does),
  started before the round's clock (as devices are up before a round; their
  start-up is reported apart) and connecting once the round is open;
* **processes** (baseline) — :func:`secagg.bench.scale.run_parallel_round`: the
  same round shape (n, m, default (k, t), 10% dropped before masked input),
  clients in 2 worker processes talking to the server over pipes.

Both drivers skip the transcript digest (SHA-256 of every frame, a check of the
engines' agreement, not part of the protocol): the baseline always did, the net
run computed it until 2026-12-04 (0.47 GB of frames at n = 1000: about 0.3 s of
the driver thread's CPU here, hashlib SHA-256 at 1.5 GB/s).

``SECAGG_BENCH_NET_REPS`` = N runs the pair N times interleaved (processes, net,
processes, net, ...) and keeps each engine's fastest round: the machine is shared,
and a burst of load on one run should not decide the ratio.

Reported: ``exact`` for both (every run); wall time of the round and the ratio
net/processes of the best runs (target <= 1.5), every run's wall, and each phase's
wall for both engines' best runs; the server's peak RSS
above its pre-round baseline and the RoundDriver's tracemalloc peak of the
server's own steps (running sum, the message being added, unmasking; a second net
run with tracing on, since tracing slows it) next to the ``3 x 4m`` bytes of the
issue's bound; the bytes each surviving client's TCP connection carried to the
server (TLS records and handshake included) against the SecAgg message bytes it
sent (target overhead <= 2%).

The issue's size is n = 1000, m = 10^5; on the shared 2-core box the default run
is n = 200, m = 10^5 (``--quick``: n = 20, m = 10^4).  Pass ``SECAGG_BENCH_NET_N``
/ ``SECAGG_BENCH_NET_M`` to run another size.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from secagg.bench.common import machine_info, markdown_table
from secagg.errors import ParameterError

__all__ = ["markdown", "run"]


def _env_int(name: str, default: int, minimum: int) -> int:
    """An integer setting from the environment (``default`` when unset or empty; a
    value that is set must be at least ``minimum``)."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ParameterError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}")
    return value


def _size(quick: bool) -> tuple[int, int]:
    n = _env_int("SECAGG_BENCH_NET_N", 20 if quick else 200, 2)
    m = _env_int("SECAGG_BENCH_NET_M", 10**4 if quick else 10**5, 1)
    return n, m


def run(quick: bool = False, *, seed: int = 7) -> dict[str, Any]:
    """Run both engines on the same round shape; JSON-ready result."""
    from secagg.bench.scale import run_parallel_round
    from secagg.net.server import default_io_threads
    from secagg.net.simulate import simulate_net
    from secagg.sim import Phase

    n, m = _size(quick)
    io_threads = _env_int("SECAGG_BENCH_NET_IO", 0, 1) or None  # None: the server's default
    # the crashing clients in 2 processes, as the baseline's dropped clients live in its
    # 2 workers: a process per simulated device is CPU a real server does not pay
    crash_group = _env_int("SECAGG_BENCH_NET_CRASH_GROUP", max(1, -(-round(0.10 * n) // 2)), 1)

    def say(line: str) -> None:
        print(f"[net n={n} m={m}] {line}", file=sys.stderr, flush=True)

    reps = _env_int("SECAGG_BENCH_NET_REPS", 1, 1)

    def net_round(measure_memory: bool) -> dict[str, Any]:
        return simulate_net(
            clients=n,
            length=m,
            crash=0.10,
            crash_points=["boxes"],  # after key sharing: dropouts of the masked-input phase
            seed=seed,
            phase_timeout=120.0,
            join_timeout=600.0,
            idle_timeout=60.0,
            client_procs=2,
            measure_memory=measure_memory,
            io_threads=io_threads,
            digest=False,  # as the baseline (run_parallel_round(digest=False))
            crash_group=crash_group,
        )

    # interleaved (baseline, net, baseline, net, ...): each engine's best of `reps`,
    # so a burst of load on the shared machine does not land on one engine only
    bases: list[dict[str, Any]] = []
    nets: list[dict[str, Any]] = []
    for rep in range(reps):
        say(f"processes engine (baseline), run {rep + 1} of {reps} ...")
        bases.append(
            run_parallel_round(
                n=n,
                length=m,
                seed=seed,
                dropout=0.10,
                drop_phase=Phase.MASKED_INPUT,
                digest=False,
                workers=2,
            )
        )
        say(f"baseline: wall {bases[-1]['wall_s']:.2f} s, exact {bases[-1]['exact']}")
        say(f"net engine (loopback TLS, client processes), run {rep + 1} of {reps} ...")
        nets.append(net_round(False))
        say(f"net: round wall {nets[-1]['round_wall_s']:.2f} s, exact {nets[-1]['exact']}")
    base = min(bases, key=lambda r: float(r["wall_s"]))
    net = min(nets, key=lambda r: float(r["round_wall_s"]))
    # memory: the largest rise over any run (a later run of the same process starts
    # from the high-water mark of the earlier ones, so its own rise reads near 0)
    net_rss = max(float(r["server_round_peak_rss_mb"]) for r in nets)
    base_rss = max(float(r["server_peak_rss_mb"]) for r in bases)
    say("net engine again with tracemalloc on the server (memory only) ...")
    traced = net_round(True)
    msg = net["survivor_message_bytes_to_server"]
    tcp = net["survivor_tcp_bytes_to_server"]
    frame = net["survivor_frame_bytes_to_server"]
    survivors_u3 = net["sets"]["U3"]
    return {
        "benchmark": "net",
        "quick": quick,
        "clients": n,
        "elements": m,
        "crash": 0.10,
        "crash_point": "on receiving the share boxes (after key sharing)",
        "neighbors": net["neighbors"],
        "threshold": net["threshold"],
        "reps": reps,
        "net_exact": all(r["exact"] for r in nets),
        "net_round_walls_s": [r["round_wall_s"] for r in nets],
        "processes_walls_s": [r["wall_s"] for r in bases],
        "net_aborted": net["aborted"],
        "net_killed_by_sigkill": net["killed_by_sigkill"],
        "net_survivors": net["survivors"],
        "net_round_wall_s": net["round_wall_s"],
        "net_server_io_threads": io_threads or default_io_threads(),
        "net_crash_processes": net["crash_processes"],
        "net_client_processes": net["client_processes"],
        "net_certs_s": net["certs_s"],
        "net_client_processes_start_s": net["client_processes_start_s"],
        "net_join_s": net["join_s"],
        "net_phases": net["phases"],
        "net_phase_wall_s": {
            **{k: v["wall_s"] for k, v in net["phases"].items()},
            "finalize": net["finalize_wall_s"],
        },
        "processes_exact": all(r["exact"] for r in bases),
        "processes_wall_s": base["wall_s"],
        "processes_phase_wall_s": base["phase_wall_s"],
        "wall_ratio_net_over_processes": net["round_wall_s"] / base["wall_s"],
        "server_peak_rss_mb": net_rss,
        "server_traced_peak_mb": traced["server_peak_mb"],
        "traced_run_exact": traced["exact"],
        "processes_server_peak_rss_mb": base_rss,
        "net_rss_over_processes_per_connection_kb": (
            (net_rss - base_rss) * 1024 / n
        ),
        "bound_3x4m_mb": 3 * 4 * m / 2**20,
        "message_bytes_per_survivor": msg / max(1, survivors_u3),
        "framing_overhead": (frame - msg) / msg if msg else None,
        "tls_tcp_overhead": (tcp - msg) / msg if msg and tcp is not None else None,
        "tcp_counted": tcp is not None,
        "machine": machine_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    r = result
    rows = [
        ["exact (net / processes)", f"{r['net_exact']} / {r['processes_exact']}"],
        [
            "runs per engine, interleaved (best of each below)",
            f"{r.get('reps', 1)}: net "
            + ", ".join(f"{w:.2f}" for w in r.get("net_round_walls_s", [r["net_round_wall_s"]]))
            + " s; processes "
            + ", ".join(f"{w:.2f}" for w in r.get("processes_walls_s", [r["processes_wall_s"]]))
            + " s",
        ],
        ["round wall s (net)", r["net_round_wall_s"]],
        ["server I/O threads (net)", r.get("net_server_io_threads", 1)],
        [
            "client processes (net): all / hosting the crashing clients",
            f"{r.get('net_client_processes', '-')} / {r.get('net_crash_processes', '-')}",
        ],
        ["round wall s (processes, same run)", r["processes_wall_s"]],
        ["wall ratio net / processes (target <= 1.5)", r["wall_ratio_net_over_processes"]],
        ["server peak RSS above baseline MB (net; largest over the runs)", r["server_peak_rss_mb"]],
        [
            "server peak RSS above baseline MB (processes; largest over the runs)",
            r["processes_server_peak_rss_mb"],
        ],
        ["server traced peak MB, the server's steps (net)", r["server_traced_peak_mb"]],
        ["3 x 4m bytes, MB", r["bound_3x4m_mb"]],
        [
            "(net - processes) peak RSS per connection, kB",
            r["net_rss_over_processes_per_connection_kb"],
        ],
        ["message bytes per surviving client", r["message_bytes_per_survivor"]],
        ["framing overhead", r["framing_overhead"]],
        ["TLS + framing overhead on TCP (target <= 2%)", r["tls_tcp_overhead"]],
    ]
    net_p, base_p = r["net_phase_wall_s"], r["processes_phase_wall_s"]
    for point, what in (("connected", "TLS handshake done"), ("advertised", "keys sent")):
        j = r["net_join_s"].get(point)
        if j is not None:
            rows.append(
                [
                    f"net: {what}, s after the round opened (median / max)",
                    f"{j['median']:.2f} / {j['max']:.2f}",
                ]
            )
    phases = [
        [
            "client processes start (before the round; net only)",
            r["net_client_processes_start_s"],
            "-",
        ]
    ]
    phases += [[k, net_p.get(k, 0.0), base_p.get(k, 0.0)] for k in dict.fromkeys([*net_p, *base_p])]
    return (
        f"## net\n\nSecAgg+ semi-honest, n={r['clients']}, m={r['elements']:.0e}, "
        f"k={r['neighbors']}, t={r['threshold']}, 10% of the clients SIGKILLed "
        f"{r['crash_point']}\n\n"
        + markdown_table(["measure", "value"], rows)
        + "\n\nPhase walls (s), both engines in the same run:\n\n"
        + markdown_table(["phase", "net", "processes"], phases)
    )
