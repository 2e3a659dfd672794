"""Key generation, versioned context envelopes and the TenSEAL operations we use.

``protocols/wire/he_envelope.md`` §2 defines the context envelope.  TenSEAL is
imported lazily (``secagg[he]``); importing this module does not load it.

Security notes
--------------
* :class:`ContextKind.PUBLIC` envelopes carry the public key only (no secret,
  relinearisation or Galois keys).  Loading one that holds a secret key is
  refused, so a server built from a public envelope can never decrypt.
* SEAL draws key material and encryption randomness from its own CSPRNG (seeded
  from the OS), not from :class:`~secagg.primitives.rand.RandomSource`.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, LocalProtocolError, ParameterError
from secagg.he.params import HEParams, Scheme
from secagg.he.payload import validate_tensor_payload

__all__ = [
    "CONTEXT_MAGIC",
    "CONTEXT_VERSION",
    "ContextKind",
    "EncryptionMode",
    "HEContext",
    "HEKeys",
    "decode_params",
    "generate_keys",
    "key_id_for",
]

CONTEXT_MAGIC = b"SHC1"
CONTEXT_VERSION = 1
_KEY_ID_LABEL = b"secagg/he key-id v1"
_MAX_PARAMS = 4096
#: Largest TenSEAL context blob we accept (contexts are ~0.1-2 MB).
_MAX_CONTEXT = 1 << 28


def _ts() -> Any:
    return require("tenseal", "he")


class ContextKind(enum.Enum):
    """Whether a serialized context holds the secret key."""

    PUBLIC = 1
    SECRET = 2


class EncryptionMode(enum.Enum):
    """How a loaded context encrypts (``protocols/he_sum.md`` §4, §8).

    ``PUBLIC_KEY``: SEAL's asymmetric encryption (anyone with the public context).
    ``SECRET_KEY``: SEAL's symmetric encryption ``(-a·s + Δm + e, a)``, for a party
    that holds the secret key anyway (SHARED_CLIENT_KEY clients).  Same ciphertext
    format and parameters, so the server adds both kinds alike; about half the CPU
    per ciphertext (no public-key product at the special-prime level and no
    mod-switch) and less fresh noise.
    """

    PUBLIC_KEY = 1
    SECRET_KEY = 2


#: TenSEALContextProto field 4 (encryption_type) = 1 (symmetric), as TenSEAL
#: itself serializes a symmetric context; proto3 omits the field when it is 0.
_SYMMETRIC_FIELD = b"\x20\x01"


def key_id_for(public_tenseal_bytes: bytes) -> bytes:
    """``SHA-256("secagg/he key-id v1" || public TenSEAL bytes)[:16]``."""
    return hashlib.sha256(_KEY_ID_LABEL + bytes(public_tenseal_bytes)).digest()[:16]


def decode_params(data: bytes) -> HEParams:
    """Parse the canonical parameter encoding (``he_envelope.md`` §3).

    Raises
    ------
    DecodeError
        On malformed bytes or a parameter set that fails validation.
    """
    r = Reader(data)
    try:
        scheme = Scheme(r.u8())
    except ValueError:
        raise DecodeError("unknown scheme") from None
    n = r.u32()
    count = r.u8()
    bits = tuple(r.u8() for _ in range(count))
    scale_bits = r.u8()
    t = int.from_bytes(r.blob(16), "big")
    max_clients = r.u32()
    (clip,) = struct.unpack(">d", r.raw(8))
    value_bits = r.u8()
    r.finish()
    try:
        params = HEParams(
            scheme=scheme,
            poly_modulus_degree=n,
            coeff_mod_bit_sizes=bits,
            scale_bits=scale_bits,
            plain_modulus=t,
            max_clients=max_clients,
            clip=clip,
            value_bits=value_bits,
        )
    except ParameterError as exc:
        raise DecodeError(f"invalid parameter set: {exc}") from None
    if params.canonical_bytes() != bytes(data):
        raise DecodeError("non-canonical parameter encoding")
    return params


def _new_tenseal_context(params: HEParams, n_threads: int) -> Any:
    ts = _ts()
    if params.scheme is Scheme.CKKS:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            n_threads=n_threads,
        )
        ctx.global_scale = 2.0**params.scale_bits
    else:
        ctx = ts.context(
            ts.SCHEME_TYPE.BFV,
            params.poly_modulus_degree,
            plain_modulus=params.plain_modulus,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
            n_threads=n_threads,
        )
    return ctx


def _tenseal_bytes(ctx: Any, *, public_key: bool, secret_key: bool) -> bytes:
    """TenSEAL's serialization of ``ctx`` with the chosen keys (never Galois/relin keys)."""
    return bytes(
        ctx.serialize(
            save_public_key=public_key,
            save_secret_key=secret_key,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )


def _public_bytes(ctx: Any) -> bytes:
    return _tenseal_bytes(ctx, public_key=True, secret_key=False)


def _context_envelope(kind: ContextKind, params: HEParams, public: bytes, secret: bytes) -> bytes:
    w = Writer().raw(CONTEXT_MAGIC).u8(CONTEXT_VERSION).u8(kind.value)
    w.blob(params.canonical_bytes()).raw(key_id_for(public)).blob(public)
    if kind is ContextKind.SECRET:
        w.blob(secret)
    return w.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class HEKeys:
    """Output of :func:`generate_keys`.

    ``public_context`` goes to the server (and through it to the clients);
    ``secret_context`` stays with the key holder (the decryptor, or every client
    in SHARED_CLIENT_KEY custody).  ``repr`` never shows the secret.
    """

    params: HEParams
    key_id: bytes
    public_context: bytes
    secret_context: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.params, HEParams):
            raise ParameterError("params must be HEParams")
        if not isinstance(self.key_id, bytes) or len(self.key_id) != 16:
            raise ParameterError("key_id must be 16 bytes")
        if not isinstance(self.public_context, bytes) or not isinstance(self.secret_context, bytes):
            raise ParameterError("contexts must be bytes")


