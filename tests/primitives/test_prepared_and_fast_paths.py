"""The primitives' fast paths that only higher layers used to exercise.

The masking client and server build labels once per round (``info_prefix``,
``int_field``, ``derive_info``, ``seal_with_ad``/``open_with_ad``), refuse
small-subgroup keys with ``check_contributory``, and the DP layer draws bulk noise
from ``AesCtrRandom``.  Mutation testing (benchmarks/mutation/) found no test in
``tests/primitives`` that ran them; each test here checks the fast path against
the slow, specified one or against ``cryptography`` directly.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.errors import CryptoError, InsecureConfigurationWarning, ParameterError
from secagg.primitives import aead, kdf, kex, rand
from secagg.primitives.rand import AesCtrRandom, InsecureDeterministicRandom

IKM = bytes(range(16, 48))


def _lp(f: str | bytes) -> bytes:
    b = f.encode() if isinstance(f, str) else f
    return len(b).to_bytes(4, "big") + b


# ---------------------------------------------------------------- KDF, prepared labels


@pytest.mark.parametrize(
    "fields", [(), (7,), (1, 2**64 - 1), ("peer", 3, b"\x00\xff"), (0, "", b"")]
)
def test_prepared_info_equals_encode_info(fields: tuple[kdf.Field, ...]) -> None:
    sid = b"session"
    prefix = kdf.info_prefix("pairwise-mask-seed", sid, len(fields))
    rest = b"".join(kdf.int_field(f) if isinstance(f, int) else _lp(f) for f in fields)
    info = prefix + rest
    assert info == kdf.encode_info("pairwise-mask-seed", sid, fields)
    for length in (16, 32, 255 * 32):
        assert kdf.derive_info(IKM, info, length) == kdf.derive(
            IKM, purpose="pairwise-mask-seed", session_id=sid, fields=fields, length=length
        )
    assert kdf.derive_info(IKM, info) == kdf.derive_info(IKM, info, 32)


def test_int_field_is_a_length_prefixed_u64() -> None:
    assert kdf.int_field(0) == b"\x00\x00\x00\x08" + b"\x00" * 8
    assert kdf.int_field(2**64 - 1) == b"\x00\x00\x00\x08" + b"\xff" * 8
    assert kdf.int_field(258) == b"\x00\x00\x00\x08" + (258).to_bytes(8, "big")
    for bad in (-1, 2**64, True, False):
        with pytest.raises(ParameterError):
            kdf.int_field(bad)


def test_info_prefix_counts_fields_and_refuses_an_empty_purpose() -> None:
    assert kdf.info_prefix("p", b"", 3).endswith(b"\x00\x00\x00\x03")
    assert kdf.info_prefix("p", b"s", 0) == kdf.encode_info("p", b"s")
    with pytest.raises(ParameterError, match="purpose"):
        kdf.info_prefix("", b"s", 0)


def test_derive_bounds_are_exact() -> None:
    info = kdf.encode_info("p")
    for fn in (
        lambda ikm, n: kdf.derive_info(ikm, info, n),
        lambda ikm, n: kdf.derive(ikm, purpose="p", length=n),
    ):
        assert len(fn(b"k" * 16, 16)) == 16  # both minima accepted
        assert len(fn(b"k" * 16, 8160)) == 8160  # HKDF-SHA256's maximum
        with pytest.raises(ParameterError, match="keying material"):
            fn(b"k" * 15, 32)
        with pytest.raises(ParameterError, match="length"):
            fn(b"k" * 16, 15)
        with pytest.raises(ParameterError, match="length"):
            fn(b"k" * 16, 8161)


# ---------------------------------------------------------------- AEAD, prepared AD

KEY = bytes(range(32))
BIND = dict(session_id=b"sid", round_=1, sender=4, receiver=7, context="share-keys")


def test_with_ad_boxes_are_the_same_boxes() -> None:
    ad = aead.associated_data(**BIND)  # type: ignore[arg-type]
    rng_a = InsecureDeterministicRandom(5, warn=False)
    rng_b = InsecureDeterministicRandom(5, warn=False)
    box = aead.seal_with_ad(KEY, b"share", ad, rng=rng_a)
    assert box == aead.seal(KEY, b"share", rng=rng_b, **BIND)  # type: ignore[arg-type]
    # the nonce is the first 12 bytes drawn from the injected source
    assert box[: aead.NONCE_BYTES] == InsecureDeterministicRandom(5, warn=False).random_bytes(12)
    assert aead.open_with_ad(KEY, box, ad) == b"share"
    assert aead.open_(KEY, box, **BIND) == b"share"  # type: ignore[arg-type]
    empty = aead.seal_with_ad(KEY, b"", ad)
    assert len(empty) == aead.OVERHEAD and aead.open_with_ad(KEY, empty, ad) == b""


def test_with_ad_failures_are_opaque() -> None:
    ad = aead.associated_data(**BIND)  # type: ignore[arg-type]
    box = aead.seal_with_ad(KEY, b"share", ad)
    other = aead.associated_data(**{**BIND, "receiver": 8})  # type: ignore[arg-type]
    for key, b, a in (
        (KEY, box, other),
        (bytes(32), box, ad),
        (KEY, box[: aead.OVERHEAD - 1], ad),
        (KEY, box[:-1], ad),
    ):
        with pytest.raises(CryptoError) as ei:
            aead.open_with_ad(key, b, a)
        assert str(ei.value) == "cryptographic verification failed"
    with pytest.raises(ParameterError, match="32 bytes"):
        aead.open_with_ad(KEY[:16], box, ad)
    with pytest.raises(ParameterError, match="32 bytes"):
        aead.seal_with_ad(KEY[:31], b"x", ad)


def test_fresh_nonces_without_a_source() -> None:
    ad = aead.associated_data(**BIND)  # type: ignore[arg-type]
    a, b = aead.seal_with_ad(KEY, b"x", ad), aead.seal_with_ad(KEY, b"x", ad)
    assert a[: aead.NONCE_BYTES] != b[: aead.NONCE_BYTES]


# ---------------------------------------------------------------- X25519 small subgroup

#: RFC 7748 §6.1 / libsodium's blocklist: encodings of points of order 1, 2, 4, 8
LOW_ORDER = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]


@pytest.mark.parametrize("hexkey", LOW_ORDER)
def test_low_order_keys_are_refused(hexkey: str) -> None:
    with pytest.raises(CryptoError):
        kex.check_contributory(bytes.fromhex(hexkey))


def test_honest_keys_are_contributory() -> None:
    pk = kex.KeyPair.generate(InsecureDeterministicRandom(9, warn=False)).public
    assert kex.check_contributory(pk) is None
    assert kex.check_contributory(bytearray(pk)) is None
    with pytest.raises(ParameterError, match="32 bytes"):
        kex.check_contributory(pk[:31])


# ---------------------------------------------------------------- AesCtrRandom


def _keystream(key: bytes, n: int) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
    return enc.update(b"\x00" * n)


def test_aes_ctr_random_is_the_aes256_ctr_keystream() -> None:
    key = bytes(range(100, 132))
    n = (1 << 18) * 2 + 37  # crosses two internal chunks and ends off a block
    src = AesCtrRandom(key=key)
    got = src.random_bytes(5) + src.random_bytes(0) + src.random_bytes(n)
    assert got == _keystream(key, 5 + n)


@pytest.mark.parametrize(
    "size", [0, 1, 15, 16, 17, (1 << 18) - 3, (1 << 18) + 16, (1 << 18) * 2 + 5]
)
def test_fill_with_and_without_spare_room(size: int) -> None:
    key = b"K" * 32
    exact = bytearray(size)  # no slack: the last chunk goes through the scratch buffer
    AesCtrRandom(key=key).fill(exact)
    assert bytes(exact) == _keystream(key, size)
    roomy = bytearray(size + 16)
    AesCtrRandom(key=key).fill(roomy, size)
    assert bytes(roomy[:size]) == _keystream(key, size)


def test_fill_continues_the_stream_and_checks_nbytes() -> None:
    key = b"L" * 32
    src = AesCtrRandom(key=key)
    buf = bytearray(40)
    src.fill(buf, 8)
    first = bytes(buf[:8])
    src.fill(buf, 0)
    second = src.random_bytes(8)
    assert first + second == _keystream(key, 16)
    for bad in (-1, 41):
        with pytest.raises(ParameterError, match="nbytes"):
            src.fill(buf, bad)
    src.fill(buf, 40)  # the whole buffer is allowed
    assert bytes(buf) == _keystream(key, 56)[16:]


def test_aes_ctr_random_argument_checks() -> None:
    for bad in (b"k" * 31, b"k" * 33, "k" * 32, bytearray(32)):
        with pytest.raises(ParameterError, match="32 bytes"):
            AesCtrRandom(key=bad)  # type: ignore[arg-type]
    src = AesCtrRandom(key=b"k" * 32)
    for bad_n in (-1, True, 2.0):
        with pytest.raises(ParameterError, match="non-negative"):
            src.random_bytes(bad_n)  # type: ignore[arg-type]
    assert src.random_bytes(0) == b""
    assert AesCtrRandom().random_bytes(32) != AesCtrRandom().random_bytes(32)


def test_aes_ctr_children_are_keyed_from_the_stream() -> None:
    key = b"P" * 32
    stream = _keystream(key, 64)
    parent = AesCtrRandom(key=key)
    child, forked = parent.child("a"), parent.fork("b")
    assert child.random_bytes(16) == _keystream(stream[:32], 16)
    assert forked.random_bytes(16) == _keystream(stream[32:64], 16)


def test_aes_ctr_random_rekeys_in_a_new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    key = b"F" * 32
    src = AesCtrRandom(key=key)
    assert src.random_bytes(16) == _keystream(key, 16)
    new_key = b"N" * 32
    monkeypatch.setattr(rand.os, "getpid", lambda: -1)  # as after os.fork
    monkeypatch.setattr(rand.os, "urandom", lambda n: new_key[:n])
    # the child process draws from a fresh key, never the parent's continuation
    assert src.random_bytes(16) == _keystream(new_key, 16)
    # and only once: the stream then continues under the new key
    monkeypatch.setattr(rand.os, "urandom", lambda n: b"X" * n)
    assert src.random_bytes(16) == _keystream(new_key, 32)[16:]


# ---------------------------------------------------------------- InsecureDeterministicRandom


def test_deterministic_source_label_defaults_and_forks() -> None:
    def src(label: str | None = None) -> InsecureDeterministicRandom:
        if label is None:
            return InsecureDeterministicRandom(b"s" * 16, warn=False)
        return InsecureDeterministicRandom(b"s" * 16, label, warn=False)

    assert src().random_bytes(32) == src("root").random_bytes(32)
    assert src().random_bytes(32) != src("other").random_bytes(32)
    assert src().child("a").random_bytes(16) == src("root/a").random_bytes(16)
    a, b = src(), src()
    fa1, fb1 = a.fork("x"), b.fork("x")
    assert fa1.random_bytes(16) == fb1.random_bytes(16)  # replayable
    assert a.fork("x").random_bytes(16) != fa1.fork("x").random_bytes(16)
    # a fork is seeded by the next 32 stream bytes and named by the label path
    seed = src().random_bytes(32)
    assert src().fork("y").random_bytes(16) == InsecureDeterministicRandom(
        seed, "root/y", warn=False
    ).random_bytes(16)
    assert src().fork("y").random_bytes(16) != src().fork("z").random_bytes(16)


def test_deterministic_source_warns_unless_told_not_to() -> None:
    with pytest.warns(InsecureConfigurationWarning, match="determined by the seed"):
        InsecureDeterministicRandom(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        InsecureDeterministicRandom(1, warn=False)
        InsecureDeterministicRandom(1, warn=False).child("c")
        InsecureDeterministicRandom(1, warn=False).fork("f")
    for bad in (-1, 2**256, True, b"x" * 15):
        with pytest.raises(ParameterError):
            InsecureDeterministicRandom(bad, warn=False)  # type: ignore[arg-type]
    InsecureDeterministicRandom(2**256 - 1, warn=False)
    with pytest.raises(ParameterError, match="non-negative"):
        InsecureDeterministicRandom(1, warn=False).random_bytes(-1)
    with pytest.raises(ParameterError, match="non-negative"):
        rand.SystemRandom().random_bytes(-1)
    assert len(rand.SystemRandom().random_bytes(0)) == 0


# ---------------------------------------------------------------- vectorised draws


@pytest.mark.parametrize("size", [0, 1, 3, 100])
def test_random_uint64_is_the_little_endian_stream(size: int) -> None:
    key = b"W" * 32
    stream = _keystream(key, 8 * size + 8)
    want = [int.from_bytes(stream[8 * i : 8 * i + 8], "little") for i in range(size)]
    fast = AesCtrRandom(key=key)  # has fill(): the copy-free path
    words = rand.random_uint64(fast, size)
    assert words.dtype == np.uint64 and words.tolist() == want
    assert fast.random_bytes(8) == stream[8 * size :]  # exactly 8 * size bytes were used
    seeded = InsecureDeterministicRandom(b"w" * 16, warn=False)  # random_bytes only
    ref = InsecureDeterministicRandom(b"w" * 16, warn=False).random_bytes(8 * size + 8)
    words = rand.random_uint64(seeded, size)
    assert words.tolist() == [int.from_bytes(ref[8 * i : 8 * i + 8], "little") for i in range(size)]
    assert seeded.random_bytes(8) == ref[8 * size :]
    words[:] = 0  # both paths return a writable array of their own
    rand.random_uint64(fast, size)[:] = 0


def test_random_unit_float64_has_53_random_bits() -> None:
    key = b"F" * 32
    floats = rand.random_unit_float64(AesCtrRandom(key=key), 64)
    words = rand.random_uint64(AesCtrRandom(key=key), 64)
    assert floats.dtype == np.float64
    assert floats.tolist() == [int(w >> np.uint64(11)) / 2**53 for w in words]
    assert ((floats >= 0) & (floats < 1)).all()
