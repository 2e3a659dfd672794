"""X25519 key agreement (thin wrapper over ``cryptography``).

The raw shared secret is never used directly: callers feed it to
:func:`secagg.primitives.kdf.derive` with a purpose, the session id and the two
party ids (smaller id first), which is what makes the pairwise seed symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from secagg.errors import CryptoError, ParameterError
from secagg.primitives.kdf import Field, derive
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = [
    "PUBLIC_KEY_BYTES",
    "KeyPair",
    "agree",
    "check_contributory",
    "check_public_key",
    "derive_pairwise",
]

PUBLIC_KEY_BYTES = 32


def check_public_key(public: bytes) -> X25519PublicKey:
    """Parse a 32-byte X25519 public key; raise :class:`ParameterError` if malformed."""
    if not isinstance(public, (bytes, bytearray)) or len(public) != PUBLIC_KEY_BYTES:
        raise ParameterError("an X25519 public key is exactly 32 bytes")
    return X25519PublicKey.from_public_bytes(bytes(public))


#: A fixed, public scalar (any clamped scalar works): X25519 with a low-order or
#: small-subgroup point yields the all-zero output for *every* clamped scalar, because
#: clamping makes the scalar a multiple of the cofactor 8.  Built on first use, so that
#: importing this module does not load OpenSSL's backend.
_PROBE_SCALAR = bytes(range(1, 33))


@lru_cache(maxsize=1)
def _probe() -> X25519PrivateKey:
    """The probe key of :data:`_PROBE_SCALAR`, built once (loading a private key costs
    as much as an agreement; the server checks two keys per client)."""
    return X25519PrivateKey.from_private_bytes(_PROBE_SCALAR)


def check_contributory(public: bytes) -> None:
    """Refuse an X25519 public key in the small subgroup (RFC 7748 §6.1).

    Such a key (e.g. all zeros, or any of the other encodings of the points of
    order 1, 2, 4 or 8, canonical or not) gives every party the all-zero shared
    secret, so an honest peer's key agreement with it fails.

    Raises
    ------
    CryptoError
        If ``public`` is a low-order point.
    ParameterError
        If ``public`` is not 32 bytes.
    """
    pk = check_public_key(public)
    try:
        _probe().exchange(pk)
    except ValueError:
        raise CryptoError() from None


@dataclass(frozen=True, slots=True, repr=False)
class KeyPair:
    """An X25519 key pair.  ``repr`` never shows the private key."""

    private: X25519PrivateKey
    public: bytes

    @classmethod
    def generate(cls, rng: RandomSource | None = None) -> KeyPair:
        """A fresh key pair from ``rng`` (``os.urandom`` by default)."""
        src = rng if rng is not None else SystemRandom()
        sk = X25519PrivateKey.from_private_bytes(src.random_bytes(32))
        return cls(private=sk, public=sk.public_key().public_bytes_raw())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> KeyPair:
        if len(raw) != 32:
            raise ParameterError("an X25519 private key is exactly 32 bytes")
        sk = X25519PrivateKey.from_private_bytes(bytes(raw))
        return cls(private=sk, public=sk.public_key().public_bytes_raw())

    def private_bytes(self) -> bytes:
        """The raw 32-byte private scalar (needed to Shamir-share it)."""
        return self.private.private_bytes_raw()

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()})"


def agree(private: X25519PrivateKey | bytes, peer_public: bytes) -> bytes:
    """The raw 32-byte X25519 shared secret.

    Raises
    ------
    CryptoError
        If the peer key is a low-order point (all-zero shared secret).
    ParameterError
        If the peer key is not 32 bytes.
    """
    if isinstance(private, X25519PrivateKey):
        sk = private
    else:
        sk = KeyPair.from_private_bytes(private).private
    pk = check_public_key(peer_public)
    try:
        return sk.exchange(pk)
    except ValueError:
        raise CryptoError() from None


def derive_pairwise(
    private: X25519PrivateKey | bytes,
    peer_public: bytes,
    *,
    purpose: str,
    session_id: bytes,
    party_a: int,
    party_b: int,
    extra: tuple[Field, ...] = (),
    length: int = 32,
) -> bytes:
    """A symmetric pairwise key: both parties derive the same bytes.

    The party ids enter the label as ``(min, max)`` so that ``u`` and ``v`` agree.
    """
    if party_a == party_b:
        raise ParameterError("a party cannot agree a pairwise key with itself")
    lo, hi = sorted((party_a, party_b))
    return derive(
        agree(private, peer_public),
        purpose=purpose,
        session_id=session_id,
        fields=(lo, hi, *extra),
        length=length,
    )
