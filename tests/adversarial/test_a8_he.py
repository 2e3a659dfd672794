"""Attack 8: ciphertext tampering and truncated envelopes for the HE family.

Outcomes asserted:
* any bit flip or truncation of a client envelope, a replay into another round, a
  duplicate, or a validly signed envelope with a garbage payload: the server raises
  a typed error and its state (``state_digest``) is unchanged; the genuine envelope
  is still accepted afterwards and the sum is exact;
* any tampering with an aggregate on its way to the key holder: refused, nothing
  decrypted; a client chunk is never decrypted by the key holder;
* documented non-guarantees (he_sum.md §8): a malicious *server* can pass one
  client's ciphertext off as the aggregate in SEPARATE_DECRYPTOR, and a malicious
  client can encrypt anything (a foreign-key ciphertext is caught by BFV's range
  check, not by CKKS).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import (
    CryptoError,
    DecodeError,
    RejectedUploadError,
    RemoteProtocolError,
    SecAggError,
)

tenseal = pytest.importorskip("tenseal")

from secagg.he import (  # noqa: E402
    ContextKind,
    Envelope,
    EnvelopeKind,
    HEClient,
    HEContext,
    HEDecryptor,
    HEServer,
    HESession,
    KeyCustody,
    Preset,
    decode_envelope,
    encode_envelope,
    generate_keys,
)
from secagg.primitives.rand import InsecureDeterministicRandom  # noqa: E402
from secagg.primitives.sign import SigningKey  # noqa: E402


def _wire(envelopes):
    """The wire bytes of the envelopes a party returned (bytes in, messages out)."""
    return [e.to_bytes() for e in envelopes]


LENGTH = 100


@pytest.fixture(scope="module")
def ckks():  # type: ignore[no-untyped-def]
    return generate_keys(Preset.CKKS_4096.params)


@pytest.fixture(scope="module")
def bfv():  # type: ignore[no-untyped-def]
    return generate_keys(Preset.BFV_4096.params)


@dataclasses.dataclass
class HERound:
    session: HESession
    keys: object
    server: HEServer
    clients: dict[int, HEClient]
    signing: dict[int, SigningKey]
    server_key: SigningKey


def _round(keys, *, n: int = 3, seed: int = 0, round_: int = 0) -> HERound:  # type: ignore[no-untyped-def]
    rng = InsecureDeterministicRandom(seed, warn=False)
    signing = {i: SigningKey.generate(rng.child(f"id/{i}")) for i in range(1, n + 1)}
    server_key = SigningKey.generate(rng.child("server"))
    session = HESession(
        params=keys.params,
        key_id=keys.key_id,
        custody=KeyCustody.SEPARATE_DECRYPTOR,
        session_id=rng.random_bytes(16),
        round=round_,
        vector_length=LENGTH,
        client_keys={i: k.public for i, k in signing.items()},
        server_key=server_key.public,
    )
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC)
    clients = {
        i: HEClient(
            client_id=i, session=session, context=ctx, signing_key=k, rng=rng.child(f"c{i}")
        )
        for i, k in signing.items()
    }
    server = HEServer(session=session, public_context=keys.public_context, signing_key=server_key)
    return HERound(session, keys, server, clients, signing, server_key)


def _x(i: int) -> np.ndarray:
    return np.linspace(-1, 1, LENGTH) * (i / 4)


def _resign(data: bytes, key: SigningKey, **changes: object) -> bytes:
    env = decode_envelope(data)
    fields = {f.name: getattr(env, f.name) for f in dataclasses.fields(Envelope)}
    fields.pop("signed_part")
    fields.pop("signature")
    fields.update(changes)
    return encode_envelope(Envelope(**fields), key)  # type: ignore[arg-type]


def _refused_unchanged(server: HEServer, data: bytes) -> type[Exception]:
    before = server.state_digest()
    with pytest.raises(SecAggError) as info:
        server.receive(data)
    assert server.state_digest() == before
    assert isinstance(info.value, (DecodeError, CryptoError, RemoteProtocolError))
    return type(info.value)


@pytest.fixture(scope="module")
def shared(ckks):  # type: ignore[no-untyped-def]
    rnd = _round(ckks)
    (env,) = _wire(rnd.clients[1].encrypt(_x(1)))
    return rnd, env


@given(pos=st.integers(min_value=0), bit=st.integers(0, 7))
def test_a8_any_bit_flip_of_a_client_envelope_is_refused(shared, pos: int, bit: int) -> None:  # type: ignore[no-untyped-def]
    rnd, env = shared
    raw = bytearray(env)
    raw[pos % len(raw)] ^= 1 << bit
    _refused_unchanged(rnd.server, bytes(raw))


@given(cut=st.integers(min_value=0))
def test_a8_any_truncation_of_a_client_envelope_is_refused(shared, cut: int) -> None:  # type: ignore[no-untyped-def]
    rnd, env = shared
    _refused_unchanged(rnd.server, env[: cut % len(env)])


def test_a8_tampering_replay_and_garbage_leave_the_sum_exact(ckks) -> None:  # type: ignore[no-untyped-def]
    rnd = _round(ckks)
    other = _round(ckks, seed=1, round_=1)
    envs = {i: _wire(c.encrypt(_x(i)))[0] for i, c in rnd.clients.items()}
    stale = _wire(other.clients[1].encrypt(_x(1)))[0]
    # another session/round, as is and re-headed (the attacker cannot re-sign)
    assert _refused_unchanged(rnd.server, stale) is RemoteProtocolError
    s = rnd.session
    head = decode_envelope(stale)
    forged = _resign(
        stale,
        SigningKey.generate(InsecureDeterministicRandom(5, warn=False)),
        session_id=s.session_id,
        round=s.round,
    )
    assert head.session_id != s.session_id
    assert _refused_unchanged(rnd.server, forged) is CryptoError
    # a malicious client signs garbage as its payload
    junk = _resign(envs[2], rnd.signing[2], payload=b"\x00" * 64)
    assert _refused_unchanged(rnd.server, junk) is RejectedUploadError  # a DecodeError naming 2
    # the payload of client 3 moved into client 2's envelope (re-signed by 2)
    moved = _resign(envs[2], rnd.signing[2], payload=decode_envelope(envs[3]).payload)
    rnd.server.receive(moved)  # a valid ciphertext: client 2 chose to send x_3
    assert _refused_unchanged(rnd.server, envs[2]) is RemoteProtocolError  # duplicate
    rnd.server.receive(envs[1])
    assert _refused_unchanged(rnd.server, envs[1]) is RemoteProtocolError
    agg = _wire(rnd.server.finalize())
    dec = HEDecryptor(session=s, secret_context=ckks.secret_context)
    for a in agg:
        dec.receive(a)
    res = dec.result()
    assert res.contributors == (1, 2)
    np.testing.assert_allclose(res.values, _x(1) + _x(3), atol=s.params.ckks_error_bound(2))


@given(pos=st.integers(min_value=0), bit=st.integers(0, 7), cut=st.booleans())
def test_a8_tampered_aggregate_is_never_decrypted(ckks_agg, pos: int, bit: int, cut: bool) -> None:  # type: ignore[no-untyped-def]
    session, agg, secret = ckks_agg
    dec = HEDecryptor(session=session, secret_context=secret)
    raw = bytearray(agg)
    if cut:
        raw = raw[: pos % len(raw)]
    else:
        raw[pos % len(raw)] ^= 1 << bit
    with pytest.raises((DecodeError, CryptoError, RemoteProtocolError)):
        dec.receive(bytes(raw))
    assert not dec.complete
    dec.receive(agg)
    assert dec.complete


@pytest.fixture(scope="module")
def ckks_agg(ckks):  # type: ignore[no-untyped-def]
    rnd = _round(ckks)
    for i, c in rnd.clients.items():
        for e in _wire(c.encrypt(_x(i))):
            rnd.server.receive(e)
    (agg,) = _wire(rnd.server.finalize())
    return rnd.session, agg, ckks.secret_context


def test_a8_key_holder_never_decrypts_a_client_chunk(ckks) -> None:  # type: ignore[no-untyped-def]
    rnd = _round(ckks)
    (env,) = _wire(rnd.clients[1].encrypt(_x(1)))
    dec = HEDecryptor(session=rnd.session, secret_context=ckks.secret_context)
    with pytest.raises(RemoteProtocolError):
        dec.receive(env)
    assert dec.received_kinds == [EnvelopeKind.CLIENT_CHUNK] and not dec.complete


def test_a8_documents_a_malicious_server_can_pass_one_ciphertext_as_the_aggregate(ckks) -> None:  # type: ignore[no-untyped-def]
    """he_sum.md §8: in SEPARATE_DECRYPTOR the server signs aggregates itself, so the
    key holder cannot tell a single client's ciphertext from a sum (no ZK proofs);
    ``min_contributors`` only checks the *claimed* list."""
    rnd = _round(ckks)
    (env,) = _wire(rnd.clients[1].encrypt(_x(1)))
    single = decode_envelope(env)
    fake = _resign(
        env,
        rnd.server_key,
        kind=EnvelopeKind.AGGREGATE_CHUNK,
        sender=0,
        contributors=(1, 2, 3),
        payload=single.payload,
    )
    dec = HEDecryptor(session=rnd.session, secret_context=ckks.secret_context)
    dec.receive(fake)
    res = dec.result()
    np.testing.assert_allclose(res.values, _x(1), atol=rnd.session.params.ckks_error_bound(1))


def test_a8_foreign_key_ciphertext_bfv_range_check_catches_it_ckks_does_not(ckks, bfv) -> None:  # type: ignore[no-untyped-def]
    """A malicious client encrypts under a key of its own (same parameters): the
    server cannot tell.  BFV's decryptor flags the out-of-range slots; CKKS has no
    such check, so the sum is garbage — a client can always ruin its own
    contribution (SECURITY.md, input poisoning)."""
    for keys, flagged in ((bfv, True), (ckks, False)):
        rogue = generate_keys(keys.params)
        rnd = _round(keys)
        rogue_ctx = HEContext.from_bytes(rogue.public_context, kind=ContextKind.PUBLIC)
        block = np.zeros((keys.params.slots, 1))
        payload = HEContext.serialize(
            rogue_ctx.encrypt_columns(
                block.astype(np.int64) if keys.params.scheme.name == "BFV" else block
            )
        )
        honest = (
            _wire(rnd.clients[1].encrypt(np.arange(LENGTH) % 7))
            if flagged
            else _wire(rnd.clients[1].encrypt(_x(1)))
        )
        env2 = _resign(honest[0], rnd.signing[2], sender=2, contributors=(2,), payload=payload)
        for e in honest:
            rnd.server.receive(e)
        rnd.server.receive(env2)  # accepted: a well-formed ciphertext
        dec = HEDecryptor(session=rnd.session, secret_context=keys.secret_context)
        for a in _wire(rnd.server.finalize()):
            dec.receive(a)
        if flagged:
            with pytest.raises(RemoteProtocolError):
                dec.result()
        else:
            res = dec.result()
            assert np.max(np.abs(res.values - _x(1))) > 1.0


_CRASH = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from adversarial.test_a8_he import _resign, _round, _wire, _x
from secagg.errors import SecAggError
from secagg.he import Preset, decode_envelope, generate_keys
keys = generate_keys(Preset.{preset}.params)
rnd = _round(keys)
(env,) = _wire(rnd.clients[1].encrypt(np.arange(100) % 5 if {bfv} else _x(1)))
payload = decode_envelope(env).payload
hostile = bytes([0x1A]) + payload[1:]  # first field's tag: ciphertexts -> batch_size
try:
    rnd.server.receive(_resign(env, rnd.signing[1], payload=hostile))
except SecAggError as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize("preset", ["CKKS_4096", "BFV_4096"])
def test_a8_hostile_payload_from_a_registered_client_is_refused_not_fatal(preset: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = _CRASH.format(
        tests=str(Path(__file__).resolve().parents[1]), preset=preset, bfv=preset.startswith("BFV")
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"the server process died with rc={res.returncode}"
    assert res.stdout.strip() == "RejectedUploadError"  # a DecodeError naming the sender


# --------------------------------------------------- first-upload poisoning (issue 14.3)
#
# A registered client signs a chunk whose SEAL ciphertexts carry metadata that SEAL's
# own loader accepts but that no fresh encryption has: another CKKS scale (3·2^31,
# NaN, ±inf, negative) or, in BFV, the NTT-form flag set.  Before the fix the server
# took the first complete upload unchecked as its running sum and then refused every
# honest upload (the addition fails) and blamed its honest sender; the round aborted,
# or released only attacker data.  Each case below failed on the old code (the
# poisoned upload was accepted, then ``receive`` of the first honest upload raised
# DecodeError).

#: ``Ciphertext::save_members``: parms_id, is_ntt_form, size, N, L, scale, correction.
_CT_META = "<32sBQQQdQ"


def _zstd() -> object:
    """The zstd library TenSEAL ships (what SEAL itself compresses with)."""
    import ctypes
    import importlib.util

    lib = ctypes.CDLL(importlib.util.find_spec("_tenseal_cpp").origin)  # type: ignore[union-attr]
    size_t, buf = ctypes.c_size_t, ctypes.c_void_p
    lib.ZSTD_compressBound.restype = size_t
    lib.ZSTD_compressBound.argtypes = [size_t]
    lib.ZSTD_compress.restype = size_t
    lib.ZSTD_compress.argtypes = [buf, size_t, ctypes.c_char_p, size_t, ctypes.c_int]
    lib.ZSTD_decompress.restype = size_t
    lib.ZSTD_decompress.argtypes = [buf, size_t, ctypes.c_char_p, size_t]
    return lib


def _zstd_compress(raw: bytes) -> bytes:
    import ctypes

    lib = _zstd()
    cap = lib.ZSTD_compressBound(len(raw))  # type: ignore[attr-defined]
    dst = ctypes.create_string_buffer(cap)
    got = lib.ZSTD_compress(dst, cap, raw, len(raw), 3)  # type: ignore[attr-defined]
    assert got < cap
    return dst.raw[:got]


def _zstd_decompress(body: bytes) -> bytes:
    import ctypes

    cap = 1 << 24
    dst = ctypes.create_string_buffer(cap)
    got = _zstd().ZSTD_decompress(dst, cap, body, len(body))  # type: ignore[attr-defined]
    assert got < cap
    return dst.raw[:got]


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def rewrite_seal_fields(payload: bytes, *, ciphertexts: int, compr: int, **fields: object) -> bytes:
    """``payload`` (a genuine TenSEAL tensor) with ``fields`` of every SEAL
    ciphertext overwritten and re-serialized as SEAL would (compression mode
    ``compr``: 0 none, 2 zstd); the protobuf framing stays exactly TenSEAL's.

    ``fields``: any of ``ntt``, ``size``, ``scale``, ``correction``, ``parms_id``.
    Written from the SEAL 4 format alone (no secagg code), so it runs unchanged
    against the code before the fix.
    """
    import struct

    out = bytearray()
    pos = 0
    if ciphertexts >= 2:  # the packed shape field
        length, body = _read_varint(payload, 1)
        out += payload[: body + length]
        pos = body + length
    for _ in range(ciphertexts):
        assert payload[pos] == 0x12
        length, start = _read_varint(payload, pos + 1)
        old = payload[start : start + length]
        assert old[:2] == b"\x5e\xa1" and old[5] in (0, 2)
        raw = bytearray(old[16:] if old[5] == 0 else _zstd_decompress(old[16:]))
        pid, ntt, size, n, moduli, scale, corr = struct.unpack_from(_CT_META, raw, 0)
        struct.pack_into(
            _CT_META,
            raw,
            0,
            fields.get("parms_id", pid),
            fields.get("ntt", ntt),
            fields.get("size", size),
            n,
            moduli,
            fields.get("scale", scale),
            fields.get("correction", corr),
        )
        body = bytes(raw) if compr == 0 else _zstd_compress(bytes(raw))
        new = old[:5] + bytes([compr]) + old[6:8] + struct.pack("<Q", 16 + len(body)) + body
        out += b"\x12" + _varint(len(new)) + new
        pos = start + length
    return bytes(out + payload[pos:])


_POISON = [
    ("CKKS", {"scale": 3.0 * 2.0**31}),
    ("CKKS", {"scale": float("nan")}),
    ("CKKS", {"scale": float("inf")}),
    ("CKKS", {"scale": float("-inf")}),
    ("CKKS", {"scale": -(2.0**31)}),
    ("BFV", {"ntt": 1}),
]


@pytest.mark.parametrize("compr", [0, 2], ids=["uncompressed", "zstd"])
@pytest.mark.parametrize(
    ("scheme", "fields"), _POISON, ids=[f"{s}-{next(iter(f.items()))}" for s, f in _POISON]
)
def test_a8_first_upload_poisoning_is_blamed_on_its_sender_and_the_round_goes_on(
    ckks, bfv, scheme: str, fields: dict[str, object], compr: int
) -> None:  # type: ignore[no-untyped-def]
    keys = ckks if scheme == "CKKS" else bfv
    rnd = _round(keys, n=4)
    s = rnd.session

    def x(i: int) -> np.ndarray:
        return _x(i) if scheme == "CKKS" else (np.arange(LENGTH) * i) % 11

    (honest1,) = _wire(rnd.clients[1].encrypt(x(1)))
    poisoned = rewrite_seal_fields(
        decode_envelope(honest1).payload,
        ciphertexts=s.chunk_ciphertexts(0),
        compr=compr,
        **fields,
    )
    # SEAL itself loads the poisoned tensor: only our checks stand in the way
    attack = _resign(honest1, rnd.signing[1], payload=poisoned)
    before = rnd.server.state_digest()
    with pytest.raises(RejectedUploadError) as info:
        rnd.server.receive(attack)  # the very first upload of the round
    assert info.value.sender == 1 and info.value.chunk_index == 0
    assert isinstance(info.value, DecodeError)
    assert rnd.server.state_digest() == before and rnd.server.count == 0
    for i in (2, 3, 4):  # every honest upload after it is accepted
        for e in _wire(rnd.clients[i].encrypt(x(i))):
            rnd.server.receive(e)
    agg = _wire(rnd.server.finalize())
    dec = HEDecryptor(session=s, secret_context=keys.secret_context)
    for a in agg:
        dec.receive(a)
    res = dec.result()
    assert res.contributors == (2, 3, 4)
    want = x(2) + x(3) + x(4)
    if scheme == "CKKS":
        np.testing.assert_allclose(res.values, want, atol=s.params.ckks_error_bound(3))
    else:
        np.testing.assert_array_equal(res.values, want)


def test_a8_seal_itself_accepts_the_poisoned_ciphertexts(ckks, bfv) -> None:  # type: ignore[no-untyped-def]
    """The attack above is real: TenSEAL/SEAL load every poisoned payload, and adding
    an honest ciphertext to it fails — so the checks in secagg/he/payload.py (not
    SEAL) are what keeps it out of the running sum."""
    for scheme, fields in _POISON:
        keys = ckks if scheme == "CKKS" else bfv
        ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC)
        p = keys.params
        block = np.zeros((p.slots, 1), dtype=np.float64 if scheme == "CKKS" else np.int64)
        honest = HEContext.serialize(ctx.encrypt_columns(block))
        bad = rewrite_seal_fields(honest, ciphertexts=1, compr=2, **fields)
        raw_ctx = ctx.tenseal_context()
        load = tenseal.ckks_tensor_from if scheme == "CKKS" else tenseal.bfv_tensor_from
        planted = load(raw_ctx, bad)  # SEAL accepts it
        with pytest.raises(Exception):
            planted + load(raw_ctx, honest)
        with pytest.raises(DecodeError):
            ctx.load(bad, ciphertexts=1)


@pytest.mark.parametrize("first", [True, False], ids=["poisoner-first", "poisoner-last"])
def test_a8_he_sum_treats_a_rejected_upload_as_its_senders_dropout(
    ckks, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:  # type: ignore[no-untyped-def]
    """Through the runtime (``he_sum``, one RoundDriver loop): a registered client
    whose validly signed first chunk carries a poisoned SEAL ciphertext (NaN scale) is
    a dropout blamed on it alone; its later chunks are not taken, and the others' sum
    comes out as if it had never sent."""
    from secagg.runtime import he_sum

    bad = 1 if first else 4
    honest_chunks = HEClient._chunks

    def chunks(self: HEClient, arr: np.ndarray):  # type: ignore[no-untyped-def]
        for j, env in enumerate(honest_chunks(self, arr)):
            if self.client_id == bad and j == 0:
                n_ct = self._session.chunk_ciphertexts(0)
                poison = rewrite_seal_fields(
                    env.payload, ciphertexts=n_ct, compr=2, scale=float("nan")
                )
                env = decode_envelope(_resign(env.to_bytes(), self._key, payload=poison))
            yield env

    monkeypatch.setattr(HEClient, "_chunks", chunks)
    xs = {i: _x(i) for i in (1, 2, 3, 4)}
    length = ckks.params.slots + 5  # two chunks of one ciphertext each
    xs = {i: np.resize(x, length) for i, x in xs.items()}
    res = he_sum(
        xs,
        scheme=ckks.params.scheme,
        keys=ckks,
        max_ciphertexts_per_chunk=1,
        rng=InsecureDeterministicRandom(7, warn=False),
    )
    assert not res.aborted
    assert res.contributors == tuple(i for i in (1, 2, 3, 4) if i != bad)
    assert set(res.rejected) == {bad}
    assert f"client {bad}" in res.rejected[bad] and "chunk 0" in res.rejected[bad]
    want = sum(xs[i] for i in res.contributors)
    np.testing.assert_allclose(res.sum, want, atol=res.error_bound)
