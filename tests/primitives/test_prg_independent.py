"""The PRG vectors re-derived from scratch on ``cryptography``'s Cipher and HKDF APIs.

Nothing here imports secagg.primitives.prg or secagg.primitives.kdf: the label
encoding, the counter-block layout and the word decoding are written out again from
protocols/primitives.md, so a bug shared by the code and its vectors shows up here.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._vectors import load

SALT = b"secagg/1 hkdf salt"


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def independent_key(seed: bytes) -> bytes:
    info = _lp(b"secagg") + _lp(b"secagg/1") + _lp(b"") + _lp(b"prg/aes-128-ctr") + b"\0\0\0\0"
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=SALT, info=info).derive(seed)


def independent_elements(seed: bytes, bits: int, offset: int, length: int) -> list[int]:
    width = 4 if bits <= 32 else 8
    first = offset * width
    last = (offset + length) * width
    block0 = first // 16
    nblocks = -(-last // 16) - block0
    # AES-CTR keystream = AES_k(counter block), counter = block index, 128-bit big-endian
    ecb = Cipher(algorithms.AES(independent_key(seed)), modes.ECB()).encryptor()
    blocks = b"".join((block0 + i).to_bytes(16, "big") for i in range(nblocks))
    ks = ecb.update(blocks) + ecb.finalize()
    ks = ks[first - 16 * block0 :]
    return [
        int.from_bytes(ks[i * width : (i + 1) * width], "little") % (1 << bits)
        for i in range(length)
    ]


def test_prg_vectors_match_an_independent_derivation():
    doc = load("prg.json")
    assert doc["cases"]
    for c in doc["cases"]:
        seed = bytes.fromhex(c["seed"])
        assert independent_key(seed).hex() == c["key"]
        want = independent_elements(seed, c["bits"], c["offset"], c["length"])
        assert [str(v) for v in want] == c["elements"], c


def test_apply_masks_vectors_match_an_independent_derivation():
    for c in load("prg.json")["apply_masks"]:
        bits, n = c["bits"], len(c["input"])
        acc = [int(v) for v in c["input"]]
        for m in c["masks"]:
            ks = independent_elements(bytes.fromhex(m["seed"]), bits, c["offset"], n)
            acc = [(a + m["sign"] * k) % (1 << bits) for a, k in zip(acc, ks)]
        assert [str(v) for v in acc] == c["output"]


def test_independent_derivation_is_not_trivially_equal():
    """Guard against a derivation that would match anything: different seeds differ."""
    a = independent_elements(b"\x01" * 16, 32, 3, 8)
    b = independent_elements(b"\x02" * 16, 32, 3, 8)
    assert a != b and len(set(a)) == 8
