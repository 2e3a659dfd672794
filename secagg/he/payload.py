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
bounds for the parameter set.  The decompressed SEAL object is left to SEAL,
which checks it and raises (a catchable exception) on malformation.

Security notes
--------------
This is a denial-of-service defence, not authentication: the envelope signature
already tells who sent the bytes.  A payload accepted here is one TenSEAL's own
serializer could have produced (modulo the compressed ciphertext bodies).
"""

from __future__ import annotations

import struct

from secagg.errors import DecodeError
from secagg.he.params import HEParams, Scheme

__all__ = [
    "SEAL_HEADER_SIZE",
    "SEAL_MAGIC",
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


def _check_seal_header(blob: memoryview, params: HEParams, index: int) -> None:
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


def parse_tensor_payload(
    payload: bytes, params: HEParams, *, ciphertexts: int
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

    Raises
    ------
    DecodeError
        On any deviation from the layout in the module docstring.

    Security notes
    --------------
    Pure Python, no TenSEAL: safe on arbitrary bytes.  Runs in ``O(len(payload))``.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DecodeError("payload must be bytes")
    if isinstance(ciphertexts, bool) or not isinstance(ciphertexts, int) or ciphertexts < 1:
        raise DecodeError("ciphertexts must be a positive integer")
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
        _check_seal_header(blob, params, i)
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


def validate_tensor_payload(payload: bytes, params: HEParams, *, ciphertexts: int) -> None:
    """:func:`parse_tensor_payload` without the result (raises ``DecodeError``)."""
    parse_tensor_payload(payload, params, ciphertexts=ciphertexts)
