"""Every known-answer vector in protocols/vectors/ against secagg.primitives."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import CryptoError
from secagg.primitives import aead, field, kdf, kex, prg, rand, shamir, sign

from ._vectors import FILES, VECTORS, field_value, load


@pytest.mark.parametrize("name", FILES)
def test_file_states_provenance_and_is_small(name):
    doc = load(name)
    for key in ("description", "generator", "library_versions", "date", "protocol_version"):
        assert key in doc, key
    assert doc["protocol_version"] == kdf.PROTOCOL_VERSION
    assert (VECTORS / name).stat().st_size < 200_000
    assert doc["cases"], "a vector file without cases checks nothing"


def test_every_json_file_is_covered():
    present = {p.name for p in VECTORS.glob("*.json") if not p.name.startswith("secagg_round")
               and not p.name.startswith("lightsecagg")}  # protocol vectors: own tests
    assert present == set(FILES)


def test_prg_vectors():
    doc = load("prg.json")
    bits_seen = set()
    for c in doc["cases"]:
        seed = bytes.fromhex(c["seed"])
        assert prg.prg_key(seed).hex() == c["key"]
        got = prg.expand(seed, c["length"], c["bits"], offset=c["offset"])
        assert [str(int(v)) for v in got] == c["elements"]
        bits_seen.add(c["bits"])
    assert {1, 7, 16, 20, 32, 33, 48, 64} <= bits_seen
    assert any(c["offset"] % 4 for c in doc["cases"])


def test_prg_apply_masks_vectors():
    for c in load("prg.json")["apply_masks"]:
        dt = prg.dtype_for_bits(c["bits"])
        vec = np.array([int(v) for v in c["input"]], dtype=dt)
        masks = [(bytes.fromhex(m["seed"]), m["sign"]) for m in c["masks"]]
        prg.apply_masks(vec, masks, c["bits"], offset=c["offset"])
        assert [str(int(v)) for v in vec] == c["output"]


def test_kdf_vectors():
    doc = load("kdf.json")
    assert bytes.fromhex(doc["salt"]) == kdf.HKDF_SALT
    purposes = set()
    for c in doc["cases"]:
        fields = [field_value(f) for f in c["fields"]]
        sid = bytes.fromhex(c["session_id"])
        assert kdf.encode_info(c["purpose"], sid, fields).hex() == c["info"]
        out = kdf.derive(
            bytes.fromhex(c["ikm"]), purpose=c["purpose"], session_id=sid, fields=fields,
            length=c["length"],
        )
        assert out.hex() == c["okm"]
        purposes.add(c["purpose"])
    assert {"prg/aes-128-ctr", "insecure-deterministic-rng", "pairwise-mask-seed"} <= purposes
    for c in doc["encode_info_only"]:
        fields = [field_value(f) for f in c["fields"]]
        assert kdf.encode_info(c["purpose"], bytes.fromhex(c["session_id"]), fields).hex() == c[
            "info"
        ]
        rnd, snd, rcv, ctx = fields
        ad = aead.associated_data(
            session_id=bytes.fromhex(c["session_id"]), round_=rnd, sender=snd, receiver=rcv,
            context=ctx,
        )
        assert ad.hex() == c["info"]


def test_x25519_vectors():
    doc = load("x25519.json")
    for c in doc["cases"]:
        ska, skb = bytes.fromhex(c["private_a"]), bytes.fromhex(c["private_b"])
        a, b = kex.KeyPair.from_private_bytes(ska), kex.KeyPair.from_private_bytes(skb)
        assert a.public.hex() == c["public_a"] and b.public.hex() == c["public_b"]
        assert kex.agree(ska, b.public).hex() == c["shared_secret"]
        assert kex.agree(b.private, a.public).hex() == c["shared_secret"]
        sid = bytes.fromhex(c["session_id"])
        for sk, pk, me, peer in ((ska, b.public, c["party_a"], c["party_b"]),
                                 (skb, a.public, c["party_b"], c["party_a"])):
            got = kex.derive_pairwise(
                sk, pk, purpose=c["purpose"], session_id=sid, party_a=me, party_b=peer,
                length=c["length"],
            )
            assert got.hex() == c["pairwise_key"]
    # RFC 7748 section 6.1 is the first case
    assert doc["cases"][0]["shared_secret"] == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    assert doc["rejected"]
    for c in doc["rejected"]:
        with pytest.raises(CryptoError):
            kex.agree(bytes.fromhex(c["private"]), bytes.fromhex(c["peer_public"]))


def test_shamir_vectors():
    doc = load("shamir.json")
    assert int(doc["P"]) == field.P == 2**256 + 297
    for c in doc["cases"]:
        prime = int(c["prime"])
        coeffs = [int(v) for v in c["coefficients"]]
        assert len(coeffs) == c["t"]
        shares = [shamir.evaluate_polynomial(coeffs, x, prime=prime) for x in c["xs"]]
        assert [str(y) for y in shares] == c["shares"]
        if "shares_encoded" in c:
            assert [field.encode_element(y).hex() for y in shares] == c["shares_encoded"]
            assert [field.decode_element(bytes.fromhex(e)) for e in c["shares_encoded"]] == shares
            assert field.element_to_secret(coeffs[0]).hex() == c["secret_bytes"]
        for r in c["reconstructions"]:
            pts = [(x, shares[c["xs"].index(x)]) for x in r["xs"]]
            assert str(shamir.reconstruct(pts, c["t"], prime=prime)) == r["secret"]
            assert int(r["secret"]) == coeffs[0]


def test_aead_vectors():
    for c in load("aead.json")["cases"]:
        kw = dict(
            session_id=bytes.fromhex(c["session_id"]), round_=c["round"], sender=c["sender"],
            receiver=c["receiver"], context=c["context"],
        )
        assert aead.associated_data(**kw).hex() == c["associated_data"]
        box = bytes.fromhex(c["box"])
        assert box[: aead.NONCE_BYTES].hex() == c["nonce"]
        assert len(box) == len(bytes.fromhex(c["plaintext"])) + aead.OVERHEAD
        assert aead.open_(bytes.fromhex(c["key"]), box, **kw).hex() == c["plaintext"]

        class Fixed:
            def random_bytes(self, n):
                return bytes.fromhex(c["nonce"])

            def child(self, label):
                return self

        assert aead.seal(bytes.fromhex(c["key"]), bytes.fromhex(c["plaintext"]), rng=Fixed(),
                         **kw).hex() == c["box"]


def test_ed25519_vectors():
    for c in load("ed25519.json")["cases"]:
        key = sign.SigningKey.from_private_bytes(bytes.fromhex(c["private"]))
        assert key.public.hex() == c["public"]
        msg = bytes.fromhex(c["message"])
        assert key.sign(msg).hex() == c["signature"]
        sign.verify(bytes.fromhex(c["public"]), bytes.fromhex(c["signature"]), msg)
        with pytest.raises(CryptoError):
            sign.verify(bytes.fromhex(c["public"]), bytes.fromhex(c["signature"]), msg + b"x")


def test_rand_vectors():
    for c in load("rand.json")["cases"]:
        seed = int(c["seed_as_int"]) if c["seed_as_int"] is not None else bytes.fromhex(c["seed"])
        r = rand.InsecureDeterministicRandom(seed, c["label"], warn=False)
        assert r.random_bytes(40).hex() == c["bytes_0_40"]
        assert r.random_bytes(24).hex() == c["bytes_40_64"]
        assert r.child("c").random_bytes(32).hex() == c["child_c_bytes_0_32"]
        r2 = rand.InsecureDeterministicRandom(seed, c["label"], warn=False)
        assert rand.randbelow(r2, 1000) == c["randbelow_1000_first"]
        key = kdf.derive(bytes.fromhex(c["seed"]), purpose="insecure-deterministic-rng",
                         fields=(c["label"],), length=32)
        assert key.hex() == c["key"]


def test_generator_reproduces_the_files(tmp_path):
    """Regenerating gives the same content (dates and versions aside)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vectors_generate", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--check"]) == 0
