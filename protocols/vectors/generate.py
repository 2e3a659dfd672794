"""Regenerate every known-answer vector file in this directory.

Run from the repository root::

    python protocols/vectors/generate.py            # rewrite the JSON files
    python protocols/vectors/generate.py --check    # exit 1 if a file would change

Every input is fixed in this script (seeds are SHA-256 of a readable label, keys
come from RFC 7748 / RFC 8032 where those exist), so the output depends only on
the definitions in ``protocols/primitives.md``.  Outputs are computed with
``secagg.primitives``; ``tests/primitives/test_vectors_kat.py`` checks the library
against them, ``tests/primitives/test_prg_independent.py`` re-derives the PRG
vectors and ``tests/primitives/test_vectors_independent.py`` every other file
(KDF labels, AEAD associated data and box layout, the ``rand`` stream and
``randbelow``, X25519, Ed25519 with the RFC 7748 / RFC 8032 literals pinned, and
Shamir on plain integers) directly on ``cryptography``'s APIs, written from
``protocols/primitives.md`` without importing ``secagg``.

Conventions in the JSON: byte strings are lowercase hex; field elements and
Z_{2^b} elements are *decimal strings* (64-bit and 257-bit values do not survive
JSON parsers that use doubles); KDF label fields are tagged objects
``{"int": "<decimal>"}``, ``{"str": "..."}`` or ``{"bytes": "<hex>"}``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:  # the sibling _files helper, also when loaded by tests
    sys.path.insert(0, str(HERE))

import cryptography  # noqa: E402
import numpy as np  # noqa: E402
from _files import write_or_check  # noqa: E402

import secagg  # noqa: E402
from secagg.errors import CryptoError  # noqa: E402
from secagg.primitives import aead, field, kdf, kex, prg, rand, shamir, sign  # noqa: E402

PRG_BITS = (1, 7, 16, 20, 32, 33, 48, 64)
#: (offset, length) pairs; offsets deliberately not multiples of 4 elements, one far away.
PRG_WINDOWS = ((0, 9), (3, 7), (5, 1), (1021, 6), ((1 << 20) + 7, 5))


def h(label: str, n: int = 32) -> bytes:
    """Deterministic test bytes: SHA-256 of a label, truncated or repeated to ``n``."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}#{i}".encode()).digest()
        i += 1
    return out[:n]


def provenance(what: str) -> dict[str, Any]:
    return {
        "description": what,
        "generator": "protocols/vectors/generate.py",
        "spec": "protocols/primitives.md",
        "protocol_version": kdf.PROTOCOL_VERSION,
        "library_versions": {
            "secagg": secagg.__version__,
            "python": platform.python_version(),
            "cryptography": cryptography.__version__,
            "numpy": np.__version__,
        },
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
    }


def enc_field(f: kdf.Field) -> dict[str, str]:
    if isinstance(f, int):
        return {"int": str(f)}
    if isinstance(f, str):
        return {"str": f}
    return {"bytes": bytes(f).hex()}


# --------------------------------------------------------------------------- PRG


