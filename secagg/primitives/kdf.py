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

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secagg.errors import ParameterError

__all__ = ["HKDF_SALT", "PROTOCOL_VERSION", "Field", "derive", "encode_info"]

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


def encode_info(purpose: str, session_id: bytes = b"", fields: Sequence[Field] = ()) -> bytes:
    """The HKDF ``info`` string for a label tuple (injective encoding)."""
    if not purpose:
        raise ParameterError("purpose must be a non-empty string")
    parts = [
        _lp(b"secagg"),
        _lp(PROTOCOL_VERSION.encode()),
        _lp(bytes(session_id)),
        _lp(purpose.encode("utf-8")),
        len(fields).to_bytes(4, "big"),
    ]
    parts.extend(_lp(_field_bytes(f)) for f in fields)
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
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=HKDF_SALT, info=info).derive(
        bytes(ikm)
    )
