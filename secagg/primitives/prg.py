"""Mask expansion: a seed becomes a vector of uniform elements of Z_{2^b}.

Definition (byte-exact in ``protocols/primitives.md`` §PRG):

* ``key = HKDF-SHA256(seed, purpose="prg/aes-128-ctr")`` (16 bytes), the
  ``info`` built by :func:`secagg.primitives.kdf.encode_info` with an empty
  session id and no fields.  Seeds are 16..64 bytes and are already
  domain-separated by whoever derived them.
* keystream = AES-128-CTR(key) with the 16-byte counter block starting at 0 and
  incremented as a 128-bit big-endian integer; i.e. the encryption of zeros.
* element ``i`` is the little-endian word ``keystream[w*i : w*(i+1)]`` with
  ``w = 4`` for ``b <= 32`` (uint32) and ``w = 8`` for ``b > 32`` (uint64), reduced
  mod ``2^b``.  Since ``2^b`` divides ``2^(8w)`` the elements are uniform.
* a chunk at element ``offset`` starts at keystream byte ``w*offset``: counter
  block ``w*offset // 16``, skipping ``w*offset % 16`` bytes — so masking a vector
  chunk by chunk gives exactly the same result as masking it at once.

Performance: keystream is written with ``update_into`` into a buffer reused for
every chunk, and all masks are applied chunk-major so the vector chunk stays in
cache while every seed's keystream is added to it.  ``cryptography`` releases
the GIL inside AES, so callers may run disjoint chunks in threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import ParameterError
from secagg.primitives.kdf import derive

__all__ = [
    "CHUNK_ELEMENTS",
    "MAX_SEED_BYTES",
    "MIN_SEED_BYTES",
    "add_mask",
    "apply_masks",
    "dtype_for_bits",
    "expand",
    "prg_key",
]

MIN_SEED_BYTES = 16
MAX_SEED_BYTES = 64
#: Elements per keystream chunk (256 KiB of uint32): fits in L2 next to the vector chunk.
CHUNK_ELEMENTS = 1 << 16
_PRG_PURPOSE = "prg/aes-128-ctr"

UIntArray = npt.NDArray[np.uint32] | npt.NDArray[np.uint64]


def dtype_for_bits(bits: int) -> type[np.uint32] | type[np.uint64]:
    """``uint32`` for ``1 <= bits <= 32``, ``uint64`` for ``33 <= bits <= 64``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 64:
        raise ParameterError(f"bits must be an integer in [1, 64], got {bits!r}")
    return np.uint32 if bits <= 32 else np.uint64


def _check_seed(seed: bytes) -> bytes:
    if not isinstance(seed, (bytes, bytearray)):
        raise ParameterError("seed must be bytes")
    if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
        raise ParameterError(
            f"seed must be {MIN_SEED_BYTES}..{MAX_SEED_BYTES} bytes (>= 128 bits), got {len(seed)}"
        )
    return bytes(seed)


def prg_key(seed: bytes) -> bytes:
    """The AES-128 key the PRG uses for ``seed``."""
    return derive(_check_seed(seed), purpose=_PRG_PURPOSE, length=16)


def _stream(key: bytes, offset: int, width: int) -> CipherContext:
    """An AES-CTR encryptor positioned at element ``offset``."""
    byte_off = offset * width
    block, skip = divmod(byte_off, 16)
    enc = Cipher(algorithms.AES(key), modes.CTR((block % 2**128).to_bytes(16, "big"))).encryptor()
    if skip:
        enc.update(b"\x00" * skip)
    return enc


def _check_offset_length(offset: int, length: int) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ParameterError("offset must be a non-negative integer")
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ParameterError("length must be a non-negative integer")


def expand(seed: bytes, length: int, bits: int, *, offset: int = 0) -> UIntArray:
    """Elements ``offset .. offset+length-1`` of the mask for ``seed`` in Z_{2^bits}.

    Parameters
    ----------
    seed:
        16..64 bytes of secret, already domain-separated.
    length:
        Number of elements to return.
    bits:
        Modulus exponent ``b`` in [1, 64].
    offset:
        Element index of the first returned element (for chunked masking).

    Raises
    ------
    ParameterError
        On a short seed or bad ``bits``/``length``/``offset``.
    """
    dt = dtype_for_bits(bits)
    _check_offset_length(offset, length)
    out = cast("UIntArray", np.zeros(length, dtype=dt))
    apply_masks(out, [(seed, 1)], bits, offset=offset)
    return out


def add_mask(vec: UIntArray, seed: bytes, bits: int, *, offset: int = 0, sign: int = 1) -> None:
    """``vec += sign * PRG(seed)[offset:offset+len(vec)]`` mod ``2^bits``, in place."""
    apply_masks(vec, [(seed, sign)], bits, offset=offset)


def apply_masks(
    vec: UIntArray,
    masks: Sequence[tuple[bytes, int]],
    bits: int,
    *,
    offset: int = 0,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> None:
    """Add or subtract several masks into ``vec`` in place, mod ``2^bits``.

    ``vec`` holds elements ``offset .. offset+len(vec)-1`` of the full vector.
    Each mask is ``(seed, sign)`` with ``sign`` in ``{+1, -1}``.  The result is
    reduced mod ``2^bits``.

    Raises
    ------
    ParameterError
        If ``vec`` has the wrong dtype, is not a writable contiguous 1-D array,
        holds a value ``>= 2^bits``, or a mask is malformed.  Nothing is changed then.
    """
    dt = dtype_for_bits(bits)
    if not isinstance(vec, np.ndarray) or vec.dtype != dt or vec.ndim != 1:
        raise ParameterError(f"vec must be a 1-D numpy array of dtype {np.dtype(dt).name}")
    if not (vec.flags.c_contiguous and vec.flags.writeable):
        raise ParameterError("vec must be C-contiguous and writable")
    _check_offset_length(offset, len(vec))
    if chunk_elements <= 0 or chunk_elements % 4:
        raise ParameterError("chunk_elements must be a positive multiple of 4")
    width = np.dtype(dt).itemsize
    full = bits == 8 * width
    modmask = dt((1 << bits) - 1)
    if not full and len(vec) and int(vec.max()) > int(modmask):
        raise ParameterError(f"vec holds values >= 2^{bits}")
    streams = []
    for seed, sign in masks:
        if sign not in (1, -1):
            raise ParameterError("mask sign must be +1 or -1")
        streams.append((_stream(prg_key(seed), offset, width), sign == 1))
    if not streams or not len(vec):
        return
    n = len(vec)
    chunk = min(chunk_elements, n)
    zeros = bytes(chunk * width)
    # keystream words are little-endian by definition (native order on x86/ARM)
    ks: UIntArray = np.empty(chunk, dtype=np.dtype(dt).newbyteorder("<"))
    ks_bytes = memoryview(ks).cast("B")  # type: ignore[arg-type]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        m = stop - start
        part = vec[start:stop]
        if m == chunk:
            ksv, kb, zb = ks, ks_bytes, zeros
        else:
            ksv, kb, zb = ks[:m], ks_bytes[: m * width], zeros[: m * width]
        for enc, positive in streams:
            enc.update_into(zb, kb)
            if positive:
                np.add(part, ksv, out=part)
            else:
                np.subtract(part, ksv, out=part)
        if not full:
            np.bitwise_and(part, modmask, out=part)
