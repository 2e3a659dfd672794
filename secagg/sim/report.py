"""The one JSON schema of ``secagg simulate`` and its human summary.

Every protocol (``secagg``, ``secagg+``, ``he-ckks``, ``he-bfv``, and either under
``--dp``; ``lightsecagg``) on every engine returns a dict that :func:`check_report` accepts: the
common keys of :data:`COMMON` with the same meaning and type everywhere, plus the
keys of its family (:data:`FAMILY`: ``masking``, ``he``, ``dp``, ``net`` or
``lightsecagg``) and nothing
else.  ``schema`` carries :data:`SCHEMA` (bump the number when a key changes
meaning or type, or is removed).  benchmarks/README.md documents every key.

:func:`summary` renders the same dict as a few lines for a person.
"""

from __future__ import annotations

from typing import Any

from secagg.errors import ParameterError

__all__ = ["COMMON", "FAMILY", "SCHEMA", "check_report", "family_of", "humanize_bytes", "summary"]

#: Name and version of the schema; every report carries it under ``schema``.
SCHEMA = "secagg.simulate/1"

_NUM = (int, float)
_NONE = type(None)

#: key -> allowed types, present in every report.
COMMON: dict[str, tuple[type, ...]] = {
    "schema": (str,),
    "family": (str,),  # "masking" | "he" | "dp"
    "protocol": (str,),  # secagg | secagg+ | he-ckks | he-bfv (dp: the masking protocol below)
    "security": (str, _NONE),  # semi-honest | malicious; None for HE
    "engine": (str,),
    "workers": (int, _NONE),
    "transcript_digest": (str, _NONE),
    "clients": (int,),
    "length": (int,),
    "bits": (int, _NONE),  # modulus exponent (masking, dp); BFV input width; None for CKKS
    "neighbors": (int, _NONE),  # SecAgg+ graph degree k (SecAgg: n - 1); None for HE
    "threshold": (int, _NONE),  # Shamir threshold t; None for HE
    "dropout": _NUM,
    "dropped_before": (str, _NONE),  # the phase the dropped clients never reached; None: no drops
    "dropped": (int,),  # how many clients dropped
    "survivors": (int,),  # inputs in the released sum (0 when aborted)
    "aborted": (bool,),
    "abort_reason": (str, _NONE),
    "exact": (bool, _NONE),  # sum bit-exact; None where not checkable (aborted, CKKS, DP)
    "correct": (bool, _NONE),  # the one verdict: exact, or CKKS within its bound; None: aborted/DP
    "client_cpu_total_s": (*_NUM, _NONE),
    "server_cpu_total_s": (*_NUM, _NONE),
    "total_cpu_s": (*_NUM, _NONE),
    "bytes_per_client_upload": (*_NUM, _NONE),  # None when aborted before any upload count
    "wall_s": _NUM,
    "seed": (int, _NONE),
}

#: family -> key -> allowed types, present in that family's reports only.
FAMILY: dict[str, dict[str, tuple[type, ...]]] = {
    "masking": {
        "client_cpu_s": (dict,),
        "server_cpu_s": (dict,),
        "client_cpu_per_client_s": _NUM,
        "bytes_per_client_download": _NUM,
        "server_peak_mb": (*_NUM, _NONE),
        "server_peak_rss_mb": (*_NUM, _NONE),
        "memory_note": (str,),
        "phase_wall_s": (dict,),
        "round_wall_s": _NUM,
        "sets": (dict,),
    },
    "he": {
        "transcript_note": (str,),
        "preset": (str,),
        "custody": (str,),
        "min_contributors": (int,),
        "max_abs_error": (*_NUM, _NONE),
        "error_bound": (*_NUM, _NONE),
        "within_error_bound": (bool, _NONE),
        "client_cpu_s": (dict,),
        "server_cpu_s": (dict,),
        "keygen_cpu_s": _NUM,
        "decrypt_cpu_s": _NUM,
        "bytes_per_param": (*_NUM, _NONE),
        "ciphertexts_per_client": (int,),
        "server_peak_mb": (*_NUM, _NONE),
        "key_holder_saw_only_aggregates": (bool,),
    },
    "net": {  # --engine net (secagg.net): client processes over mutual TLS
        "crash": _NUM,
        "crashed": (dict,),
        "killed_by_sigkill": (int,),
        "total_sha256": (str, _NONE),
        "sets": (dict,),
        "phases": (dict,),
        "finalize_wall_s": (*_NUM, _NONE),
        "server_peak_mb": (*_NUM, _NONE),
        "server_max_rss_mb": (*_NUM, _NONE),
        "server_round_peak_rss_mb": (*_NUM, _NONE),
        "survivor_message_bytes_to_server": (*_NUM, _NONE),
        "survivor_frame_bytes_to_server": (*_NUM, _NONE),
        "survivor_tcp_bytes_to_server": (*_NUM, _NONE),
        "message_bytes_to_server": _NUM,
        "frame_bytes_to_server": (*_NUM, _NONE),
        "tcp_bytes_to_server": (*_NUM, _NONE),
        "tcp_counted": (bool,),
        "message_bytes_to_clients": (*_NUM, _NONE),
        "tcp_bytes_to_clients": (*_NUM, _NONE),
        "cut": (dict,),
        "rejections": (dict,),
        "client_status": (dict,),
        "client_processes": (int,),
        "crash_processes": (int,),  # of client_processes, those hosting crashing clients
        "certs_s": (*_NUM, _NONE),
        "client_processes_start_s": (*_NUM, _NONE),  # before the round clock
        "join_s": (dict,),  # round open -> connected / hello / advertised, per client
        "round_wall_s": (*_NUM, _NONE),
    },
    "lightsecagg": {  # LightSecAgg: threshold and neighbors are None; its own N, T, U, D
        "privacy_T": (int,),
        "target_U": (int,),
        "dropout_tolerance_D": (int,),
        "client_cpu_s": (dict,),
        "server_cpu_s": (dict,),
        "client_cpu_per_client_s": _NUM,
        "bytes_per_client_download": _NUM,
        "server_peak_mb": (*_NUM, _NONE),
        "phase_wall_s": (dict,),
        "round_wall_s": _NUM,
        "sets": (dict,),
        "server_rejections": (int,),
        "client_errors": (int,),
    },
    "dp": {
        "randomness": (str,),
        "dp": (dict,),
        "stats": (dict,),
    },
}


