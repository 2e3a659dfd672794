"""``secagg simulate --protocol he-ckks|he-bfv``: one HE round as a JSON dict.

:mod:`secagg.sim.cli` owns the flags and dispatches here with its argparse
namespace (protocol, clients, length, dropout, drop_phase, seed, bits, engine,
workers, ray_address, ...); the round runs through :func:`secagg.runtime.he_sum`
on the chosen engine.  Inputs are synthetic, drawn from the (seeded) CSPRNG stream: CKKS uniform
in ``[-clip, clip]``, BFV uniform integers in ``[0, 2^value_bits)``.

``--bits B`` (BFV) sets the input width ``value_bits = B``; more than the preset's
``max_clients`` clients raises ``max_clients``.  Either goes through the parameter
checks, so an overflowing choice is refused with the reason.

Dropouts (``--dropout F``, the same selection as the masking simulator): with
``--drop-before share-keys|masked-input`` the dropped clients never upload; with
``consistency|unmasking`` they had already uploaded, and HE needs nothing more
from them, so they stay in the sum.

The simulator records the key holder's inbox and checks
(:func:`check_key_holder_inbox`) that it only ever received aggregate envelopes,
none carrying a client's ciphertext bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from secagg.errors import InsecureConfigurationWarning, ParameterError, RemoteProtocolError
from secagg.he.envelope import EnvelopeKind, decode_envelope
from secagg.he.params import HEParams, KeyCustody, Preset, Scheme
from secagg.phase import Phase
from secagg.primitives.rand import (
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
    random_uint64,
    random_unit_float64,
)
from secagg.sim.report import SCHEMA

__all__ = ["check_key_holder_inbox", "run"]

#: A client that drops before one of these never uploads; later, it already had.
_EARLY_PHASES = frozenset({Phase.SHARE_KEYS, Phase.MASKED_INPUT})


def check_key_holder_inbox(client_uploads: Iterable[bytes], inbox: Iterable[bytes]) -> None:
    """Verify that the key holder never received an individual ciphertext.

    Every message in ``inbox`` must decode as an ``AGGREGATE_CHUNK`` and its
    payload must differ from every client upload's payload.

    Raises
    ------
    RemoteProtocolError
        If a client chunk (or a client's ciphertext bytes inside an aggregate)
        reached the key holder.
    """
    client_payloads = {
        hashlib.sha256(decode_envelope(u).payload).digest() for u in client_uploads
    }
    for msg in inbox:
        env = decode_envelope(msg)
        if env.kind is not EnvelopeKind.AGGREGATE_CHUNK:
            raise RemoteProtocolError("the key holder received a client chunk")
        if hashlib.sha256(env.payload).digest() in client_payloads:
            raise RemoteProtocolError("the key holder received a client's ciphertext")


def _params(scheme: Scheme, preset: Preset, n: int, bits: int | None) -> HEParams:
    params = preset.params
    changes: dict[str, Any] = {}
    if n > params.max_clients:
        changes["max_clients"] = n
    if bits is not None:
        if scheme is Scheme.CKKS:
            raise ParameterError("--bits applies to BFV (input width); CKKS encrypts floats")
        changes["value_bits"] = bits
    if changes:
        changes["name"] = f"{params.name}-custom"
        params = dataclasses.replace(params, **changes)  # re-validated
    return params


def _get(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one simulated HE round; returns the JSON-serialisable report.

    Raises
    ------
    ParameterError
        Unknown protocol, fewer than 2 clients, or parameters the checks refuse.
    """
    from secagg.runtime.api import he_sum
    from secagg.sim.runtime import choose_dropouts

    protocol = getattr(args, "protocol", None)
    if protocol not in ("he-ckks", "he-bfv"):
        raise ParameterError(f"not an HE protocol: {protocol!r}")
    scheme = Scheme.CKKS if protocol == "he-ckks" else Scheme.BFV
    preset_name = getattr(args, "preset", None)
    preset = (
        Preset(preset_name)
        if preset_name
        else (Preset.CKKS_4096 if scheme is Scheme.CKKS else Preset.BFV_4096)
    )
    custody = KeyCustody(getattr(args, "custody", None) or KeyCustody.SEPARATE_DECRYPTOR.value)
    # an unset flag takes its default; a set one is used as given (0 is refused, not replaced)
    n = int(_get(args, "clients", 100))
    length = int(_get(args, "length", 1000))
    dropout = float(_get(args, "dropout", 0.0))
    drop_phase = str(_get(args, "drop_phase", Phase.MASKED_INPUT.value))
    seed = getattr(args, "seed", None)
    bits = getattr(args, "bits", None)
    if n < 2 or length < 1:
        raise ParameterError(f"--clients must be >= 2 and --length >= 1 (got {n} and {length})")
    if not 0.0 <= dropout < 1.0:
        raise ParameterError(f"--dropout must be in [0, 1) (got {dropout})")
    params = _params(scheme, preset, n, bits)
    rng: RandomSource
    if seed is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureConfigurationWarning)
            rng = InsecureDeterministicRandom(int(seed))
    else:
        rng = SystemRandom()

    wall0 = time.perf_counter()
    ids = list(range(1, n + 1))
    inputs: dict[int, np.ndarray] = {}
    for u in ids:
        src = rng.child(f"input/{u}")
        if scheme is Scheme.CKKS:
            inputs[u] = (2.0 * random_unit_float64(src, length) - 1.0) * params.clip
        else:
            mask = np.uint64((1 << params.value_bits) - 1)
            inputs[u] = (random_uint64(src, length) & mask).astype(np.int64)
    dropped = choose_dropouts(ids, dropout, rng.child("dropouts"))
    absent = dropped if Phase(drop_phase) in _EARLY_PHASES else frozenset()

    uploads: list[bytes] = []
    inbox: list[bytes] = []

    def observer(direction: str, party: int, data: bytes) -> None:
        if direction == "to_server":
            uploads.append(data)
        elif direction in ("to_decryptor", "to_client"):
            inbox.append(data)

    res = he_sum(
        inputs,
        scheme=scheme,
        preset=params,
        custody=custody,
        dropouts=absent,
        observer=observer,
        rng=rng.child("he"),
        engine=getattr(args, "engine", None) or "inprocess",
        workers=getattr(args, "workers", None),
        ray_address=getattr(args, "ray_address", None),
        phase_timeout=getattr(args, "phase_timeout", None),
    )
    check_key_holder_inbox(uploads, inbox)
    survivors = [u for u in ids if u not in absent]
    exact: bool | None = None
    max_abs_error: float | None = None
    if not res.aborted and res.sum is not None:
        expected = np.sum([inputs[u] for u in res.contributors], axis=0)
        if scheme is Scheme.BFV:
            exact = bool(res.total is not None and np.array_equal(res.total, expected))
        else:  # CKKS is approximate: judged by within_error_bound, never "exact"
            max_abs_error = float(np.max(np.abs(res.sum - expected)))
    ct_mem = 2 * params.poly_modulus_degree * (len(params.coeff_mod_bit_sizes) - 1) * 8
    client_total = float(res.timings["client_encrypt_s"])
    server_total = float(res.timings["server_s"])
    within = None if max_abs_error is None else bool(max_abs_error <= res.error_bound)
    return {
        "schema": SCHEMA,
        "family": "he",
        "protocol": protocol,
        "security": None,
        "engine": res.engine,
        "workers": res.workers,
        "transcript_digest": res.transcript_digest,
        "transcript_note": "HE ciphertexts carry SEAL's own encryption randomness: the "
        "digest differs between runs even with --seed",
        "preset": params.name,
        "custody": custody.value,
        "clients": n,
        "length": length,
        "bits": params.value_bits if scheme is Scheme.BFV else None,
        "neighbors": None,
        "threshold": None,
        "min_contributors": 2,
        "dropout": dropout,
        "dropped_before": drop_phase if dropped else None,
        "dropped": len(dropped),
        "survivors": 0 if res.aborted else len(survivors),
        "aborted": res.aborted,
        "abort_reason": res.abort_reason,
        "exact": exact,
        "correct": exact if scheme is Scheme.BFV else within,
        "max_abs_error": max_abs_error,
        "error_bound": res.error_bound if not res.aborted else None,
        "within_error_bound": within,
        "client_cpu_s": {"encrypt": client_total / max(1, len(survivors))},
        "server_cpu_s": {"aggregate": server_total},
        "client_cpu_total_s": client_total,
        "server_cpu_total_s": server_total,
        "total_cpu_s": client_total + server_total + float(res.timings["decrypt_s"]),
        "keygen_cpu_s": float(res.timings["keygen_s"]),
        "decrypt_cpu_s": float(res.timings["decrypt_s"]),
        "bytes_per_client_upload": res.bytes_per_client_upload,
        "bytes_per_param": res.bytes_per_client_upload / length,
        "ciphertexts_per_client": res.ciphertexts_per_client,
        "server_peak_mb": res.server_peak_ciphertexts * ct_mem / 2**20,
        "key_holder_saw_only_aggregates": True,
        "wall_s": time.perf_counter() - wall0,
        "seed": seed,
    }
