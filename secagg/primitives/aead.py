"""AES-256-GCM with associated data that binds sender, receiver, session and round.

Wire form of a sealed box: ``nonce (12 bytes) || ciphertext || tag (16 bytes)``.
The associated data is ``encode_info("aead-ad", session_id, (round, sender, receiver, context))``
— the same injective, length-prefixed encoding the KDF uses — so a box moved to
another session, round, sender or receiver fails to open.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from secagg.errors import CryptoError, ParameterError
from secagg.primitives.kdf import encode_info
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "OVERHEAD",
    "TAG_BYTES",
    "associated_data",
    "open_",
    "open_with_ad",
    "seal",
    "seal_with_ad",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES


def associated_data(
    *, session_id: bytes, round_: int, sender: int, receiver: int, context: str = ""
) -> bytes:
    """The associated data bound into every box."""
    return encode_info("aead-ad", session_id, (round_, sender, receiver, context))


def seal_with_ad(
    key: bytes, plaintext: bytes, ad: bytes, *, rng: RandomSource | None = None
) -> bytes:
    """:func:`seal` with associated data built beforehand by :func:`associated_data`.

    For loops that seal one box per peer with labels prepared once per round.
    """
    src = rng if rng is not None else SystemRandom()
    nonce = src.random_bytes(NONCE_BYTES)
    return nonce + _aesgcm(key).encrypt(nonce, bytes(plaintext), ad)


def open_with_ad(key: bytes, box: bytes, ad: bytes) -> bytes:
    """:func:`open_` with associated data built beforehand.

    Raises
    ------
    CryptoError
        For *every* failure: wrong key, tampered bytes, wrong binding, too short.
    """
    aes = _aesgcm(key)
    if len(box) < OVERHEAD:
        raise CryptoError()
    try:
        return aes.decrypt(bytes(box[:NONCE_BYTES]), bytes(box[NONCE_BYTES:]), ad)
    except InvalidTag:
        raise CryptoError() from None


def _aesgcm(key: bytes) -> AESGCM:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ParameterError("AEAD key must be 32 bytes")
    return AESGCM(bytes(key))


def seal(
    key: bytes,
    plaintext: bytes,
    *,
    session_id: bytes,
    round_: int,
    sender: int,
    receiver: int,
    context: str = "",
    rng: RandomSource | None = None,
) -> bytes:
    """Encrypt and authenticate ``plaintext``; returns ``nonce || ct || tag``."""
    src = rng if rng is not None else SystemRandom()
    nonce = src.random_bytes(NONCE_BYTES)
    ad = associated_data(
        session_id=session_id, round_=round_, sender=sender, receiver=receiver, context=context
    )
    return nonce + _aesgcm(key).encrypt(nonce, bytes(plaintext), ad)


def open_(
    key: bytes,
    box: bytes,
    *,
    session_id: bytes,
    round_: int,
    sender: int,
    receiver: int,
    context: str = "",
) -> bytes:
    """Verify and decrypt a box.

    Raises
    ------
    CryptoError
        For *every* failure: wrong key, tampered bytes, wrong binding, too short.
    """
    aes = _aesgcm(key)
    if len(box) < OVERHEAD:
        raise CryptoError()
    ad = associated_data(
        session_id=session_id, round_=round_, sender=sender, receiver=receiver, context=context
    )
    try:
        return aes.decrypt(bytes(box[:NONCE_BYTES]), bytes(box[NONCE_BYTES:]), ad)
    except InvalidTag:
        raise CryptoError() from None
