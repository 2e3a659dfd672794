"""``he_sum``: one complete homomorphic-summation round, in process, through the wire bytes.

Drives the real :class:`~secagg.he.client.HEClient`, :class:`~secagg.he.server.HEServer`
and :class:`~secagg.he.decryptor.HEDecryptor` state machines; every message goes
through its envelope bytes (and the optional observer).  This is the high-level
API for the training loop and the simulator.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import AbortedError, ParameterError
from secagg.he.client import HEClient, quantization_spec
from secagg.he.decryptor import HEDecryptor
from secagg.he.envelope import EnvelopeKind, decode_envelope
from secagg.he.keys import ContextKind, EncryptionMode, HEContext, HEKeys, generate_keys
from secagg.he.params import HEParams, KeyCustody, Preset, Scheme, resolve_params
from secagg.he.server import HEServer
from secagg.he.session import HESession
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.primitives.sign import SigningKey

__all__ = ["DECRYPTOR_ID", "HESumResult", "Observer", "he_sum"]

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

    def __post_init__(self) -> None:
        if self.aborted != (self.sum is None):
            raise ParameterError("sum is None exactly when the round aborted")
        object.__setattr__(self, "timings", types.MappingProxyType(dict(self.timings)))

    @property
    def mean(self) -> npt.NDArray[np.float64] | None:
        """``sum / count`` (``None`` if aborted)."""
        if self.sum is None or self.count == 0:
            return None
        return self.sum / self.count


def _check_inputs(
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


def he_sum(
    inputs: Mapping[int, npt.ArrayLike],
    *,
    scheme: Scheme,
    preset: Preset | HEParams | None = None,
    custody: KeyCustody = KeyCustody.SEPARATE_DECRYPTOR,
    dropouts: Collection[int] = (),
    partial_dropouts: Mapping[int, int] | None = None,
    observer: Observer | None = None,
    rng: RandomSource | None = None,
    keys: HEKeys | None = None,
    round: int = 0,
    max_ciphertexts_per_chunk: int = 64,
    min_contributors: int = 2,
    n_threads: int = 2,
) -> HESumResult:
    """Homomorphically sum client vectors; only the aggregate is decrypted.

    Parameters
    ----------
    inputs:
        Client id (``>= 1``) -> 1-D vector, all the same length.  CKKS: reals with
        ``|x| <= params.clip``.  BFV: integer arrays in ``[0, 2^value_bits)``
        (summed exactly) or float arrays (quantized with
        :func:`~secagg.he.client.quantization_spec`, then dequantized).
    scheme:
        :class:`Scheme`.
    preset:
        A :class:`Preset`, a custom :class:`HEParams`, or ``None`` for the
        scheme's default preset.
    custody:
        :class:`KeyCustody`.
    dropouts:
        Clients that never send (they are not in the sum).
    partial_dropouts:
        Client id -> number of chunks it sends before dropping (an incomplete
        upload is discarded by the server).
    observer:
        Called with every protocol message (see :data:`Observer`).
    rng:
        Randomness for session id, identity keys and stochastic rounding.
        (SEAL's key and encryption randomness comes from SEAL's own CSPRNG.)
    keys:
        Reuse an existing key pair (else a fresh one is generated).
    round, max_ciphertexts_per_chunk, min_contributors, n_threads:
        See :class:`~secagg.he.session.HESession`; ``n_threads`` is TenSEAL's.

    Raises
    ------
    ParameterError
        Bad inputs or parameters (including more clients than ``max_clients``).

    Returns
    -------
    HESumResult
        ``aborted=True`` (and no sum) when fewer than ``min_contributors``
        clients complete their upload.
    """
    t_wall = time.perf_counter()
    params = resolve_params(scheme, preset)
    arrays, length, integer = _check_inputs(inputs, scheme)
    if not isinstance(custody, KeyCustody):
        raise ParameterError("custody must be a KeyCustody")
    dropped = set(dropouts)
    partial = dict(partial_dropouts or {})
    unknown = (dropped | set(partial)) - set(arrays)
    if unknown:
        raise ParameterError(f"dropouts name unknown clients {sorted(unknown)}")
    # fork: a seeded source reused for many rounds must not repeat keys or rounding
    src = (rng if rng is not None else SystemRandom()).fork("he-sum")

    t0 = time.process_time()
    if keys is None:
        keys = generate_keys(params, n_threads=n_threads)
    elif not isinstance(keys, HEKeys) or keys.params.param_set_id != params.param_set_id:
        raise ParameterError("keys were generated for another parameter set")
    keygen_s = time.process_time() - t0

    ids = sorted(arrays)
    signing = {cid: SigningKey.generate(src.child(f"he-identity/{cid}")) for cid in ids}
    server_key = SigningKey.generate(src.child("he-identity/server"))
    session = HESession(
        params=params,
        key_id=keys.key_id,
        custody=custody,
        session_id=src.random_bytes(16),
        round=round,
        vector_length=length,
        client_keys={cid: k.public for cid, k in signing.items()},
        server_key=server_key.public,
        max_ciphertexts_per_chunk=max_ciphertexts_per_chunk,
        min_contributors=min_contributors,
    )
    for cid, k in partial.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < session.chunk_count:
            raise ParameterError(
                f"partial dropout of client {cid} must send 0..{session.chunk_count - 1} chunks"
            )

    # Client contexts: secret context only where custody gives clients the key.
    # Clients that hold the secret key anyway encrypt with it (SEAL symmetric
    # encryption: same ciphertext format, about half the CPU of public-key).
    if custody is KeyCustody.SHARED_CLIENT_KEY:
        client_ctx = HEContext.from_bytes(
            keys.secret_context, kind=ContextKind.SECRET, n_threads=n_threads,
            encryption=EncryptionMode.SECRET_KEY,
        )
    else:
        client_ctx = HEContext.from_bytes(
            keys.public_context, kind=ContextKind.PUBLIC, n_threads=n_threads,
            encryption=EncryptionMode.PUBLIC_KEY,
        )
    server = HEServer(
        session=session,
        public_context=keys.public_context,
        signing_key=server_key,
        n_threads=n_threads,
    )

    enc_s = 0.0
    server_s = 0.0
    sent: dict[int, int] = {}
    n_ct = session.ciphertext_count
    quant = quantization_spec(params) if scheme is Scheme.BFV and not integer else None
    for cid in ids:
        if cid in dropped:
            continue
        client = HEClient(
            client_id=cid,
            session=session,
            context=client_ctx,
            signing_key=signing[cid],
            rng=src.child(f"he-client/{cid}"),
        )
        limit = partial.get(cid, session.chunk_count)
        if limit == 0:
            continue
        t0 = time.process_time()
        if quant is not None:
            envelopes = client.encrypt_quantized(arrays[cid])[:limit]
        else:
            envelopes = client.encrypt(arrays[cid])[:limit]
        enc_s += time.process_time() - t0
        sent[cid] = sum(len(e) for e in envelopes)
        for e in envelopes:
            if observer is not None:
                observer("to_server", cid, e)
            t0 = time.process_time()
            server.receive(e)
            server_s += time.process_time() - t0

    def result(*, decrypt_s: float, **outcome: Any) -> HESumResult:
        """The round's result: ``outcome`` (sum, count, contributors, abort) plus
        what every round reports the same way."""
        return HESumResult(
            scheme=scheme,
            params=params,
            custody=custody,
            ciphertexts_per_client=n_ct,
            server_peak_ciphertexts=server.peak_ciphertexts,
            timings={
                "keygen_s": keygen_s,
                "client_encrypt_s": enc_s,
                "server_s": server_s,
                "decrypt_s": decrypt_s,
                "wall_s": time.perf_counter() - t_wall,
            },
            **outcome,
        )

    t0 = time.process_time()
    try:
        aggregate = server.finalize()
    except AbortedError as exc:
        server_s += time.process_time() - t0
        return result(
            sum=None,
            total=None,
            count=0,
            contributors=(),
            aborted=True,
            abort_reason=str(exc),
            error_bound=0.0,
            bytes_per_client_upload=_mean_upload(sent, server.contributors),
            decrypt_s=0.0,
        )
    server_s += time.process_time() - t0

    t0 = time.process_time()
    decryptor = HEDecryptor(
        session=session, secret_context=keys.secret_context, n_threads=n_threads
    )
    for a in aggregate:
        if observer is not None:
            if custody is KeyCustody.SEPARATE_DECRYPTOR:
                observer("to_decryptor", DECRYPTOR_ID, a)
            else:
                for cid in server.contributors:
                    observer("to_client", cid, a)
        decryptor.receive(a)
    agg = decryptor.result()
    decrypt_s = time.process_time() - t0

    total: npt.NDArray[np.int64] | None = None
    if scheme is Scheme.CKKS:
        fsum = np.asarray(agg.values, dtype=np.float64)
        bound = params.ckks_error_bound(agg.count)
    else:
        total = np.asarray(agg.values, dtype=np.int64)
        bound = 0.0
        if quant is not None:
            fsum = quant.dequantize_sum(total.astype(np.uint64), agg.count)
        else:
            fsum = total.astype(np.float64)
    return result(
        sum=fsum,
        total=total,
        count=agg.count,
        contributors=agg.contributors,
        aborted=False,
        abort_reason=None,
        error_bound=bound,
        bytes_per_client_upload=_mean_upload(sent, agg.contributors),
        decrypt_s=decrypt_s,
    )


def _mean_upload(sent: Mapping[int, int], contributors: tuple[int, ...]) -> float:
    vals = [sent[c] for c in contributors] if contributors else list(sent.values())
    return float(sum(vals)) / len(vals) if vals else 0.0


def decode_kind(data: bytes) -> EnvelopeKind:
    """The kind of an envelope (for observers that classify traffic)."""
    return decode_envelope(data).kind

