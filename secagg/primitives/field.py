"""The prime field of the Shamir layer.

``P = 2^256 + 297``, the smallest prime above ``2^256``: every 32-byte secret
(an X25519 private scalar, a 256-bit seed) is a field element as it is, so no
secret is ever chunked, and the field is only 297 elements larger than the secret
space.  Field elements travel as 33-byte big-endian integers (``ELEMENT_BYTES``).
"""

from __future__ import annotations

from secagg.errors import DecodeError, ParameterError

__all__ = [
    "P",
    "ELEMENT_BYTES",
    "SECRET_BYTES",
    "check_element",
    "encode_element",
    "decode_element",
    "secret_to_element",
    "element_to_secret",
    "inverse",
]

P = 2**256 + 297
ELEMENT_BYTES = 33
SECRET_BYTES = 32


def check_element(v: int, *, what: str = "value") -> int:
    """Return ``v`` if it is an int in ``[0, P)``; raise :class:`ParameterError` otherwise."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < P:
        raise ParameterError(f"{what} is not an element of the field [0, P)")
    return v


def encode_element(v: int) -> bytes:
    """33-byte big-endian encoding of a field element."""
    return check_element(v).to_bytes(ELEMENT_BYTES, "big")


def decode_element(b: bytes) -> int:
    """Parse a 33-byte field element; :class:`DecodeError` if malformed or ``>= P``."""
    if len(b) != ELEMENT_BYTES:
        raise DecodeError(f"a field element is {ELEMENT_BYTES} bytes, got {len(b)}")
    v = int.from_bytes(b, "big")
    if v >= P:
        raise DecodeError("field element out of range")
    return v


def secret_to_element(secret: bytes) -> int:
    """A 32-byte secret as a field element (big-endian)."""
    if len(secret) != SECRET_BYTES:
        raise ParameterError(f"secrets are exactly {SECRET_BYTES} bytes")
    return int.from_bytes(secret, "big")


def element_to_secret(v: int) -> bytes:
    """Inverse of :func:`secret_to_element`.

    Raises
    ------
    ParameterError
        If ``v >= 2^256``: no 32-byte secret maps there, so the shares that
        produced it were inconsistent.
    """
    check_element(v)
    if v >= 2**256:
        raise ParameterError("reconstructed value is not a 32-byte secret (inconsistent shares)")
    return v.to_bytes(SECRET_BYTES, "big")


def inverse(v: int) -> int:
    """Multiplicative inverse mod ``P``."""
    if check_element(v) == 0:
        raise ParameterError("zero has no inverse")
    return pow(v, -1, P)
