"""What a caller reads when a primitive refuses its input.

The error type says who is at fault (``ParameterError``: the caller,
``DecodeError``: the bytes from a peer, ``CryptoError``: a failed check, always the
same opaque text); the message says which argument and which bound, so that a
user can fix the call without reading our source.  Each case pins the exact text
(mutation testing showed that nothing did: a message replaced by ``None`` went
unnoticed).  Each call is made with exactly one thing wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.errors import CryptoError, DecodeError, ParameterError, SecAggError
from secagg.primitives import aead, field, kdf, kex, prg, rand, shamir, sign
from secagg.primitives.rand import AesCtrRandom, InsecureDeterministicRandom

SEED = b"s" * 16
RNG = InsecureDeterministicRandom(3, warn=False)
PK = kex.KeyPair.generate(RNG).public
U32 = np.zeros(4, dtype=np.uint32)

CASES: list[tuple[str, Callable[[], Any], type[SecAggError], str]] = [
    # aead
    (
        "aead key",
        lambda: aead.seal(b"k" * 16, b"", session_id=b"", round_=0, sender=1, receiver=2),
        ParameterError,
        "AEAD key must be 32 bytes",
    ),
    # field
    (
        "modulus",
        lambda: field.check_prime(1),
        ParameterError,
        "the field modulus must be an integer >= 2",
    ),
    (
        "element of P",
        lambda: field.check_element(field.P, what="share"),
        ParameterError,
        "share is not an element of the field [0, P)",
    ),
    (
        "element of 7",
        lambda: field.check_element(7, prime=7),
        ParameterError,
        "value is not an element of the field [0, 7)",
    ),
    (
        "decode type",
        lambda: field.decode_element("x" * 33),
        DecodeError,  # type: ignore[arg-type]
        "a field element must be bytes",
    ),
    (
        "decode length",
        lambda: field.decode_element(b"\x00" * 32),
        DecodeError,
        "a field element is 33 bytes, got 32",
    ),
    (
        "decode range",
        lambda: field.decode_element(field.P.to_bytes(33, "big")),
        DecodeError,
        "field element out of range",
    ),
    (
        "secret length",
        lambda: field.secret_to_element(b"\x00" * 31),
        ParameterError,
        "secrets are exactly 32 bytes",
    ),
    (
        "not a secret",
        lambda: field.element_to_secret(2**256),
        ParameterError,
        "reconstructed value is not a 32-byte secret (inconsistent shares)",
    ),
    ("inverse of 0", lambda: field.inverse(0), ParameterError, "zero has no inverse"),
    # kdf
    (
        "bool field",
        lambda: kdf.encode_info("p", b"", (True,)),
        ParameterError,
        "bool is not a valid label field",
    ),
    (
        "int field",
        lambda: kdf.encode_info("p", b"", (2**64,)),
        ParameterError,
        "integer label fields must be in [0, 2^64)",
    ),
    (
        "field type",
        lambda: kdf.encode_info("p", b"", (1.5,)),
        ParameterError,  # type: ignore[arg-type]
        "unsupported label field type float",
    ),
    (
        "int_field bool",
        lambda: kdf.int_field(True),
        ParameterError,
        "bool is not a valid label field",
    ),
    (
        "int_field range",
        lambda: kdf.int_field(-1),
        ParameterError,
        "integer label fields must be in [0, 2^64)",
    ),
    ("purpose", lambda: kdf.encode_info(""), ParameterError, "purpose must be a non-empty string"),
    (
        "short ikm",
        lambda: kdf.derive(b"k" * 15, purpose="p"),
        ParameterError,
        "input keying material must be at least 16 bytes",
    ),
    (
        "length",
        lambda: kdf.derive(b"k" * 16, purpose="p", length=8161),
        ParameterError,
        "length must be in [16, 8160]",
    ),
    (
        "short ikm (info)",
        lambda: kdf.derive_info(b"k" * 15, b""),
        ParameterError,
        "input keying material must be at least 16 bytes",
    ),
    (
        "length (info)",
        lambda: kdf.derive_info(b"k" * 16, b"", 15),
        ParameterError,
        "length must be in [16, 8160]",
    ),
    # kex, sign
    (
        "x25519 public",
        lambda: kex.check_public_key(PK[:31]),
        ParameterError,
        "an X25519 public key is exactly 32 bytes",
    ),
    (
        "x25519 private",
        lambda: kex.KeyPair.from_private_bytes(b"\x01" * 33),
        ParameterError,
        "an X25519 private key is exactly 32 bytes",
    ),
    (
        "pairwise self",
        lambda: kex.derive_pairwise(
            b"\x01" * 32, PK, purpose="p", session_id=b"", party_a=3, party_b=3
        ),
        ParameterError,
        "a party cannot agree a pairwise key with itself",
    ),
    (
        "low-order peer",
        lambda: kex.agree(b"\x01" * 32, bytes(32)),
        CryptoError,
        "cryptographic verification failed",
    ),
    (
        "ed25519 private",
        lambda: sign.SigningKey.from_private_bytes(b"\x01" * 31),
        ParameterError,
        "an Ed25519 private key is exactly 32 bytes",
    ),
    (
        "bad signature",
        lambda: sign.verify(PK, b"\x00" * 64, b"m"),
        CryptoError,
        "cryptographic verification failed",
    ),
    # prg
    (
        "bits",
        lambda: prg.dtype_for_bits(65),
        ParameterError,
        "bits must be an integer in [1, 64], got 65",
    ),
    (
        "seed type",
        lambda: prg.expand("s" * 16, 4, 32),
        ParameterError,  # type: ignore[arg-type]
        "seed must be bytes",
    ),
    (
        "seed length",
        lambda: prg.expand(b"s" * 65, 4, 32),
        ParameterError,
        "seed must be 16..64 bytes (>= 128 bits), got 65",
    ),
    (
        "offset",
        lambda: prg.expand(SEED, 4, 32, offset=-1),
        ParameterError,
        "offset must be a non-negative integer",
    ),
    (
        "length",
        lambda: prg.expand(SEED, -1, 32),
        ParameterError,
        "length must be a non-negative integer",
    ),
    (
        "vec dtype",
        lambda: prg.add_mask(np.zeros(4, dtype=np.uint64), SEED, 32),
        ParameterError,
        "vec must be a 1-D numpy array of dtype uint32",
    ),
    (
        "vec layout",
        lambda: prg.add_mask(np.zeros(8, dtype=np.uint32)[::2], SEED, 32),
        ParameterError,
        "vec must be C-contiguous and writable",
    ),
    (
        "chunk",
        lambda: prg.apply_masks(U32.copy(), [(SEED, 1)], 32, chunk_elements=6),
        ParameterError,
        "chunk_elements must be a positive multiple of 4",
    ),
    (
        "vec range",
        lambda: prg.add_mask(np.full(4, 16, dtype=np.uint32), SEED, 4),
        ParameterError,
        "vec holds values >= 2^4",
    ),
    (
        "sign",
        lambda: prg.add_mask(U32.copy(), SEED, 32, sign=2),
        ParameterError,
        "mask sign must be +1 or -1",
    ),
    # rand
    (
        "system n",
        lambda: rand.SystemRandom().random_bytes(-1),
        ParameterError,
        "n must be non-negative",
    ),
    (
        "seed bool",
        lambda: InsecureDeterministicRandom(True, warn=False),
        ParameterError,
        "seed must be bytes or a non-negative int",
    ),
    (
        "seed int",
        lambda: InsecureDeterministicRandom(-1, warn=False),
        ParameterError,
        "integer seed must be in [0, 2^256)",
    ),
    (
        "seed bytes",
        lambda: InsecureDeterministicRandom(b"x" * 15, warn=False),
        ParameterError,
        "seed must be at least 16 bytes",
    ),
    ("seeded n", lambda: RNG.random_bytes(-1), ParameterError, "n must be non-negative"),
    ("aes key", lambda: AesCtrRandom(key=b"k"), ParameterError, "key must be 32 bytes"),
    (
        "aes n",
        lambda: AesCtrRandom(key=b"k" * 32).random_bytes(-1),
        ParameterError,
        "n must be a non-negative integer",
    ),
    (
        "aes nbytes",
        lambda: AesCtrRandom(key=b"k" * 32).fill(bytearray(4), 5),
        ParameterError,
        "nbytes must fit the buffer",
    ),
    ("randbelow", lambda: rand.randbelow(RNG, 0), ParameterError, "n must be positive"),
    (
        "uint64 size",
        lambda: rand.random_uint64(RNG, -1),
        ParameterError,
        "size must be non-negative",
    ),
    # shamir
    (
        "threshold",
        lambda: shamir.split(5, 4, [1, 2, 3], RNG),
        ParameterError,
        "threshold must satisfy 1 <= t <= n (t=4, n=3)",
    ),
    (
        "x zero",
        lambda: shamir.split(5, 2, [0, 2, 3], RNG),
        ParameterError,
        "x-coordinate 0 would reveal the secret",
    ),
    (
        "x duplicate",
        lambda: shamir.split(5, 2, [2, 2, 3], RNG),
        ParameterError,
        "duplicate x-coordinates",
    ),
    (
        "empty polynomial",
        lambda: shamir.evaluate_polynomial([], 1),
        ParameterError,
        "a polynomial needs at least one coefficient",
    ),
    (
        "reconstruct t",
        lambda: shamir.reconstruct([(1, 1)], 0),
        ParameterError,
        "threshold must be a positive integer",
    ),
    (
        "reconstruct count",
        lambda: shamir.reconstruct([(1, 1)], 2),
        ParameterError,
        "need at least 2 shares, got 1",
    ),
    (
        "inconsistent",
        lambda: shamir.reconstruct([(1, 1), (2, 2), (3, 4)], 2),
        ParameterError,
        "inconsistent shares: extra share does not lie on the polynomial",
    ),
    (
        "many t",
        lambda: shamir.reconstruct_many([[(1, 1)]], 0),
        ParameterError,
        "threshold must be a positive integer",
    ),
    (
        "many count",
        lambda: shamir.reconstruct_many([[(1, 1), (2, 1)], [(1, 1)]], 2),
        ParameterError,
        "need at least 2 shares, got 1",
    ),
    (
        "many x zero",
        lambda: shamir.reconstruct_many([[(0, 1), (2, 1)]], 2),
        ParameterError,
        "x-coordinate 0 would reveal the secret",
    ),
    (
        "many x duplicate",
        lambda: shamir.reconstruct_many([[(2, 1), (2, 5)]], 2),
        ParameterError,
        "duplicate x-coordinates",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_message_names_the_argument_and_the_bound(
    call: Callable[[], Any], error: type[SecAggError], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()
