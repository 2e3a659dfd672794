"""The structural payload validator (secagg/he/payload.py): exact TenSEAL layout only.

Hostile bytes must raise DecodeError before TenSEAL sees them (TenSEAL crashes the
process on some malformed messages).  The hypothesis fuzz runs in a subprocess
(``_payload_fuzz_child.py``) so a crash is a failed test, not a dead pytest.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secagg.errors import DecodeError
from secagg.he import ContextKind, HEContext, Preset, generate_keys
from secagg.he.payload import (
    max_ciphertext_bytes,
    parse_tensor_payload,
    validate_tensor_payload,
)

CHILD = Path(__file__).resolve().parent / "_payload_fuzz_child.py"


@pytest.fixture(scope="module", params=[Preset.CKKS_4096, Preset.BFV_4096], ids=lambda p: p.value)
def made(request):  # type: ignore[no-untyped-def]
    pytest.importorskip("tenseal")  # every test using these payloads needs it
    preset = request.param
    keys = generate_keys(preset.params, n_threads=1)
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC, n_threads=1)
    dtype = np.float64 if preset is Preset.CKKS_4096 else np.int64
    out = {}
    for k in (1, 3):
        block = (np.arange(preset.params.slots * k) % 5).reshape(preset.params.slots, k)
        out[k] = HEContext.serialize(ctx.encrypt_columns(block.astype(dtype)))
    return preset.params, ctx, out


def test_genuine_payloads_and_sums_pass(made) -> None:  # type: ignore[no-untyped-def]
    params, ctx, out = made
    for k, data in out.items():
        blobs = parse_tensor_payload(data, params, ciphertexts=k, parms_id=ctx.parms_id)
        assert len(blobs) == k
        assert all(len(b) <= max_ciphertext_bytes(params) for b in blobs)
        t = ctx.load(data, ciphertexts=k)
        validate_tensor_payload(
            HEContext.serialize(HEContext.add(t, t)), params, ciphertexts=k, parms_id=ctx.parms_id
        )


def test_the_a8_tag_rewrite_is_refused(made) -> None:  # type: ignore[no-untyped-def]
    params, ctx, out = made
    for k, data in out.items():
        hostile = bytes([0x1A]) + data[1:]
        with pytest.raises(DecodeError):
            validate_tensor_payload(hostile, params, ciphertexts=k, parms_id=ctx.parms_id)
        with pytest.raises(DecodeError):
            ctx.load(hostile, ciphertexts=k)


def _ct_offset(data: bytes, k: int) -> int:
    """Offset of the first SEAL header (after the shape field and the ct tag/length)."""
    return data.index(struct.pack("<H", 0xA15E))


@pytest.mark.parametrize(
    "case",
    [
        "wrong_k",
        "trailing",
        "truncated",
        "nonminimal_len",
        "bad_magic",
        "bad_major",
        "bad_compr",
        "reserved",
        "size_mismatch",
        "batch",
        "empty",
    ],
)
def test_structural_violations_are_refused(made, case: str) -> None:  # type: ignore[no-untyped-def]
    params, ctx, out = made
    k, data = 3, bytearray(out[3])
    h = _ct_offset(bytes(data), k)
    if case == "wrong_k":
        k = 2
    elif case == "trailing":
        data += b"\x00"
    elif case == "truncated":
        del data[-1]
    elif case == "nonminimal_len":
        data[1:2] = b"\x81\x00"  # shape length 1 written in two bytes
    elif case == "bad_magic":
        data[h] ^= 1
    elif case == "bad_major":
        data[h + 3] = 3
    elif case == "bad_compr":
        data[h + 5] = 7
    elif case == "reserved":
        data[h + 6] = 1
    elif case == "size_mismatch":
        data[h + 8] ^= 1
    elif case == "batch":
        data[-2] ^= 1  # the batch-size varint
    else:
        data = bytearray()
    with pytest.raises(DecodeError):
        validate_tensor_payload(bytes(data), params, ciphertexts=k, parms_id=ctx.parms_id)


def test_ckks_scale_must_match() -> None:
    pytest.importorskip("tenseal")
    params = Preset.CKKS_4096.params
    keys = generate_keys(params, n_threads=1)
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC, n_threads=1)
    data = bytearray(HEContext.serialize(ctx.encrypt_columns(np.zeros((params.slots, 2)))))
    i = data.rindex(b"\x19")  # the scale tag (before 8 bytes of double and the batch size)
    assert struct.unpack_from("<d", data, i + 1)[0] == 2.0**params.scale_bits
    struct.pack_into("<d", data, i + 1, 2.0**30)
    with pytest.raises(DecodeError, match="scale"):
        validate_tensor_payload(bytes(data), params, ciphertexts=2, parms_id=ctx.parms_id)


def test_bad_arguments_are_typed_errors() -> None:
    params = Preset.BFV_4096.params
    with pytest.raises(DecodeError):
        validate_tensor_payload("text", params, ciphertexts=1, parms_id=bytes(32))  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        validate_tensor_payload(b"\x12\x00", params, ciphertexts=0, parms_id=bytes(32))
    with pytest.raises(DecodeError, match="parms_id"):
        validate_tensor_payload(b"\x12\x00", params, ciphertexts=1, parms_id=b"short")


def _run_child(examples: int, seed: str) -> dict[str, int]:
    res = subprocess.run(
        [sys.executable, str(CHILD), str(examples), seed],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert res.returncode == 0, (
        f"fuzz child died (rc={res.returncode}; negative = killed by a signal, e.g. a "
        f"TenSEAL segfault)\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    )
    stats = dict(item.split("=") for item in res.stdout.split()[-4:])
    return {key: int(v) for key, v in stats.items()}


def test_fuzz_mutated_payloads_never_crash() -> None:
    pytest.importorskip("tenseal")
    """400 mutants (bit flips, byte rewrites, truncations, splices, inserts, deletes),
    derandomized: each is refused with DecodeError or loads; none kills the process."""
    stats = _run_child(400, "-")
    assert stats["examples"] >= 300
    assert stats["rejected"] > 0 and stats["reached_tenseal"] > 0


@pytest.mark.long
@pytest.mark.parametrize("seed", ["1", "2"])
def test_fuzz_mutated_payloads_never_crash_long(seed: str) -> None:
    pytest.importorskip("tenseal")
    stats = _run_child(20000, seed)
    assert stats["examples"] >= 15000


# ------------------------------------------- the SEAL fields inside each ciphertext
# (he_envelope.md §4.1).  SEAL's own loader accepts most of these; two accepted
# payloads must always be addable, so each is refused before TenSEAL sees it.


def _rewrite(data: bytes, k: int, **fields: object) -> bytes:
    from adversarial.test_a8_he import rewrite_seal_fields

    return rewrite_seal_fields(data, ciphertexts=k, compr=2, **fields)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("ntt", None, "NTT"),  # flipped for the scheme
        ("ntt", 2, "NTT"),  # not a boolean byte
        ("size", 3, "polynomials"),
        ("size", 0, "polynomials"),
        ("scale", None, "scale"),  # 2^scale_bits ± 1 ulp: CKKS; not 1.0: BFV
        ("correction", 2, "correction"),
        ("parms_id", bytes(32), "parms_id"),
    ],
)
def test_every_seal_ciphertext_field_is_checked(  # type: ignore[no-untyped-def]
    made, field: str, value: object, match: str
) -> None:
    import math

    params, ctx, out = made
    ckks = params.scheme.name == "CKKS"
    if field == "ntt" and value is None:
        value = 0 if ckks else 1
    if field == "scale":
        value = math.nextafter(2.0**params.scale_bits, math.inf) if ckks else 2.0
    data = out[3]
    validate_tensor_payload(_rewrite(data, 3), params, ciphertexts=3, parms_id=ctx.parms_id)
    bad = _rewrite(data, 3, **{field: value})
    with pytest.raises(DecodeError, match=match):
        validate_tensor_payload(bad, params, ciphertexts=3, parms_id=ctx.parms_id)
    with pytest.raises(DecodeError):
        ctx.load(bad, ciphertexts=3)


def test_uncompressed_and_zlib_bodies_are_checked_alike(made) -> None:  # type: ignore[no-untyped-def]
    """SEAL may also write mode 0 (none) and 1 (zlib): same field checks."""
    import zlib

    from adversarial.test_a8_he import rewrite_seal_fields

    params, ctx, out = made
    plain = rewrite_seal_fields(out[1], ciphertexts=1, compr=0)
    ctx.load(plain, ciphertexts=1)
    h = _ct_offset(plain, 1)
    length = struct.unpack_from("<Q", plain, h + 8)[0]
    body = zlib.compress(plain[h + 16 : h + length])
    blob = plain[h : h + 5] + b"\x01" + plain[h + 6 : h + 8] + struct.pack("<Q", 16 + len(body))
    zdata = plain[: h - 4] + b"\x12" + _len_varint(len(blob) + len(body)) + blob + body
    zdata += plain[h + length :]
    ctx.load(zdata, ciphertexts=1)  # TenSEAL reads zlib too
    bad = rewrite_seal_fields(out[1], ciphertexts=1, compr=0, correction=5)
    with pytest.raises(DecodeError, match="correction"):
        validate_tensor_payload(bad, params, ciphertexts=1, parms_id=ctx.parms_id)
    for junk in (zdata[:-3] + b"\x00\x00\x00", plain[:-1] + bytes([plain[-1] ^ 1])):
        with pytest.raises(DecodeError):
            ctx.load(junk, ciphertexts=1)


def _len_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def test_unreduced_coefficient_and_wrong_body_length_are_refused(made) -> None:  # type: ignore[no-untyped-def]
    from adversarial.test_a8_he import rewrite_seal_fields

    params, ctx, out = made
    plain = bytearray(rewrite_seal_fields(out[1], ciphertexts=1, compr=0))
    h = _ct_offset(bytes(plain), 1)
    first_coeff = h + 16 + 73 + 24
    struct.pack_into("<Q", plain, first_coeff, params.primes[0])  # == q_0: not reduced
    with pytest.raises(DecodeError, match="reduced"):
        validate_tensor_payload(bytes(plain), params, ciphertexts=1, parms_id=ctx.parms_id)
    # a self-consistent blob whose body lacks its last coefficient
    short = bytes(rewrite_seal_fields(out[1], ciphertexts=1, compr=0))
    length = struct.unpack_from("<Q", short, h + 8)[0]
    blob = short[h : h + 8] + struct.pack("<Q", length - 8) + short[h + 16 : h + length - 8]
    cut = short[: h - 4] + b"\x12" + _len_varint(len(blob)) + blob + short[h + length :]
    with pytest.raises(DecodeError, match="body is"):
        validate_tensor_payload(cut, params, ciphertexts=1, parms_id=ctx.parms_id)