def family_of(protocol: str, dp: str | None = None) -> str:
    """The report family of a protocol (and ``--dp`` choice)."""
    if dp not in (None, "none"):
        return "dp"
    if protocol == "lightsecagg":
        return "lightsecagg"
    return "he" if protocol.startswith("he-") else "masking"


def check_report(report: dict[str, Any]) -> None:
    """Check ``report`` against :data:`SCHEMA`.

    Raises
    ------
    ParameterError
        Naming every missing key, key of the wrong type, and unknown key.
    """
    problems: list[str] = []
    if report.get("schema") != SCHEMA:
        problems.append(f"schema is {report.get('schema')!r}, expected {SCHEMA!r}")
    fam = report.get("family")
    if fam not in FAMILY:
        problems.append(f"unknown family {fam!r}")
        fields = dict(COMMON)
    else:
        fields = {**COMMON, **FAMILY[fam]}
    for key, types in fields.items():
        if key not in report:
            problems.append(f"missing {key}")
        elif not isinstance(report[key], types) or (
            isinstance(report[key], bool) and bool not in types
        ):
            problems.append(f"{key} is {type(report[key]).__name__}")
    problems += [f"unknown key {k}" for k in report if k not in fields]
    if problems:
        raise ParameterError("report does not match " + SCHEMA + ": " + "; ".join(problems))


def humanize_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'`` (binary units)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _cpu(seconds: object) -> str:
    return "n/a" if not isinstance(seconds, (int, float)) else f"{seconds:.2f} s"


def summary(res: dict[str, Any]) -> str:
    """A few lines for a person reading a terminal (JSON is for machines)."""
    fam = res["family"]
    n, m = res["clients"], res["length"]
    if fam == "he":
        what = f"{res['protocol']} ({res['preset']}, {res['custody']})"
    elif fam == "dp":
        what = f"{res['dp']['mechanism']} distributed DP over {res['protocol']}"
    elif fam == "net":
        what = f"{res['protocol']} over mutual TLS ({res['client_processes']} client processes)"
    elif fam == "lightsecagg":
        what = (f"lightsecagg, T={res['privacy_T']} U={res['target_U']} "
                f"D={res['dropout_tolerance_D']}")
    else:
        what = res["protocol"]
    if res["neighbors"] is not None:
        what += f", k={res['neighbors']} t={res['threshold']}"
    lines = [f"{what}: sum of {n} clients x {m} elements"]
    drop = f"{res['dropped']} " + ("crashed" if fam == "net" else "dropped")
    if res["dropped_before"]:
        drop += f" (before {res['dropped_before']})"
    if res["aborted"]:
        lines.append(f"ABORTED, nothing released: {res['abort_reason']} [{drop}]")
    else:
        lines.append(f"survivors: {res['survivors']} of {n} summed [{drop}]")
        if fam == "he" and res["protocol"] == "he-ckks":
            ok = "within" if res["within_error_bound"] else "OUTSIDE"
            lines.append(
                f"result: approximate (CKKS), max error {res['max_abs_error']:.2e} "
                f"{ok} the bound {res['error_bound']:.2e}"
            )
        elif fam == "dp":
            d = res["dp"]
            lines.append(
                f"result: noisy mean (DP), RMSE {d['rmse_vs_true_mean']:.3g} vs expected noise "
                f"{d['expected_noise_rmse']:.3g}; epsilon {d['epsilon_realized']:.3g} "
                f"(target {d['epsilon_target']:.3g}), delta {d['delta']:.0e}"
            )
        else:
            lines.append("result: exact" if res["exact"] else "result: WRONG (sum not exact)")
    cpu = (
        f"CPU: clients {_cpu(res['client_cpu_total_s'])}, "
        f"server {_cpu(res['server_cpu_total_s'])}"
    )
    up = res["bytes_per_client_upload"]
    traffic = "upload n/a" if up is None else f"{humanize_bytes(up)}/client up"
    lines.append(f"{cpu}; {traffic}; wall {res['wall_s']:.2f} s on {res['engine']}")
    return "\n".join(lines)
