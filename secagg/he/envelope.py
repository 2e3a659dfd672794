"""The signed ciphertext envelope (``protocols/wire/he_envelope.md`` §1).

Decoding is strict and happens before anything touches TenSEAL: magic, version,
kind, scheme, every bound and the contributor list are validated, and the
signed part is kept so the signature can be checked against the sender's key.

An :class:`Envelope` is the message object of every HE party (the one I/O
convention of ``secagg``: bytes in, message objects out): :func:`sign_envelope`
makes a signed one, :meth:`Envelope.to_bytes` gives its wire bytes (the same as
:func:`encode_envelope`), :func:`decode_envelope` parses them back.

Security notes
--------------
CKKS/BFV ciphertexts are malleable; the Ed25519 signature over the whole
envelope is what makes tampering detectable.  :func:`decode_envelope` does not
verify it — callers must call :meth:`Envelope.verify` with the sender's key.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from dataclasses import dataclass

from secagg.encoding.codec import MAX_BLOB, Reader, Writer
from secagg.errors import DecodeError, LocalProtocolError, ParameterError
from secagg.he.params import Scheme
from secagg.primitives.sign import SIGNATURE_BYTES, SigningKey, verify

__all__ = [
    "ENVELOPE_MAGIC",
    "MAX_CHUNKS",
    "MAX_CONTRIBUTORS",
    "WIRE_VERSION",
    "Envelope",
    "EnvelopeKind",
    "decode_envelope",
    "encode_envelope",
    "sign_envelope",
]

ENVELOPE_MAGIC = b"SHE1"
WIRE_VERSION = 1
MAX_CHUNKS = 1 << 20
MAX_CONTRIBUTORS = 1 << 20
ID_BYTES = 16
_SIGN_LABEL = b"secagg/he envelope v1"


class EnvelopeKind(enum.Enum):
    """What an envelope carries."""

    CLIENT_CHUNK = 1
    AGGREGATE_CHUNK = 2


def _check_u32(name: str, v: object, lo: int = 0, hi: int = (1 << 32) - 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ParameterError(f"{name} must be an integer in [{lo}, {hi}]")


def _check_id(name: str, v: object) -> None:
    if not isinstance(v, bytes) or len(v) != ID_BYTES:
        raise ParameterError(f"{name} must be {ID_BYTES} bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A decoded (or to-be-encoded) ciphertext envelope.

    ``signed_part`` and ``signature`` are filled by :func:`decode_envelope`; an
    envelope built by hand has them empty until :func:`sign_envelope` signs it
    (which fills ``signature`` only: the signed part is rebuilt from the fields).
    Routing: :attr:`sender` (0 = the server) and :attr:`recipient`.

    Raises
    ------
    ParameterError
        If a field is out of range (constructing by hand).
    """

    kind: EnvelopeKind
    scheme: Scheme
    param_set_id: bytes
    key_id: bytes
    session_id: bytes
    round: int
    sender: int
    vector_length: int
    chunk_index: int
    chunk_count: int
    contributors: tuple[int, ...]
    payload: bytes
    signed_part: bytes = b""
    signature: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, EnvelopeKind) or not isinstance(self.scheme, Scheme):
            raise ParameterError("kind/scheme must be enums")
        _check_id("param_set_id", self.param_set_id)
        _check_id("key_id", self.key_id)
        _check_id("session_id", self.session_id)
        _check_u32("round", self.round)
        _check_u32("sender", self.sender)
        _check_u32("vector_length", self.vector_length, 1)
        _check_u32("chunk_count", self.chunk_count, 1, MAX_CHUNKS)
        _check_u32("chunk_index", self.chunk_index, 0, self.chunk_count - 1)
        contributors = tuple(self.contributors)
        object.__setattr__(self, "contributors", contributors)
        if not 1 <= len(contributors) <= MAX_CONTRIBUTORS:
            raise ParameterError("contributors must list 1..2^20 ids")
        for c in contributors:
            _check_u32("contributor id", c, 1)
        if any(a >= b for a, b in itertools.pairwise(contributors)):
            raise ParameterError("contributors must be strictly ascending")
        if self.kind is EnvelopeKind.CLIENT_CHUNK and (
            self.sender < 1 or contributors != (self.sender,)
        ):
            raise ParameterError("a client chunk is sent by a client id >= 1 and lists only it")
        if self.kind is EnvelopeKind.AGGREGATE_CHUNK and self.sender != 0:
            raise ParameterError("an aggregate chunk is sent by the server (id 0)")
        if not isinstance(self.payload, bytes) or not 1 <= len(self.payload) <= MAX_BLOB:
            raise ParameterError("payload must be 1..2^30 bytes")

    def verify(self, public_key: bytes) -> None:
        """Check the Ed25519 signature of the sender.

        Raises
        ------
        CryptoError
            If the envelope is unsigned or the signature does not verify (opaque).
        """
        verify(public_key, self.signature, _SIGN_LABEL + (self.signed_part or _body(self)))

    @property
    def recipient(self) -> int:
        """Party ``0``: a client chunk goes to the server, an aggregate chunk to the
        key holder (``secagg.he.DECRYPTOR_ID``; under shared-client-key custody the
        clients hold the key).  The wire format has no recipient field — the kind
        says where an envelope goes."""
        return 0

    def to_bytes(self) -> bytes:
        """The signed wire bytes (what :func:`encode_envelope` returns).

        Raises
        ------
        LocalProtocolError
            If the envelope is not signed (build it with :func:`sign_envelope`).
        """
        if not self.signature:
            raise LocalProtocolError("the envelope is not signed: use sign_envelope")
        return (self.signed_part or _body(self)) + self.signature


