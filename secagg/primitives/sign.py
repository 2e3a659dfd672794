"""Ed25519 signatures.  Verification raises; it never returns a bool."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.errors import CryptoError, ParameterError
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = ["PUBLIC_KEY_BYTES", "SIGNATURE_BYTES", "SigningKey", "verify"]

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


@dataclass(frozen=True, slots=True, repr=False)
class SigningKey:
    """An Ed25519 identity key.  ``repr`` never shows the private key."""

    private: Ed25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> SigningKey:
        src = rng if rng is not None else SystemRandom()
        sk = Ed25519PrivateKey.from_private_bytes(src.random_bytes(32))
        return cls(private=sk, public=sk.public_key().public_bytes_raw())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> SigningKey:
        """The key for a fixed 32-byte Ed25519 private seed (RFC 8032 ``sk``).

        Raises
        ------
        ParameterError
            If ``raw`` is not exactly 32 bytes.
        """
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != 32:
            raise ParameterError("an Ed25519 private key is exactly 32 bytes")
        sk = Ed25519PrivateKey.from_private_bytes(bytes(raw))
        return cls(private=sk, public=sk.public_key().public_bytes_raw())

    def private_bytes(self) -> bytes:
        """The raw 32-byte private seed."""
        return self.private.private_bytes_raw()

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(bytes(message))

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()})"


def verify(public: bytes, signature: bytes, message: bytes) -> None:
    """Verify an Ed25519 signature.

    Raises
    ------
    CryptoError
        If the key or signature is malformed or the signature does not verify.
    """
    if len(public) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        raise CryptoError()
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError):
        raise CryptoError() from None


