"""Strict structural validation of a TenSEAL ciphertext-tensor payload, before TenSEAL.

TenSEAL 0.3.x deserializes ``CKKSTensorProto`` / ``BFVTensorProto`` with
protobuf and then trusts the message: a message whose ``shape`` does not match
its ``ciphertexts`` (e.g. one rewritten tag byte that turns the ciphertext field
into an unknown field) makes ``ckks_tensor_from`` / ``bfv_tensor_from`` read out
of bounds and **kill the process** — no exception a caller could catch.  So every
payload that came over the wire is validated here first, in pure Python, and
only the exact layout TenSEAL itself emits is accepted
(``protocols/wire/he_envelope.md`` §4):

``CKKSTensorProto``  (``tenseal/proto/tensors.proto``)::

    [0x0A len  packed uint32 shape = [k]]      only for k >= 2 (empty shape is omitted)
    k x (0x12 len  SEAL ciphertext)            field 2, repeated bytes
    0x19  8-byte little-endian double scale    field 3 (CKKS), must be 2^scale_bits
    0x20  varint batch_size                    field 4 (CKKS), must be N/2

``BFVTensorProto``: the same without the scale, batch_size is field 3 (``0x18``),
equal to ``N``.

Every varint must be minimal (canonical), every field appear exactly once in
that order (ciphertexts: exactly ``k`` times), nothing may follow.  Each SEAL
ciphertext blob must start with SEAL 4's 16-byte header: magic ``0xA15E``,
header size 16, version 4.x, a known compression mode (0 none, 1 zlib, 2 zstd),
zero reserved bytes, and a ``size`` equal to the blob length and within the
bounds for the parameter set.

The body is then decompressed (zlib from the standard library; zstd through the
``ZSTD_decompress`` that TenSEAL's own extension exports, or the system
``libzstd``) into an output buffer of exactly the size a fresh ciphertext has,
and every field of SEAL's ``Ciphertext::save_members`` is checked
(``he_envelope.md`` §4.1)::

    32 B  parms_id            == the context's first (data) level parms_id
     1 B  is_ntt_form         == 1 for CKKS, 0 for BFV
     8 B  size                == 2 polynomials
     8 B  poly_modulus_degree == N
     8 B  coeff_modulus_size  == L, the number of data primes
     8 B  scale (double)      == 2^scale_bits exactly (CKKS; so finite, > 0), 1.0 (BFV)
     8 B  correction_factor   == 1
    16 B  DynArray header      (SEAL header, uncompressed, size == its length)
     8 B  coefficient count   == 2 · L · N
          2 · L · N  u64      each < its RNS prime

Security notes
--------------
This is a denial-of-service defence, not authentication: the envelope signature
already tells who sent the bytes.  A payload accepted here is one TenSEAL's own
serializer could have produced (modulo the compressed ciphertext bodies), and its
ciphertexts have exactly the metadata of a fresh encryption under the round's
context: two accepted payloads can always be added.  Without the field checks a
registered client whose upload arrived first could plant, e.g., a CKKS scale of
``3·2^31`` (or NaN, ±inf, a negative one) or a BFV ciphertext flagged as in NTT
form — SEAL loads both — as the server's running sum, and every honest upload
after it would fail the addition and be blamed on its honest sender.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import DecodeError
from secagg.he.params import HEParams, Scheme, coeff_modulus_primes

__all__ = [
    "PARMS_ID_BYTES",
    "SEAL_HEADER_SIZE",
    "SEAL_MAGIC",
    "ciphertext_body_bytes",
    "max_ciphertext_bytes",
    "parse_tensor_payload",
    "validate_tensor_payload",
]

SEAL_MAGIC = 0xA15E
SEAL_HEADER_SIZE = 16
_SEAL_MAJOR = 4
_COMPR_MODES = frozenset({0, 1, 2})  # none, zlib, zstd
#: Smallest SEAL ciphertext blob: header plus the fixed ciphertext metadata.
_MIN_CT_BYTES = SEAL_HEADER_SIZE + 8
#: SEAL's ``parms_id_type``: four uint64 words (a hash of the parameters).
PARMS_ID_BYTES = 32
#: ``Ciphertext::save_members``: parms_id, is_ntt_form, size, N,
#: coeff_modulus_size, scale, correction_factor (little endian, no padding).
_CT_META = struct.Struct("<32sBQQQdQ")
#: The data ``DynArray``: a SEAL header, then a u64 element count.
_DYN_HEADER = struct.Struct("<HBBBBHQQ")
#: Polynomials in a fresh (and a summed) ciphertext.
_CT_POLYS = 2

_TAG_SHAPE = 0x0A  # field 1, length-delimited (packed repeated uint32)
_TAG_CIPHERTEXT = 0x12  # field 2, length-delimited
_TAG_CKKS_SCALE = 0x19  # field 3, 64-bit
_TAG_CKKS_BATCH = 0x20  # field 4, varint
_TAG_BFV_BATCH = 0x18  # field 3, varint


def max_ciphertext_bytes(params: HEParams) -> int:
    """Upper bound on one serialized SEAL ciphertext (size 2) for ``params``.

    The uncompressed object is the header, ~80 bytes of metadata and a SEAL
    ``DynArray`` (its own 16-byte header and u64 count) of ``2 · N · L`` 64-bit
    words, ``L`` the number of data primes; compression never expands it by more
    than zstd's/zlib's worst case (< 1% + a few hundred bytes).  Allow 4 KiB + 1%.
    """
    n, data_primes = params.poly_modulus_degree, len(params.coeff_mod_bit_sizes) - 1
    raw = SEAL_HEADER_SIZE + 128 + SEAL_HEADER_SIZE + 8 + 2 * n * data_primes * 8
    return raw + raw // 100 + 4096


def ciphertext_body_bytes(params: HEParams) -> int:
    """Exact length of a fresh ciphertext's (decompressed) body for ``params``.

    The fixed metadata, the data ``DynArray``'s header and count, and
    ``2 · L · N`` coefficients of 8 bytes each (``L`` data primes).
    """
    n, data_primes = params.poly_modulus_degree, len(params.coeff_mod_bit_sizes) - 1
    return _CT_META.size + _DYN_HEADER.size + 8 * _CT_POLYS * data_primes * n


@functools.cache
def _zstd_decompress() -> Callable[[bytes, int], bytes | bytearray] | None:
    """``ZSTD_decompress`` through ctypes, or None when no libzstd can be found.

    The library TenSEAL is built with exports it (SEAL compresses with it); the
    extension is only ``dlopen``-ed here, not imported.  The system ``libzstd`` is
    the fallback.  ``ZSTD_decompress`` never writes past the capacity it is given
    and returns an error code on malformed input.
    """
    candidates: list[str] = []
    spec = importlib.util.find_spec("_tenseal_cpp")
    if spec is not None and spec.origin:
        candidates.append(spec.origin)
    system = ctypes.util.find_library("zstd")
    if system:
        candidates.append(system)
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            fn, is_error = lib.ZSTD_decompress, lib.ZSTD_isError
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_size_t
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
        is_error.restype = ctypes.c_uint
        is_error.argtypes = [ctypes.c_size_t]

        def decompress(
            src: bytes, capacity: int, fn: Any = fn, is_error: Any = is_error
        ) -> bytearray:
            dst = bytearray(max(capacity, 1))
            got = fn((ctypes.c_char * len(dst)).from_buffer(dst), capacity, src, len(src))
            if is_error(got):
                raise DecodeError("zstd: malformed stream or body larger than a ciphertext")
            del dst[got:]
            return dst

        return decompress
    return None


def _seal_body(blob: memoryview, compr: int, capacity: int, index: int) -> bytes | bytearray:
    """The decompressed body of a SEAL blob, refusing one longer than ``capacity``."""
    body = bytes(blob[SEAL_HEADER_SIZE:])
    if compr == 0:
        return body
    if compr == 1:
        d = zlib.decompressobj()
        try:
            out = d.decompress(body, capacity + 1)
        except zlib.error:
            raise DecodeError(f"ciphertext {index}: malformed zlib body") from None
        if not d.eof or d.unused_data or d.unconsumed_tail:
            raise DecodeError(f"ciphertext {index}: zlib body is not one complete stream")
        return out
    decompress = _zstd_decompress()
    if decompress is None:
        raise DecodeError(
            f"ciphertext {index}: no zstd decoder to check a zstd-compressed ciphertext "
            "(install secagg[he])"
        )
    try:
        return decompress(body, capacity)
    except DecodeError as exc:
        raise DecodeError(f"ciphertext {index}: {exc}") from None


@functools.lru_cache(maxsize=16)
def _data_primes(n: int, bits: tuple[int, ...]) -> npt.NDArray[np.uint64]:
    """The data primes ``q_0 .. q_{L-1}`` (SEAL's choice for ``(N, bits)``), cached."""
    primes = np.asarray(coeff_modulus_primes(n, bits)[:-1], dtype=np.uint64)
    primes.flags.writeable = False
    return primes


def _check_ciphertext(
    raw: bytes | bytearray, params: HEParams, parms_id: bytes, index: int
) -> None:
    """Check a decompressed ``Ciphertext`` body field by field (module docstring)."""
    n, data_primes = params.poly_modulus_degree, len(params.coeff_mod_bit_sizes) - 1
    want = ciphertext_body_bytes(params)
    if len(raw) != want:
        raise DecodeError(f"ciphertext {index}: body is {len(raw)} bytes, a ciphertext has {want}")
    pid, ntt, size, degree, moduli, scale, correction = _CT_META.unpack_from(raw, 0)
    ckks = params.scheme is Scheme.CKKS
    if pid != parms_id:
        raise DecodeError(f"ciphertext {index}: parms_id is not the round's data level")
    if ntt != (1 if ckks else 0):
        raise DecodeError(f"ciphertext {index}: NTT flag {ntt} is wrong for {params.scheme.name}")
    if size != _CT_POLYS:
        raise DecodeError(f"ciphertext {index}: {size} polynomials, expected {_CT_POLYS}")
    if degree != n or moduli != data_primes:
        raise DecodeError(
            f"ciphertext {index}: degree/moduli ({degree}, {moduli}) != ({n}, {data_primes})"
        )
    expected_scale = 2.0**params.scale_bits if ckks else 1.0
    # compared exactly: NaN, ±inf, 0 and negative scales all fail here
    if not math.isfinite(scale) or scale != expected_scale:
        raise DecodeError(f"ciphertext {index}: SEAL scale {scale!r} != {expected_scale!r}")
    if correction != 1:
        raise DecodeError(f"ciphertext {index}: correction factor {correction} != 1")
    magic, hsize, major, _minor, compr, reserved, dsize, count = _DYN_HEADER.unpack_from(
        raw, _CT_META.size
    )
    if (magic, hsize, major, compr, reserved) != (SEAL_MAGIC, SEAL_HEADER_SIZE, _SEAL_MAJOR, 0, 0):
        raise DecodeError(f"ciphertext {index}: bad coefficient array header")
    if dsize != len(raw) - _CT_META.size or count != _CT_POLYS * data_primes * n:
        raise DecodeError(f"ciphertext {index}: coefficient array size does not match")
    coeffs = np.frombuffer(raw, dtype="<u8", offset=_CT_META.size + _DYN_HEADER.size)
    primes = _data_primes(params.poly_modulus_degree, params.coeff_mod_bit_sizes)
    if np.any(coeffs.reshape(_CT_POLYS, data_primes, n) >= primes[None, :, None]):
        raise DecodeError(f"ciphertext {index}: a coefficient is not reduced mod its prime")


def _varint(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Read a minimal protobuf varint of at most 64 bits; return (value, next pos)."""
    value, shift, start = 0, 0, pos
    while True:
        if pos >= end:
            raise DecodeError(f"payload truncated in the {what} varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 64:
            raise DecodeError(f"payload {what} varint too long")
    if pos - start > 1 and buf[pos - 1] == 0:
        raise DecodeError(f"payload {what} varint is not minimal")
    return value, pos


def _check_seal_header(blob: memoryview, params: HEParams, index: int) -> int:
    """Check the 16-byte SEAL header of ``blob``; return its compression mode."""
    if len(blob) < _MIN_CT_BYTES:
        raise DecodeError(f"ciphertext {index}: {len(blob)} bytes is too short")
    magic, hsize, major, _minor, compr, reserved, size = struct.unpack_from("<HBBBBHQ", blob, 0)
    if magic != SEAL_MAGIC:
        raise DecodeError(f"ciphertext {index}: bad SEAL magic {magic:#06x}")
    if hsize != SEAL_HEADER_SIZE or major != _SEAL_MAJOR or reserved != 0:
        raise DecodeError(f"ciphertext {index}: unsupported SEAL header")
    if compr not in _COMPR_MODES:
        raise DecodeError(f"ciphertext {index}: unknown SEAL compression mode {compr}")
    if size != len(blob):
        raise DecodeError(f"ciphertext {index}: SEAL size {size} != blob length {len(blob)}")
    return int(compr)


def parse_tensor_payload(
    payload: bytes, params: HEParams, *, ciphertexts: int, parms_id: bytes
) -> list[memoryview]:
    """Validate ``payload`` strictly and return views of its SEAL ciphertext blobs.

    Parameters
    ----------
    payload:
        Untrusted bytes claimed to be a TenSEAL batched tensor serialization.
    params:
        The round's parameter set (scheme, ``N``, scale).
    ciphertexts:
        ``k``, the number of ciphertexts the chunk must hold (``>= 1``).
    parms_id:
        The 32-byte SEAL ``parms_id`` of the context's first data level
        (:attr:`secagg.he.HEContext.parms_id`); every ciphertext must carry it.

    Raises
    ------
    DecodeError
        On any deviation from the layout in the module docstring, including any
        ciphertext field a fresh encryption under the round's context would not have.

    Security notes
    --------------
    No TenSEAL parsing: safe on arbitrary bytes (the only native code it runs is
    zstd's decompressor, with a bounded output buffer).  Runs in
    ``O(len(payload) + k·L·N)``.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DecodeError("payload must be bytes")
    if isinstance(ciphertexts, bool) or not isinstance(ciphertexts, int) or ciphertexts < 1:
        raise DecodeError("ciphertexts must be a positive integer")
    if not isinstance(parms_id, bytes) or len(parms_id) != PARMS_ID_BYTES:
        raise DecodeError("parms_id must be 32 bytes")
    buf = bytes(payload)
    view = memoryview(buf)
    end, pos = len(buf), 0
    k = ciphertexts
    if k >= 2:
        if pos >= end or buf[pos] != _TAG_SHAPE:
            raise DecodeError("payload: expected the shape field first")
        length, pos = _varint(buf, pos + 1, end, "shape length")
        if length > end - pos:
            raise DecodeError("payload: shape field overruns the payload")
        dim, after = _varint(buf, pos, pos + length, "shape")
        if after != pos + length or dim != k:
            raise DecodeError(f"payload: shape must be [{k}]")
        pos = after
    limit = max_ciphertext_bytes(params)
    body_bytes = ciphertext_body_bytes(params)
    blobs: list[memoryview] = []
    for i in range(k):
        if pos >= end or buf[pos] != _TAG_CIPHERTEXT:
            raise DecodeError(f"payload: expected ciphertext {i} of {k}")
        length, pos = _varint(buf, pos + 1, end, "ciphertext length")
        if length > end - pos:
            raise DecodeError(f"payload: ciphertext {i} overruns the payload")
        if length > limit:
            raise DecodeError(f"payload: ciphertext {i} is {length} bytes > {limit}")
        blob = view[pos : pos + length]
        compr = _check_seal_header(blob, params, i)
        _check_ciphertext(_seal_body(blob, compr, body_bytes, i), params, parms_id, i)
        blobs.append(blob)
        pos += length
    if params.scheme is Scheme.CKKS:
        if pos + 9 > end or buf[pos] != _TAG_CKKS_SCALE:
            raise DecodeError("payload: expected the CKKS scale")
        (scale,) = struct.unpack_from("<d", buf, pos + 1)
        if scale != 2.0**params.scale_bits:
            raise DecodeError(f"payload: scale {scale!r} != 2^{params.scale_bits}")
        pos += 9
        batch_tag = _TAG_CKKS_BATCH
    else:
        batch_tag = _TAG_BFV_BATCH
    if pos >= end or buf[pos] != batch_tag:
        raise DecodeError("payload: expected the batch size")
    batch, pos = _varint(buf, pos + 1, end, "batch size")
    if batch != params.slots:
        raise DecodeError(f"payload: batch size {batch} != {params.slots} slots")
    if pos != end:
        raise DecodeError(f"payload: {end - pos} trailing bytes")
    return blobs


def validate_tensor_payload(
    payload: bytes, params: HEParams, *, ciphertexts: int, parms_id: bytes
) -> None:
    """:func:`parse_tensor_payload` without the result (raises ``DecodeError``)."""
    parse_tensor_payload(payload, params, ciphertexts=ciphertexts, parms_id=parms_id)