def gen_prg() -> dict[str, Any]:
    cases = []
    for bits in PRG_BITS:
        seed_len = 16 if bits % 2 else 32  # both ends of the seed range get exercised
        seed = h(f"prg seed b={bits}", seed_len)
        for offset, length in PRG_WINDOWS:
            elems = prg.expand(seed, length, bits, offset=offset)
            cases.append(
                {
                    "seed": seed.hex(),
                    "bits": bits,
                    "offset": offset,
                    "length": length,
                    "key": prg.prg_key(seed).hex(),
                    "elements": [str(int(v)) for v in elems],
                }
            )
    # a 64-byte seed (the upper bound) once
    seed = h("prg seed max", 64)
    cases.append(
        {
            "seed": seed.hex(),
            "bits": 24,
            "offset": 2,
            "length": 6,
            "key": prg.prg_key(seed).hex(),
            "elements": [str(int(v)) for v in prg.expand(seed, 6, 24, offset=2)],
        }
    )
    masked = []
    for bits in (16, 32, 48):
        dt = prg.dtype_for_bits(bits)
        n = 11
        vec = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) & np.uint64(
            (1 << bits) - 1
        )
        start = vec.astype(dt)
        masks = [
            (h(f"mask a b={bits}"), 1),
            (h(f"mask b b={bits}"), -1),
            (h(f"mask c b={bits}"), 1),
        ]
        out = start.copy()
        prg.apply_masks(out, masks, bits, offset=13)
        masked.append(
            {
                "bits": bits,
                "offset": 13,
                "input": [str(int(v)) for v in start],
                "masks": [{"seed": s.hex(), "sign": sg} for s, sg in masks],
                "output": [str(int(v)) for v in out],
            }
        )
    return {
        **provenance(
            "PRG: seed -> AES-128 key (HKDF, purpose 'prg/aes-128-ctr') -> AES-128-CTR keystream "
            "-> little-endian words (4 bytes for b<=32, 8 above) mod 2^b; 'elements' are "
            "elements offset..offset+length-1. 'apply_masks': output = input + sum sign*PRG(seed) "
            "mod 2^b over the same window."
        ),
        "cases": cases,
        "apply_masks": masked,
    }


# --------------------------------------------------------------------------- KDF


def gen_kdf() -> dict[str, Any]:
    specs: list[tuple[bytes, str, bytes, Sequence[kdf.Field], int]] = [
        (h("kdf ikm 1"), "prg/aes-128-ctr", b"", (), 16),
        (h("kdf ikm 2"), "insecure-deterministic-rng", b"", ("root",), 32),
        (h("kdf ikm 2"), "insecure-deterministic-rng", b"", ("root/child",), 32),
        (h("kdf ikm 3"), "pairwise-mask-seed", h("session", 16), (3, 7), 32),
        (h("kdf ikm 3"), "pairwise-mask-seed", h("session", 16), (3, 7, "x", b"\x00\x01"), 32),
        (h("kdf ikm 4", 16), "example/long-output", b"sid", (0, 2**64 - 1), 80),
        (h("kdf ikm 5", 64), "example/empty-string-field", b"", ("",), 32),
    ]
    cases = []
    for ikm, purpose, sid, fields, length in specs:
        cases.append(
            {
                "ikm": ikm.hex(),
                "purpose": purpose,
                "session_id": sid.hex(),
                "fields": [enc_field(f) for f in fields],
                "length": length,
                "info": kdf.encode_info(purpose, sid, fields).hex(),
                "okm": kdf.derive(
                    ikm, purpose=purpose, session_id=sid, fields=fields, length=length
                ).hex(),
            }
        )
    ad = aead.associated_data(
        session_id=h("session", 16), round_=2, sender=5, receiver=9, context="share-keys"
    )
    return {
        **provenance(
            "KDF: HKDF-SHA256(salt=HKDF_SALT, ikm, info=encode_info(purpose, session_id, fields))."
        ),
        "salt": kdf.HKDF_SALT.hex(),
        "cases": cases,
        "encode_info_only": [
            {
                "purpose": "aead-ad",
                "session_id": h("session", 16).hex(),
                "fields": [enc_field(f) for f in (2, 5, 9, "share-keys")],
                "info": ad.hex(),
            }
        ],
    }


# --------------------------------------------------------------------------- X25519

# RFC 7748 section 6.1
RFC7748_ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")