def generate_keys(params: HEParams, *, n_threads: int = 2) -> HEKeys:
    """Generate a fresh key pair for ``params`` and its two context envelopes.

    Parameters
    ----------
    params:
        A validated :class:`HEParams`.
    n_threads:
        TenSEAL worker threads for this context (not serialized).

    Raises
    ------
    ParameterError
        On a bad ``params`` or ``n_threads``.
    MissingExtraError
        If TenSEAL is not installed.
    """
    if not isinstance(params, HEParams):
        raise ParameterError("params must be HEParams")
    _check_threads(n_threads)
    ctx = _new_tenseal_context(params, n_threads)
    public = _public_bytes(ctx)
    secret = _tenseal_bytes(ctx, public_key=True, secret_key=True)
    return HEKeys(
        params=params,
        key_id=key_id_for(public),
        public_context=_context_envelope(ContextKind.PUBLIC, params, public, b""),
        secret_context=_context_envelope(ContextKind.SECRET, params, public, secret),
    )


def _check_threads(n_threads: int) -> None:
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise ParameterError("n_threads must be an integer in [1, 256]")


def _check_matches(ctx: Any, params: HEParams) -> None:
    """The loaded SEAL parameters are exactly ``params`` (scheme, N, primes, t)."""
    try:
        data = ctx.seal_context().data
        key_data, first = data.key_context_data(), data.first_context_data()
        parms = key_data.parms()
        scheme = str(parms.scheme().name)
        n = int(parms.poly_modulus_degree())
        q_all, q_data = int(key_data.total_coeff_modulus()), int(first.total_coeff_modulus())
        half_t = int(first.plain_upper_half_threshold())
    except Exception:
        raise DecodeError("cannot read the context's encryption parameters") from None
    primes = params.primes
    ok = (
        scheme == params.scheme.name
        and n == params.poly_modulus_degree
        # SEAL reports the products as uint64 (their low 64 bits)
        and q_all == math.prod(primes) % 2**64
        and q_data == math.prod(primes[:-1]) % 2**64
        and (params.scheme is Scheme.CKKS or half_t == (params.plain_modulus + 1) // 2)
    )
    if not ok:
        raise DecodeError("the TenSEAL context does not have the declared parameters")


def _first_parms_id(ctx: Any) -> bytes:
    """The ``parms_id`` of the context's first data level, as SEAL serializes it."""
    try:
        words = [int(w) for w in ctx.seal_context().data.first_parms_id()]
    except Exception:
        raise DecodeError("cannot read the context's parms_id") from None
    if len(words) != 4:
        raise DecodeError("unexpected parms_id layout")
    return struct.pack("<4Q", *words)


def _check_loaded_ciphertexts(t: Any, params: HEParams, parms_id: bytes) -> bool:
    """Whether every SEAL ciphertext TenSEAL loaded into ``t`` has fresh metadata.

    Re-checks, on the objects SEAL built, what :mod:`secagg.he.payload` checked on
    the bytes: level (``parms_id``), NTT form, two polynomials, ``N``, ``L`` and
    the exact scale.  Any mismatch means the payload check and SEAL disagree.
    """
    ckks = params.scheme is Scheme.CKKS
    scale = 2.0**params.scale_bits if ckks else 1.0
    data_primes = len(params.coeff_mod_bit_sizes) - 1
    want = list(struct.unpack("<4Q", parms_id))
    for ct in t.ciphertext():
        if not (
            [int(w) for w in ct.parms_id()] == want
            and bool(ct.is_ntt_form()) is ckks
            and int(ct.size()) == 2
            and int(ct.poly_modulus_degree()) == params.poly_modulus_degree
            and int(ct.coeff_modulus_size()) == data_primes
            and float(ct.scale) == scale
        ):
            return False
    return True


def _secret_only_bytes(ctx: Any) -> bytes:
    return _tenseal_bytes(ctx, public_key=False, secret_key=True)



#: Probe values for :func:`_check_key_pair` (exact in BFV, far above CKKS noise).
_PROBE = (3, 1, 4, 1, 5, 9, 2, 6)


def _check_key_pair(ts: Any, secret: bytes, params: HEParams, n_threads: int) -> None:
    """Require that the secret key decrypts what the public key encrypts.

    ``key_id`` binds only the public key, so without this check a secret context
    whose secret-key bytes were corrupted (storage, transfer) loads and then
    decrypts garbage — or, for SHARED_CLIENT_KEY clients, encrypts under a wrong
    key — silently.  Runs on a separate copy of the context (encrypting touches the
    context's state) and costs one load, one encryption and one decryption.

    Raises
    ------
    DecodeError
        If the secret key does not match the public key.
    """
    try:
        ctx = ts.context_from(secret, n_threads=n_threads)
        if params.scheme is Scheme.CKKS:
            ctx.global_scale = 2.0**params.scale_bits
            got = ts.ckks_vector(ctx, [v / 8 for v in _PROBE]).decrypt()
            ok = all(abs(a - v / 8) < 1e-3 for a, v in zip(got, _PROBE, strict=True))
        else:
            got = ts.bfv_vector(ctx, list(_PROBE)).decrypt()
            ok = [int(a) for a in got] == list(_PROBE)
    except Exception:  # TenSEAL/SEAL raise assorted types
        raise DecodeError("the secret context cannot decrypt") from None
    if not ok:
        raise DecodeError("the secret key does not match the public key")

def _symmetric_context(ts: Any, asymmetric: Any, secret: bytes, n_threads: int) -> Any:
    """Reload an (already validated) secret TenSEAL context with symmetric encryption.

    TenSEAL has no setter for the encryption type; it is field 4 of the context
    protobuf, absent (0, asymmetric) in our secret blobs, and protobuf's
    last-value-wins rule makes the appended field set it.  Confirmed afterwards:
    the reloaded context serializes exactly as the asymmetric one plus that field.
    """
    try:
        ctx = ts.context_from(secret + _SYMMETRIC_FIELD, n_threads=n_threads)
        ok = _secret_only_bytes(ctx) == _secret_only_bytes(asymmetric) + _SYMMETRIC_FIELD
    except Exception:
        raise LocalProtocolError("TenSEAL could not load the context for secret-key use") from None
    if not ok or not ctx.has_secret_key():
        raise LocalProtocolError("TenSEAL did not switch the context to secret-key encryption")
    return ctx


class HEContext:
    """A loaded TenSEAL context plus the parameters and key id it belongs to.

    Build it with :meth:`from_bytes`.  The operations (``encrypt``, ``load``,
    ``add``, ``decrypt``) work on batched TenSEAL tensors whose columns are
    ciphertexts (``protocols/he_sum.md`` §4).
    """

    __slots__ = ("_ctx", "_parms_id", "encryption", "key_id", "kind", "params")

    def __init__(
        self,
        *,
        params: HEParams,
        key_id: bytes,
        kind: ContextKind,
        ctx: Any,
        encryption: EncryptionMode = EncryptionMode.PUBLIC_KEY,
    ) -> None:
        self.params = params
        self.key_id = key_id
        self.kind = kind
        self.encryption = encryption
        self._ctx = ctx
        self._parms_id = _first_parms_id(ctx)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        kind: ContextKind,
        n_threads: int = 2,
        encryption: EncryptionMode = EncryptionMode.PUBLIC_KEY,
    ) -> HEContext:
        """Load a context envelope, requiring it to be of ``kind``.

        ``encryption`` selects how :meth:`encrypt_columns` encrypts;
        ``EncryptionMode.SECRET_KEY`` needs a SECRET context.

        Raises
        ------
        DecodeError
            Malformed envelope, a key id that does not match the public key, a
            PUBLIC envelope whose TenSEAL bytes hold a secret key, a SECRET
            envelope without one, or TenSEAL parameters other than the declared set.
        LocalProtocolError
            If the envelope is of the other kind (e.g. a secret context handed
            to the server, or a public one to the decryptor), or TenSEAL does not
            switch to secret-key encryption.
        ParameterError
            ``SECRET_KEY`` encryption asked of a PUBLIC context.
        """
        if not isinstance(kind, ContextKind):
            raise ParameterError("kind must be a ContextKind")
        if not isinstance(encryption, EncryptionMode):
            raise ParameterError("encryption must be an EncryptionMode")
        if encryption is EncryptionMode.SECRET_KEY and kind is not ContextKind.SECRET:
            raise ParameterError("secret-key encryption needs the SECRET context")
        _check_threads(n_threads)
        r = Reader(data)
        if r.raw(4) != CONTEXT_MAGIC:
            raise DecodeError("not an HE context envelope (bad magic)")
        if r.u8() != CONTEXT_VERSION:
            raise DecodeError("unsupported HE context version")
        try:
            got = ContextKind(r.u8())
        except ValueError:
            raise DecodeError("unknown context kind") from None
        params = decode_params(r.blob(_MAX_PARAMS))
        key_id = r.raw(16)
        public = r.blob(_MAX_CONTEXT)
        secret = r.blob(_MAX_CONTEXT) if got is ContextKind.SECRET else b""
        r.finish()
        if key_id_for(public) != key_id:
            raise DecodeError("key id does not match the public context")
        if got is not kind:
            raise LocalProtocolError(f"expected a {kind.name} context, got {got.name}")
        ts = _ts()
        try:
            blob = public if got is ContextKind.PUBLIC else secret
            ctx = ts.context_from(blob, n_threads=n_threads)
        except Exception:  # TenSEAL/protobuf/SEAL raise assorted types
            raise DecodeError("TenSEAL could not load the context") from None
        if got is ContextKind.PUBLIC and (ctx.has_secret_key() or not ctx.has_public_key()):
            raise DecodeError("a public context must hold the public key and no secret key")
        if got is ContextKind.SECRET and not ctx.has_secret_key():
            raise DecodeError("a secret context must hold the secret key")
        if got is ContextKind.SECRET and key_id_for(_public_bytes(ctx)) != key_id:
            raise DecodeError("the secret context does not belong to the public key")
        _check_matches(ctx, params)
        if got is ContextKind.SECRET:
            _check_key_pair(ts, secret, params, n_threads)
        if encryption is EncryptionMode.SECRET_KEY:
            ctx = _symmetric_context(ts, ctx, secret, n_threads)
            _check_matches(ctx, params)
        if params.scheme is Scheme.CKKS:
            ctx.global_scale = 2.0**params.scale_bits
        return cls(params=params, key_id=key_id, kind=got, ctx=ctx, encryption=encryption)

    @property
    def parms_id(self) -> bytes:
        """SEAL's ``parms_id`` of the first data level (32 bytes, 4 little-endian u64).

        Every ciphertext of the round carries it (``he_envelope.md`` §4.1).
        """
        return self._parms_id

    @property
    def can_decrypt(self) -> bool:
        return bool(self._ctx.has_secret_key())

    def tenseal_context(self) -> Any:
        """The underlying TenSEAL context (for tests and diagnostics)."""
        return self._ctx

    # ------------------------------------------------------------------ tensors
    def encrypt_columns(self, block: npt.NDArray[Any]) -> Any:
        """Encrypt a ``(slots, k)`` block into a batched tensor of ``k`` ciphertexts."""
        ts = _ts()
        p = self.params
        if block.ndim != 2 or block.shape[0] != p.slots or block.shape[1] < 1:
            raise ParameterError(f"expected a ({p.slots}, k) block")
        # A (slots, 1) batched tensor decrypts wrongly in TenSEAL 0.3.18; one
        # ciphertext is therefore encrypted from the 1-D column (tensor shape []).
        cols = block[:, 0] if block.shape[1] == 1 else block
        if p.scheme is Scheme.CKKS:
            plain = ts.plain_tensor(np.ascontiguousarray(cols, dtype=np.float64))
            return ts.ckks_tensor(self._ctx, plain, batch=True)
        plain = ts.plain_tensor(np.ascontiguousarray(cols, dtype=np.int64), dtype="int")
        return ts.bfv_tensor(self._ctx, plain, batch=True)

    def load(self, payload: bytes, *, ciphertexts: int) -> Any:
        """Deserialize a batched tensor and check it has ``ciphertexts`` columns.

        Every ciphertext is validated, the first one a server loads included:
        any two tensors this method returns can be added.

        Raises
        ------
        DecodeError
            If the bytes are not exactly a TenSEAL batched tensor of
            ``ciphertexts`` SEAL ciphertexts, each with the metadata of a fresh
            encryption under this context — level, NTT form, size, ``N``, number
            of primes, exact scale, reduced coefficients (:mod:`secagg.he.payload`,
            checked before TenSEAL sees them, and the SEAL state re-read after
            loading) — if TenSEAL cannot parse it under this context, or
            shape/scale differ.
        """
        p = self.params
        # TenSEAL trusts the protobuf message and can crash the process on a
        # malformed one: only the exact layout its serializer emits gets through.
        validate_tensor_payload(payload, p, ciphertexts=ciphertexts, parms_id=self._parms_id)
        ts = _ts()
        try:
            if p.scheme is Scheme.CKKS:
                t = ts.ckks_tensor_from(self._ctx, payload)
                scale_ok = float(t.scale()) == 2.0**p.scale_bits
            else:
                t = ts.bfv_tensor_from(self._ctx, payload)
                scale_ok = True
            shape = list(t.shape)
            seal_ok = _check_loaded_ciphertexts(t, p, self._parms_id)
        except Exception:  # TenSEAL/protobuf/SEAL raise assorted types
            raise DecodeError("payload is not a ciphertext tensor for this context") from None
        expected = [] if ciphertexts == 1 else [ciphertexts]
        if shape != expected or not scale_ok:
            raise DecodeError(f"payload holds shape {shape}, expected [{ciphertexts}] ciphertexts")
        if not seal_ok or len(t.ciphertext()) != ciphertexts:
            raise DecodeError("a loaded ciphertext does not have the round's SEAL metadata")
        return t

    @staticmethod
    def add(a: Any, b: Any) -> Any:
        """``a + b`` as a new tensor (the operands are not modified).

        Raises
        ------
        DecodeError
            If SEAL refuses the addition (mismatched levels or parameters).
        """
        try:
            return a + b
        except Exception:
            raise DecodeError("ciphertexts cannot be added (mismatched parameters)") from None

    @staticmethod
    def serialize(t: Any) -> bytes:
        return bytes(t.serialize())

    def decrypt(self, t: Any) -> npt.NDArray[Any]:
        """Decrypt a batched tensor into a ``(slots, k)`` array (float64 or int64).

        Raises
        ------
        LocalProtocolError
            If this context holds no secret key, or the tensor belongs to another
            context.
        """
        if not self.can_decrypt:
            raise LocalProtocolError("this context holds no secret key; it cannot decrypt")
        try:
            plain = t.decrypt()
        except ValueError as exc:  # TenSEAL: a tensor linked to another context
            raise LocalProtocolError(f"cannot decrypt this tensor here: {exc}") from None
        dtype = np.float64 if self.params.scheme is Scheme.CKKS else np.int64
        shape = list(plain.shape)
        if len(shape) == 1:  # one ciphertext: a (slots,) column
            shape = [shape[0], 1]
        return np.asarray(plain.raw, dtype=dtype).reshape(shape)
