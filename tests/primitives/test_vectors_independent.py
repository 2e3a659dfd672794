"""Every primitives vector file re-derived by a second, independent path.

Written from ``protocols/primitives.md`` alone: nothing here imports
``secagg`` (the vectors are checked against the library in
``test_vectors_kat.py``; ``protocols/vectors/generate.py`` computes them with the
library).  The KDF label encoding, the AEAD associated data and box layout, the
``InsecureDeterministicRandom`` stream and ``randbelow``, the X25519 pairwise
derivation and the Ed25519 keys/signatures are rebuilt on ``cryptography``'s
low-level APIs; Shamir sharing on plain Python integers.  The PRG vectors have
their own file (``test_prg_independent.py``).  A bug shared by the library and
its vectors — e.g. a label field encoded the wrong way in both — fails here.

The RFC 7748 §6.1 and RFC 8032 §7.1 literals are pinned as they are printed in
the RFCs, so the vector files cannot drift from the RFCs either.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._vectors import load

# primitives.md §1
SALT = b"secagg/1 hkdf salt"
VERSION = b"secagg/1"
# primitives.md §4
P = 2**256 + 297


# ----------------------------------------------------------------- §1 KDF, by hand


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _field(tagged: dict[str, str]) -> bytes:
    """``F(field)`` from a tagged JSON field (§1 table, §9 tags)."""
    ((kind, value),) = tagged.items()
    if kind == "int":
        n = int(value)
        assert 0 <= n < 2**64
        return n.to_bytes(8, "big")
    if kind == "str":
        return value.encode("utf-8")
    assert kind == "bytes", kind
    return bytes.fromhex(value)


def _info(purpose: str, session_id: bytes, fields: list[bytes]) -> bytes:
    out = _lp(b"secagg") + _lp(VERSION) + _lp(session_id) + _lp(purpose.encode("utf-8"))
    out += struct.pack(">I", len(fields))
    return out + b"".join(_lp(f) for f in fields)


def _hkdf(ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=SALT, info=info).derive(ikm)


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def test_kdf_vectors() -> None:
    doc = load("kdf.json")
    assert bytes.fromhex(doc["salt"]) == SALT
    assert doc["cases"]
    for c in doc["cases"]:
        sid = bytes.fromhex(c["session_id"])
        info = _info(c["purpose"], sid, [_field(f) for f in c["fields"]])
        assert info.hex() == c["info"], c["purpose"]
        okm = _hkdf(bytes.fromhex(c["ikm"]), info, c["length"])
        assert okm.hex() == c["okm"], c["purpose"]
    (only,) = doc["encode_info_only"]
    info = _info(
        only["purpose"], bytes.fromhex(only["session_id"]), [_field(f) for f in only["fields"]]
    )
    assert info.hex() == only["info"]


def test_kdf_spec_example_literal() -> None:
    """The worked ``encode_info("prg/aes-128-ctr")`` example printed in §1."""
    printed = (
        "00000006 736563616767 00000008 7365636167672f31 00000000 0000000f "
        "7072672f6165732d3132382d637472 00000000"
    )
    assert _info("prg/aes-128-ctr", b"", []).hex() == printed.replace(" ", "")


# ----------------------------------------------------------------- §6 AEAD


def test_aead_vectors_ad_and_box_layout() -> None:
    doc = load("aead.json")
    assert doc["cases"]
    for c in doc["cases"]:
        sid = bytes.fromhex(c["session_id"])
        fields = [_u64(c["round"]), _u64(c["sender"]), _u64(c["receiver"]), c["context"].encode()]
        ad = _info("aead-ad", sid, fields)
        assert ad.hex() == c["associated_data"]
        key, nonce = bytes.fromhex(c["key"]), bytes.fromhex(c["nonce"])
        pt = bytes.fromhex(c["plaintext"])
        assert len(key) == 32 and len(nonce) == 12
        box = bytes.fromhex(c["box"])
        # wire form: nonce (12) || ciphertext (len(pt)) || tag (16)
        assert len(box) == 12 + len(pt) + 16 and box[:12] == nonce
        assert nonce + AESGCM(key).encrypt(nonce, pt, ad) == box
        assert AESGCM(key).decrypt(box[:12], box[12:], ad) == pt
        # the AD binds the round: the same box does not open under round + 1
        other = _info("aead-ad", sid, [_u64(c["round"] + 1), *fields[1:]])
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(box[:12], box[12:], other)


# ----------------------------------------------------------------- §8 rand


def _ctr_stream(key: bytes, n: int) -> bytes:
    """AES-CTR keystream from counter block 0 (128-bit big-endian), i.e. zeros encrypted."""
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(n)) + enc.finalize()


def _rng_key(seed: bytes, label: str) -> bytes:
    return _hkdf(seed, _info("insecure-deterministic-rng", b"", [label.encode()]), 32)


def _randbelow(stream: bytes, n: int) -> int:
    k = n.bit_length()
    m = -(-k // 8)
    pos = 0
    while True:
        v = int.from_bytes(stream[pos : pos + m], "big") >> (8 * m - k)
        pos += m
        if v < n:
            return v


def test_rand_vectors() -> None:
    doc = load("rand.json")
    assert doc["cases"]
    for c in doc["cases"]:
        seed = bytes.fromhex(c["seed"])
        if c["seed_as_int"] is not None:  # an int seed is its 32-byte big-endian encoding
            assert int(c["seed_as_int"]).to_bytes(32, "big") == seed
        key = _rng_key(seed, c["label"])
        assert key.hex() == c["key"]
        stream = _ctr_stream(key, 64)
        # successive random_bytes(40), random_bytes(24) are successive stream bytes
        assert stream[:40].hex() == c["bytes_0_40"]
        assert stream[40:64].hex() == c["bytes_40_64"]
        child = _ctr_stream(_rng_key(seed, c["label"] + "/c"), 32)
        assert child.hex() == c["child_c_bytes_0_32"]
        assert _randbelow(_ctr_stream(key, 256), 1000) == c["randbelow_1000_first"]


# ----------------------------------------------------------------- §3 X25519

RFC7748_61 = {
    "alice_private": "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "alice_public": "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    "bob_private": "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    "bob_public": "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    "shared": "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
}


def _x25519_public(sk: bytes) -> bytes:
    return (
        X25519PrivateKey.from_private_bytes(sk)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def _x25519(sk: bytes, pk: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(pk))


def test_rfc7748_literals() -> None:
    r = {k: bytes.fromhex(v) for k, v in RFC7748_61.items()}
    assert _x25519_public(r["alice_private"]) == r["alice_public"]
    assert _x25519_public(r["bob_private"]) == r["bob_public"]
    assert _x25519(r["alice_private"], r["bob_public"]) == r["shared"]
    assert _x25519(r["bob_private"], r["alice_public"]) == r["shared"]
    case1 = load("x25519.json")["cases"][0]
    assert case1["private_a"] == RFC7748_61["alice_private"]
    assert case1["public_a"] == RFC7748_61["alice_public"]
    assert case1["private_b"] == RFC7748_61["bob_private"]
    assert case1["public_b"] == RFC7748_61["bob_public"]
    assert case1["shared_secret"] == RFC7748_61["shared"]


def test_x25519_vectors() -> None:
    doc = load("x25519.json")
    assert doc["cases"]
    for c in doc["cases"]:
        ska, skb = bytes.fromhex(c["private_a"]), bytes.fromhex(c["private_b"])
        assert _x25519_public(ska).hex() == c["public_a"]
        assert _x25519_public(skb).hex() == c["public_b"]
        shared = _x25519(ska, bytes.fromhex(c["public_b"]))
        assert shared.hex() == c["shared_secret"]
        lo, hi = sorted((c["party_a"], c["party_b"]))
        info = _info(c["purpose"], bytes.fromhex(c["session_id"]), [_u64(lo), _u64(hi)])
        assert _hkdf(shared, info, c["length"]).hex() == c["pairwise_key"]
    assert doc["rejected"]
    for r in doc["rejected"]:
        # a low-order peer key gives the all-zero secret; OpenSSL refuses to return it
        sk, pk = bytes.fromhex(r["private"]), bytes.fromhex(r["peer_public"])
        try:
            out = _x25519(sk, pk)
        except ValueError:
            continue
        assert out == bytes(32)


# ----------------------------------------------------------------- §7 Ed25519

#: RFC 8032 §7.1 TEST 1 (empty message) and TEST 2 (message 0x72), as printed.
RFC8032_71 = [
    {
        "secret": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "public": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "message": "",
        "signature": (
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        ),
    },
    {
        "secret": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "public": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "message": "72",
        "signature": (
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
            "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        ),
    },
]


def _ed25519(sk: bytes, msg: bytes) -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.from_private_bytes(sk)
    pub = key.public_key()
    sig = key.sign(msg)
    pub.verify(sig, msg)
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw), sig


@pytest.mark.parametrize("t", RFC8032_71, ids=["TEST1", "TEST2"])
def test_rfc8032_literals(t: dict[str, str]) -> None:
    pub, sig = _ed25519(bytes.fromhex(t["secret"]), bytes.fromhex(t["message"]))
    assert pub.hex() == t["public"] and sig.hex() == t["signature"]


def test_ed25519_vectors() -> None:
    doc = load("ed25519.json")
    assert doc["cases"]
    case1 = doc["cases"][0]  # RFC 8032 TEST 1, per the spec
    assert {k: case1[k] for k in ("public", "message", "signature")} == {
        k: RFC8032_71[0][k] for k in ("public", "message", "signature")
    }
    assert case1["private"] == RFC8032_71[0]["secret"]
    for c in doc["cases"]:
        pub, sig = _ed25519(bytes.fromhex(c["private"]), bytes.fromhex(c["message"]))
        assert pub.hex() == c["public"] and sig.hex() == c["signature"]


# ----------------------------------------------------------------- §4-5 Shamir, plain ints


def _poly(coeffs: list[int], x: int, p: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % p
    return acc


def _lagrange0(points: list[tuple[int, int]], p: int) -> int:
    s = 0
    for i, (xi, yi) in enumerate(points):
        num = den = 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * xj % p
                den = den * (xj - xi) % p
        s = (s + yi * num * pow(den, -1, p)) % p
    return s


def test_shamir_prime_is_the_spec_constant() -> None:
    doc = load("shamir.json")
    assert (
        int(doc["P"])
        == P
        == int("115792089237316195423570985008687907853269984665640564039457584007913129640233")
    )
    # Miller-Rabin with the first 20 prime bases (a composite passes with probability
    # < 4^-20 for random bases; P is the documented prime, this guards against a typo)
    d, r = P - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71):
        x = pow(a, d, P)
        if x in (1, P - 1):
            continue
        for _ in range(r - 1):
            x = x * x % P
            if x == P - 1:
                break
        else:
            raise AssertionError(f"{a} witnesses that P is composite")
    # smallest prime above 2^256: a base-3 Fermat witness for every odd 0 < k < 297
    # (base 2 would not do: 2^256 + 1 is the Fermat number F_8, a base-2 pseudoprime)
    assert all(pow(3, 2**256 + k - 1, 2**256 + k) != 1 for k in range(1, 297, 2))


def test_shamir_vectors() -> None:
    doc = load("shamir.json")
    assert doc["cases"]
    for c in doc["cases"]:
        p, t = int(c["prime"]), c["t"]
        coeffs = [int(v) for v in c["coefficients"]]
        assert len(coeffs) == t and all(0 <= v < p for v in coeffs)
        shares = [_poly(coeffs, x, p) for x in c["xs"]]
        assert [str(y) for y in shares] == c["shares"]
        for rec in c["reconstructions"]:
            pts = [(x, shares[c["xs"].index(x)]) for x in rec["xs"]]
            assert _lagrange0(pts[:t], p) == coeffs[0] == int(rec["secret"])
            # extra shares lie on the same polynomial (§5)
            for x, y in pts[t:]:
                assert _poly(coeffs, x, p) == y
        if p == P:
            assert bytes.fromhex(c["secret_bytes"]) == coeffs[0].to_bytes(32, "big")
            assert c["shares_encoded"] == [y.to_bytes(33, "big").hex() for y in shares]


def test_every_vector_file_is_covered() -> None:
    """A new file in protocols/vectors/ must get an independent check here (or its own)."""
    from ._vectors import VECTORS

    checked = {"kdf.json", "aead.json", "rand.json", "x25519.json", "ed25519.json", "shamir.json"}
    checked |= {"prg.json"}  # test_prg_independent.py
    # protocol (not primitives) vectors, each with its own test
    checked |= {"secagg_round.json"}  # tests/masking/test_vectors.py (round transcript)
    checked |= {"secagg_round_config.json"}  # tests/masking/test_config_codec.py
    # tests/lightsecagg/test_vectors.py (PRG re-derived with cryptography alone, code
    # matrices with Python integers, the round replayed into a fresh server)
    checked |= {"lightsecagg.json", "lightsecagg_round.json"}
    present: set[Any] = {p.name for p in VECTORS.glob("*.json")}
    assert present <= checked, present - checked
