"""HKDF-SHA256 with explicit, length-prefixed domain separation.

Every key, seed and nonce in secagg is derived through :func:`derive`, so one
function defines the whole label space (``protocols/primitives.md`` §KDF):

``info = LP("secagg") || LP(version) || LP(session_id) || LP(purpose)
|| u32(len(fields)) || LP(f1) || ...``

where ``LP(x) = u32_be(len(x)) || x`` and integer fields are encoded as
``u64_be``.  Because every field is length-prefixed the encoding is injective:
two different label tuples never give the same ``info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import ParameterError

__all__ = [
    "HKDF_SALT",
    "PROTOCOL_VERSION",
    "Field",
    "derive",
    "derive_info",
    "derive_info_many",
    "encode_info",
    "info_prefix",
    "int_field",
]

#: Version string mixed into every derivation; bump it when a derivation changes.
PROTOCOL_VERSION = "secagg/1"
#: Fixed HKDF salt (domain separation from other HKDF users of the same IKM).
HKDF_SALT = b"secagg/1 hkdf salt"

Field = bytes | str | int
_MAX_LEN = 2**32 - 1


def _lp(b: bytes) -> bytes:
    if len(b) > _MAX_LEN:
        raise ParameterError("label field too long")
    return len(b).to_bytes(4, "big") + b


def _field_bytes(f: Field) -> bytes:
    if isinstance(f, bool):
        raise ParameterError("bool is not a valid label field")
    if isinstance(f, int):
        if not 0 <= f < 2**64:
            raise ParameterError("integer label fields must be in [0, 2^64)")
        return f.to_bytes(8, "big")
    if isinstance(f, str):
        return f.encode("utf-8")
    if isinstance(f, (bytes, bytearray, memoryview)):
        return bytes(f)
    raise ParameterError(f"unsupported label field type {type(f).__name__}")


@lru_cache(maxsize=256)
def _prefix(purpose: str, session_id: bytes, n_fields: int) -> bytes:
    if not isinstance(purpose, str) or not purpose:
        raise ParameterError("purpose must be a non-empty string")
    return b"".join(
        (
            _lp(b"secagg"),
            _lp(PROTOCOL_VERSION.encode()),
            _lp(session_id),
            _lp(purpose.encode("utf-8")),
            n_fields.to_bytes(4, "big"),
        )
    )


def info_prefix(purpose: str, session_id: bytes, n_fields: int) -> bytes:
    """The part of :func:`encode_info` before the fields (cached per label).

    ``info_prefix(p, sid, len(fs)) + b"".join(LP(f) for f in fs) == encode_info(p, sid, fs)``;
    a round builds it once and appends only the per-peer fields (:func:`int_field`).

    Raises
    ------
    ParameterError
        On an empty purpose.
    """
    return _prefix(purpose, bytes(session_id), n_fields)


#: ``LP(u64_be(v))`` starts with this length prefix.
_U64_LP = (8).to_bytes(4, "big")


def int_field(v: int) -> bytes:
    """``LP(u64_be(v))``: one length-prefixed integer field, as :func:`encode_info` writes it.

    Raises
    ------
    ParameterError
        If ``v`` is not an integer in ``[0, 2^64)``.
    """
    if type(v) is not int or not 0 <= v < 2**64:
        return _lp(_field_bytes(v))  # the exact error (or a bool/int subclass)
    return _U64_LP + v.to_bytes(8, "big")


def encode_info(purpose: str, session_id: bytes = b"", fields: Sequence[Field] = ()) -> bytes:
    """The HKDF ``info`` string for a label tuple (injective encoding)."""
    prefix = _prefix(purpose, bytes(session_id), len(fields))
    if not fields:
        return prefix
    parts = [prefix]
    for f in fields:
        if type(f) is int and 0 <= f < 2**64:
            parts.append(_U64_LP + f.to_bytes(8, "big"))
        else:
            parts.append(_lp(_field_bytes(f)))
    return b"".join(parts)


def derive(
    ikm: bytes,
    *,
    purpose: str,
    session_id: bytes = b"",
    fields: Sequence[Field] = (),
    length: int = 32,
) -> bytes:
    """Derive ``length`` bytes from ``ikm`` for one labelled purpose.

    Parameters
    ----------
    ikm:
        Input keying material (a shared secret or a seed), at least 16 bytes.
    purpose:
        What the output is for, e.g. ``"pairwise-mask-seed"``.
    session_id:
        The session (round) identifier; binds the output to one session.
    fields:
        Further context, e.g. party ids; ``int`` fields are encoded as ``u64_be``.
    length:
        Output length in bytes, 16..8160.

    Raises
    ------
    ParameterError
        On short key material, a bad length or an unencodable field.
    """
    if len(ikm) < 16:
        raise ParameterError("input keying material must be at least 16 bytes")
    if not 16 <= length <= 255 * 32:
        raise ParameterError("length must be in [16, 8160]")
    info = encode_info(purpose, session_id, fields)
    return HKDF(algorithm=_SHA256, length=length, salt=HKDF_SALT, info=info).derive(bytes(ikm))


_SHA256 = hashes.SHA256()


def derive_info(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    """:func:`derive` with a ready ``info`` (from :func:`info_prefix` + fields).

    For loops that derive one key per peer: the label is built once per round and
    only the peer fields are appended, so the cost is the HKDF call itself.

    Raises
    ------
    ParameterError
        On short key material or a bad length.
    """
    if len(ikm) < 16:
        raise ParameterError("input keying material must be at least 16 bytes")
    if not 16 <= length <= 255 * 32:
        raise ParameterError("length must be in [16, 8160]")
    return HKDF(algorithm=_SHA256, length=length, salt=HKDF_SALT, info=info).derive(bytes(ikm))


def derive_info_many(ikms: Sequence[bytes], infos: Sequence[bytes]) -> bytes:
    """``b"".join(derive_info(ikm, info) for ikm, info in zip(ikms, infos))``, 32 bytes each.

    For checks that recompute one derivation per party of a large set (the SecAgg+
    graph-seed commitments of every client of ``U1``).  HKDF-SHA256 with a 32-byte
    output is two HMACs (RFC 5869): ``PRK = HMAC(salt, ikm)``, ``OKM = HMAC(PRK, info
    || 0x01)``; the salt's HMAC state is keyed once and copied per item, so an item
    costs its HMACs and no HKDF object.  Same bytes as :func:`derive_info` (tested).

    Raises
    ------
    ParameterError
        If the sequences differ in length or an ``ikm`` is shorter than 16 bytes.
    """
    if len(ikms) != len(infos):
        raise ParameterError("ikms and infos differ in length")
    salted = hmac.HMAC(HKDF_SALT, _SHA256)
    out = []
    for ikm, info in zip(ikms, infos, strict=True):
        if len(ikm) < 16:
            raise ParameterError("input keying material must be at least 16 bytes")
        extract = salted.copy()
        extract.update(ikm)
        expand = hmac.HMAC(extract.finalize(), _SHA256)
        expand.update(info)
        expand.update(b"\x01")
        out.append(expand.finalize())
    return b"".join(out)