def gen_x25519() -> dict[str, Any]:
    pairs = [
        (RFC7748_ALICE, RFC7748_BOB, 3, 7),
        (h("x25519 sk u"), h("x25519 sk v"), 12, 5),
    ]
    cases = []
    for ska, skb, ida, idb in pairs:
        a = kex.KeyPair.from_private_bytes(ska)
        b = kex.KeyPair.from_private_bytes(skb)
        shared = kex.agree(ska, b.public)
        assert shared == kex.agree(skb, a.public)
        sid = h("x25519 session", 16)
        out = kex.derive_pairwise(
            ska, b.public, purpose="pairwise-mask-seed", session_id=sid, party_a=ida, party_b=idb
        )
        assert out == kex.derive_pairwise(
            skb, a.public, purpose="pairwise-mask-seed", session_id=sid, party_a=idb, party_b=ida
        )
        cases.append(
            {
                "private_a": ska.hex(),
                "private_b": skb.hex(),
                "public_a": a.public.hex(),
                "public_b": b.public.hex(),
                "shared_secret": shared.hex(),
                "party_a": ida,
                "party_b": idb,
                "purpose": "pairwise-mask-seed",
                "session_id": sid.hex(),
                "length": 32,
                "pairwise_key": out.hex(),
            }
        )
    low_order = []
    for pk in (bytes(32), (1).to_bytes(32, "little")):
        try:
            kex.agree(RFC7748_ALICE, pk)
        except CryptoError:
            low_order.append({"private": RFC7748_ALICE.hex(), "peer_public": pk.hex()})
    return {
        **provenance(
            "X25519 (RFC 7748) private -> public -> shared secret -> derive_pairwise "
            "(HKDF with fields (min id, max id)). Case 1 uses the RFC 7748 section 6.1 keys. "
            "'rejected': peer keys of low order whose shared secret is all zero; agree() "
            "raises CryptoError."
        ),
        "cases": cases,
        "rejected": low_order,
    }


# --------------------------------------------------------------------------- Shamir


def gen_shamir() -> dict[str, Any]:
    cases = []
    specs = [
        (field.P, 3, (1, 2, 3, 4, 5), [(1, 2, 3), (5, 3, 1), (2, 4, 5, 1)]),
        (field.P, 1, (7, 9), [(9,), (7, 9)]),
        (field.P, 4, (2, 5, 11, 12, 40, 1000), [(1000, 40, 12, 11), (2, 5, 11, 12)]),
        (257, 3, (1, 2, 3, 4), [(4, 2, 1), (1, 2, 3, 4)]),
    ]
    for idx, (prime, t, xs, subsets) in enumerate(specs):
        if prime == field.P:
            secret = field.secret_to_element(h(f"shamir secret {idx}"))
        else:
            secret = int.from_bytes(h(f"shamir secret {idx}"), "big") % prime
        coeffs = [secret] + [
            int.from_bytes(h(f"shamir coeff {idx} {k}", 40), "big") % prime for k in range(1, t)
        ]
        shares = [shamir.evaluate_polynomial(coeffs, x, prime=prime) for x in xs]
        recs = []
        for sub in subsets:
            pts = [(x, shares[xs.index(x)]) for x in sub]
            rec = shamir.reconstruct(pts, t, prime=prime)
            assert rec == secret
            recs.append({"xs": list(sub), "secret": str(rec)})
        case: dict[str, Any] = {
            "prime": str(prime),
            "t": t,
            "coefficients": [str(c) for c in coeffs],
            "xs": list(xs),
            "shares": [str(y) for y in shares],
            "reconstructions": recs,
        }
        if prime == field.P:
            case["secret_bytes"] = field.element_to_secret(secret).hex()
            case["shares_encoded"] = [field.encode_element(y).hex() for y in shares]
        cases.append(case)
    return {
        **provenance(
            "Shamir t-of-n over P = 2^256 + 297 (and one case over 257): f(X) = sum c[k] X^k, "
            "c[0] = secret; share for holder x is f(x), encoded as 33-byte big-endian; any t "
            "shares reconstruct by Lagrange interpolation at 0."
        ),
        "P": str(field.P),
        "cases": cases,
    }


# --------------------------------------------------------------------------- AEAD


