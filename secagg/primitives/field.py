"""The prime field of the Shamir layer.

``P = 2^256 + 297``, the smallest prime above ``2^256``: every 32-byte secret
(an X25519 private scalar, a 256-bit seed) is a field element as it is, so no
secret is ever chunked, and the field is only 297 elements larger than the secret
space.  Field elements travel as 33-byte big-endian integers (``ELEMENT_BYTES``).
"""

from __future__ import annotations

from secagg.errors import DecodeError, ParameterError

__all__ = [
    "ELEMENT_BYTES",
    "SECRET_BYTES",
    "P",
    "check_element",
    "check_prime",
    "decode_element",
    "element_to_secret",
    "encode_element",
    "inverse",
    "secret_to_element",
]

P = 2**256 + 297
ELEMENT_BYTES = 33
SECRET_BYTES = 32


def check_prime(prime: int) -> int:
    """Return ``prime`` if it is an int ``>= 2``; raise :class:`ParameterError` otherwise.

    Primality is not tested: ``prime`` is a trusted local parameter (``P`` in
    production, a small prime in tests).
    """
    if isinstance(prime, bool) or not isinstance(prime, int) or prime < 2:
        raise ParameterError("the field modulus must be an integer >= 2")
    return prime


def check_element(v: int, *, what: str = "value", prime: int = P) -> int:
    """Return ``v`` if it is an int in ``[0, prime)``; raise :class:`ParameterError` otherwise."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < prime:
        name = "P" if prime == P else str(prime)
        raise ParameterError(f"{what} is not an element of the field [0, {name})")
    return v


def encode_element(v: int) -> bytes:
    """33-byte big-endian encoding of a field element."""
    return check_element(v).to_bytes(ELEMENT_BYTES, "big")


def decode_element(b: bytes) -> int:
    """Parse a 33-byte field element; :class:`DecodeError` if malformed or ``>= P``."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise DecodeError("a field element must be bytes")
    if len(b) != ELEMENT_BYTES:
        raise DecodeError(f"a field element is {ELEMENT_BYTES} bytes, got {len(b)}")
    v = int.from_bytes(b, "big")
    if v >= P:
        raise DecodeError("field element out of range")
    return v


def secret_to_element(secret: bytes) -> int:
    """A 32-byte secret as a field element (big-endian)."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
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


def inverse(v: int, *, prime: int = P) -> int:
    """Multiplicative inverse mod ``prime`` (default ``P``).

    Raises
    ------
    ParameterError
        If ``v`` is zero or not an element of the field.
    """
    if check_element(v, prime=check_prime(prime)) == 0:
        raise ParameterError("zero has no inverse")
    return pow(v, -1, prime)
