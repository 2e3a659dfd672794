"""The result type of an HE summation round and the checks on its inputs.

The round itself is driven by :func:`secagg.runtime.he_sum` (the one driver of
every engine); this core module only defines what it returns
(:class:`HESumResult`) and validates inputs (:func:`check_he_inputs`).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.he.envelope import EnvelopeKind, decode_envelope
from secagg.he.params import HEParams, KeyCustody, Scheme

__all__ = ["DECRYPTOR_ID", "HESumResult", "Observer", "check_he_inputs", "mean_upload"]

#: Observer callback: (direction, party id, wire bytes).  Directions: "to_server"
#: (client uploads), "to_decryptor" (aggregates, SEPARATE_DECRYPTOR), "to_client"
#: (aggregates delivered to clients, SHARED_CLIENT_KEY).
Observer = Callable[[str, int, bytes], None]
#: Party id used for the decryptor in observer calls.
DECRYPTOR_ID = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class HESumResult:
    """Outcome of :func:`he_sum`.

    Attributes
    ----------
    sum:
        float64 sum over ``contributors``: CKKS decryption (approximate, within
        ``error_bound``), BFV dequantized sum (float inputs) or the exact integer
        sum as float64 (integer inputs).  ``None`` if aborted.
    total:
        BFV only: the exact int64 sum of the encrypted integers (the quantized
        levels for float inputs).  ``None`` for CKKS or if aborted.
    count:
        Number of contributors.
    contributors:
        Their ids, sorted.
    error_bound:
        CKKS: the stated per-coordinate bound for ``count`` summands; BFV: 0.0.
    bytes_per_client_upload:
        Mean bytes a contributing client sent.
    timings:
        CPU seconds: ``keygen_s``, ``client_encrypt_s`` (all clients),
        ``server_s``, ``decrypt_s``; and ``wall_s``.
    rejected:
        Client id -> why the server rejected its authenticated upload
        (:class:`~secagg.errors.RejectedUploadError`): each is a dropout of the
        round, blamed on that client alone (the others' sum is unaffected).
    """

    sum: npt.NDArray[np.float64] | None
    total: npt.NDArray[np.int64] | None
    count: int
    contributors: tuple[int, ...]
    aborted: bool
    abort_reason: str | None
    scheme: Scheme
    params: HEParams
    custody: KeyCustody
    error_bound: float
    bytes_per_client_upload: float
    ciphertexts_per_client: int
    server_peak_ciphertexts: int
    timings: Mapping[str, float] = field(default_factory=dict)
    transcript_digest: str = ""
    engine: str = "inprocess"
    workers: int = 1
    rejected: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aborted != (self.sum is None):
            raise ParameterError("sum is None exactly when the round aborted")
        object.__setattr__(self, "timings", types.MappingProxyType(dict(self.timings)))
        object.__setattr__(self, "rejected", types.MappingProxyType(dict(self.rejected)))

    @property
    def mean(self) -> npt.NDArray[np.float64] | None:
        """``sum / count`` (``None`` if aborted)."""
        if self.sum is None or self.count == 0:
            return None
        return self.sum / self.count


def check_he_inputs(
    inputs: Mapping[int, npt.ArrayLike], scheme: Scheme
) -> tuple[dict[int, npt.NDArray[Any]], int, bool]:
    if not isinstance(inputs, Mapping) or not inputs:
        raise ParameterError("inputs must be a non-empty mapping client id -> vector")
    arrays: dict[int, npt.NDArray[Any]] = {}
    for cid, x in inputs.items():
        if isinstance(cid, bool) or not isinstance(cid, int) or not 1 <= cid < 1 << 32:
            raise ParameterError("client ids must be integers in [1, 2^32)")
        arr = np.asarray(x)
        if arr.ndim != 1 or arr.shape[0] < 1:
            raise ParameterError(f"input of client {cid} must be a non-empty 1-D array")
        arrays[cid] = arr
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1:
        raise ParameterError("all inputs must have the same length")
    kinds = {bool(np.issubdtype(a.dtype, np.integer)) for a in arrays.values()}
    if len(kinds) != 1:
        raise ParameterError("inputs must be all integer or all float arrays")
    integer = kinds.pop()
    if scheme is Scheme.CKKS:
        integer = False
    return arrays, lengths.pop(), integer


def mean_upload(sent: Mapping[int, int], contributors: tuple[int, ...]) -> float:
    vals = [sent[c] for c in contributors] if contributors else list(sent.values())
    return float(sum(vals)) / len(vals) if vals else 0.0


def decode_kind(data: bytes) -> EnvelopeKind:
    """The kind of an envelope (for observers that classify traffic)."""
    return decode_envelope(data).kind