class _FixedBytes:
    """A RandomSource that returns fixed bytes (to pin the AEAD nonce)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def random_bytes(self, n: int) -> bytes:
        assert n == len(self._data)
        return self._data

    def child(self, label: str) -> _FixedBytes:
        return self


def gen_aead() -> dict[str, Any]:
    specs = [
        (b"", 0, 1, 2, ""),
        (b"a share of b_u and s_u^SK" * 3, 1, 17, 4, "share-keys"),
        (bytes(range(64)), 3, 2**32, 1, ""),
    ]
    cases = []
    for i, (pt, rnd, snd, rcv, ctx) in enumerate(specs):
        key = h(f"aead key {i}")
        nonce = h(f"aead nonce {i}", 12)
        sid = h("aead session", 16)
        box = aead.seal(
            key,
            pt,
            session_id=sid,
            round_=rnd,
            sender=snd,
            receiver=rcv,
            context=ctx,
            rng=_FixedBytes(nonce),
        )
        ad = aead.associated_data(session_id=sid, round_=rnd, sender=snd, receiver=rcv, context=ctx)
        cases.append(
            {
                "key": key.hex(),
                "nonce": nonce.hex(),
                "plaintext": pt.hex(),
                "session_id": sid.hex(),
                "round": rnd,
                "sender": snd,
                "receiver": rcv,
                "context": ctx,
                "associated_data": ad.hex(),
                "box": box.hex(),
            }
        )
    return {
        **provenance(
            "AES-256-GCM; box = nonce(12) || ciphertext || tag(16); associated data = "
            "encode_info('aead-ad', session_id, (round, sender, receiver, context))."
        ),
        "cases": cases,
    }


# --------------------------------------------------------------------------- Ed25519

# RFC 8032 section 7.1, TEST 1 secret key
RFC8032_TEST1 = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def gen_ed25519() -> dict[str, Any]:
    specs = [(RFC8032_TEST1, b""), (h("ed25519 sk"), b"secagg/1 advertise-keys transcript")]
    cases = []
    for sk, msg in specs:
        key = sign.SigningKey.from_private_bytes(sk)
        sig = key.sign(msg)
        sign.verify(key.public, sig, msg)
        cases.append(
            {
                "private": sk.hex(),
                "public": key.public.hex(),
                "message": msg.hex(),
                "signature": sig.hex(),
            }
        )
    return {
        **provenance(
            "Ed25519 (RFC 8032, pure): private seed -> public key; deterministic signature. "
            "Case 1 is RFC 8032 section 7.1 TEST 1."
        ),
        "cases": cases,
    }


# --------------------------------------------------------------------------- rand


def gen_rand() -> dict[str, Any]:
    cases = []
    for seed, label in ((0, "root"), (h("rng seed"), "root"), (h("rng seed"), "root/client/3")):
        r = rand.InsecureDeterministicRandom(seed, label, warn=False)
        seed_b = seed.to_bytes(32, "big") if isinstance(seed, int) else seed
        first = r.random_bytes(40)
        nxt = r.random_bytes(24)
        child = r.child("c").random_bytes(32)
        below = [
            rand.randbelow(rand.InsecureDeterministicRandom(seed, label, warn=False), n)
            for n in (1000,)
        ]
        cases.append(
            {
                "seed": seed_b.hex(),
                "seed_as_int": str(seed) if isinstance(seed, int) else None,
                "label": label,
                "key": kdf.derive(
                    seed_b, purpose="insecure-deterministic-rng", fields=(label,), length=32
                ).hex(),
                "bytes_0_40": first.hex(),
                "bytes_40_64": nxt.hex(),
                "child_c_bytes_0_32": child.hex(),
                "randbelow_1000_first": below[0],
            }
        )
    return {
        **provenance(
            "InsecureDeterministicRandom(seed, label): AES-256-CTR keystream (counter block 0) "
            "under HKDF(seed, purpose 'insecure-deterministic-rng', fields (label,)); child(c) "
            "uses label + '/' + c; int seeds are 32-byte big-endian. randbelow: rejection "
            "sampling of big-endian draws."
        ),
        "cases": cases,
    }


GENERATORS = {
    "prg.json": gen_prg,
    "kdf.json": gen_kdf,
    "x25519.json": gen_x25519,
    "shamir.json": gen_shamir,
    "aead.json": gen_aead,
    "ed25519.json": gen_ed25519,
    "rand.json": gen_rand,
}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--check", action="store_true", help="verify the files instead of writing")
    ap.add_argument("--out", type=Path, default=HERE, help="output directory")
    args = ap.parse_args(argv)
    docs = {args.out / name: fn() for name, fn in GENERATORS.items()}
    return write_or_check(docs, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