def _body(env: Envelope) -> bytes:
    w = Writer().raw(ENVELOPE_MAGIC).u8(WIRE_VERSION).u8(env.kind.value).u8(env.scheme.value)
    w.raw(env.param_set_id).raw(env.key_id).raw(env.session_id)
    w.u32(env.round).u32(env.sender).u32(env.vector_length)
    w.u32(env.chunk_index).u32(env.chunk_count).u32(len(env.contributors))
    for c in env.contributors:
        w.u32(c)
    w.blob(env.payload)
    return w.getvalue()


def sign_envelope(env: Envelope, key: SigningKey) -> Envelope:
    """``env`` signed with the sender's identity key: the message object a party
    returns (:meth:`Envelope.to_bytes` gives the same bytes as :func:`encode_envelope`)."""
    if not isinstance(key, SigningKey):
        raise ParameterError("key must be a SigningKey")
    if not isinstance(env, Envelope):
        raise ParameterError("env must be an Envelope")
    signature = key.sign(_SIGN_LABEL + _body(env))
    return dataclasses.replace(env, signed_part=b"", signature=signature)


def encode_envelope(env: Envelope, key: SigningKey) -> bytes:
    """Serialize ``env`` and sign it with the sender's identity key."""
    if not isinstance(key, SigningKey):
        raise ParameterError("key must be a SigningKey")
    body = _body(env)
    return body + key.sign(_SIGN_LABEL + body)


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """Parse untrusted bytes into an :class:`Envelope` (signature not yet verified).

    Raises
    ------
    DecodeError
        On any malformation: wrong magic/version/kind/scheme, truncation, trailing
        bytes, out-of-range fields, unsorted contributors.
    """
    r = Reader(data)
    if r.raw(4) != ENVELOPE_MAGIC:
        raise DecodeError("not an HE envelope (bad magic)")
    if r.u8() != WIRE_VERSION:
        raise DecodeError("unsupported HE envelope version")
    try:
        kind = EnvelopeKind(r.u8())
        scheme = Scheme(r.u8())
    except ValueError:
        raise DecodeError("unknown envelope kind or scheme") from None
    param_set_id, key_id, session_id = r.raw(ID_BYTES), r.raw(ID_BYTES), r.raw(ID_BYTES)
    round_, sender, length = r.u32(), r.u32(), r.u32()
    chunk_index, chunk_count = r.u32(), r.u32()
    n = r.u32()
    if not 1 <= n <= MAX_CONTRIBUTORS or 4 * n > r.remaining:
        raise DecodeError("contributor count out of bounds")
    contributors = tuple(r.u32() for _ in range(n))
    payload = r.blob(MAX_BLOB)
    signed_len = len(data) - r.remaining
    signature = r.raw(SIGNATURE_BYTES)
    r.finish()
    try:
        return Envelope(
            kind=kind,
            scheme=scheme,
            param_set_id=param_set_id,
            key_id=key_id,
            session_id=session_id,
            round=round_,
            sender=sender,
            vector_length=length,
            chunk_index=chunk_index,
            chunk_count=chunk_count,
            contributors=contributors,
            payload=payload,
            signed_part=bytes(memoryview(data)[:signed_len]),
            signature=signature,
        )
    except ParameterError as exc:
        raise DecodeError(f"invalid envelope field: {exc}") from None
