"""Injected randomness.

Production code draws from :class:`SystemRandom` (``os.urandom``).  Tests and the
simulator's seeded mode use :class:`InsecureDeterministicRandom`, an AES-CTR stream
keyed from a seed with HKDF: reproducible, cryptographically strong *as a stream*,
but only as secret as its seed — hence the name and the warning.

Security notes
--------------
Never use :mod:`random` or ``numpy.random`` for anything secret.  Vectorised draws
here read CSPRNG bytes and only *view* them through numpy.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from secagg.errors import InsecureConfigurationWarning, ParameterError

__all__ = [
    "AesCtrRandom",
    "InsecureDeterministicRandom",
    "RandomSource",
    "SystemRandom",
    "fill_uint64",
    "randbelow",
    "random_uint64",
    "random_unit_float64",
]


@runtime_checkable
class RandomSource(Protocol):
    """Where a party gets its random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        ...

    def child(self, label: str) -> RandomSource:
        """An independent source for a sub-component (same kind as ``self``).

        For a seeded source the child depends only on the seed and the label path:
        asking twice for the same label gives the same stream (replayable).
        """
        ...

    def fork(self, label: str) -> RandomSource:
        """A sub-source seeded from this source's *stream*: successive forks differ.

        Entry points that run a whole round (``secure_sum``, ``he_sum``, ...) fork
        once per call, so passing one seeded source to many rounds never reuses
        masks, keys or noise across rounds.
        """
        ...


class SystemRandom:
    """The operating system's CSPRNG (``os.urandom``)."""

    __slots__ = ()

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ParameterError("n must be non-negative")
        return os.urandom(n)

    def child(self, label: str) -> SystemRandom:
        return self

    def fork(self, label: str) -> SystemRandom:
        return self


class InsecureDeterministicRandom:
    """A reproducible stream: AES-256-CTR keyed by HKDF(seed, label).

    Parameters
    ----------
    seed:
        At least 16 bytes (or an ``int`` for convenience in tests and simulations).
    label:
        Domain-separation label; :meth:`child` extends it.
    warn:
        Emit :class:`~secagg.errors.InsecureConfigurationWarning` (default ``True``).

    Security notes
    --------------
    Everything drawn from it is known to whoever knows the seed.  Use it only for
    tests, known-answer vectors and reproducible simulations.
    """

    __slots__ = ("_enc", "_label", "_seed")

    def __init__(self, seed: bytes | int, label: str = "root", *, warn: bool = True) -> None:
        from secagg.primitives.kdf import derive  # local: kdf imports nothing from here

        if isinstance(seed, bool):
            raise ParameterError("seed must be bytes or a non-negative int")
        if isinstance(seed, int):
            if not 0 <= seed < 2**256:
                raise ParameterError("integer seed must be in [0, 2^256)")
            seed = seed.to_bytes(32, "big")
        if not isinstance(seed, (bytes, bytearray)) or len(seed) < 16:
            raise ParameterError("seed must be at least 16 bytes")
        if warn:
            warnings.warn(
                "InsecureDeterministicRandom: all randomness is determined by the seed; "
                "use only for tests and simulations",
                InsecureConfigurationWarning,
                stacklevel=2,
            )
        self._seed = bytes(seed)
        self._label = label
        key = derive(self._seed, purpose="insecure-deterministic-rng", fields=(label,), length=32)
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ParameterError("n must be non-negative")
        return self._enc.update(b"\x00" * n)

    def fill(self, out: bytearray | memoryview, nbytes: int | None = None) -> None:
        """Overwrite the first ``nbytes`` (default: all) bytes of ``out`` with the next
        ``nbytes`` bytes of the stream (the same bytes :meth:`random_bytes` would
        return), as :meth:`AesCtrRandom.fill` does."""
        _fill_ctr(self._enc, out, nbytes, None)

    def child(self, label: str) -> InsecureDeterministicRandom:
        return InsecureDeterministicRandom(self._seed, f"{self._label}/{label}", warn=False)

    def fork(self, label: str) -> InsecureDeterministicRandom:
        return InsecureDeterministicRandom(
            self.random_bytes(32), f"{self._label}/{label}", warn=False
        )


#: Keystream bytes produced per ``update_into`` call (buffers reused across calls).
_AES_CHUNK = 1 << 18
#: The plaintext of every keystream chunk (read-only, shared).
_ZEROS = memoryview(bytes(_AES_CHUNK))


def _fill_ctr(
    enc: CipherContext, out: bytearray | memoryview, nbytes: int | None,
    scratch: bytearray | None,
) -> None:
    """Write the next ``nbytes`` keystream bytes of ``enc`` into ``out`` with
    ``update_into`` (no allocation while ``out`` has 16 spare bytes after ``nbytes``;
    the last piece goes through ``scratch`` otherwise)."""
    view = memoryview(out).cast("B")
    cap = view.nbytes
    n = cap if nbytes is None else int(nbytes)
    if not 0 <= n <= cap:
        raise ParameterError("nbytes must fit the buffer")
    done = 0
    while done < n:
        m = min(_AES_CHUNK, n - done)
        if done + m + 16 <= cap:  # room for update_into's block slack: no copy
            k = enc.update_into(_ZEROS[:m], view[done:])
        else:
            if scratch is None or len(scratch) < m + 16:
                scratch = bytearray(m + 16)
            k = enc.update_into(_ZEROS[:m], scratch)
            view[done : done + k] = scratch[:k]
        done += k


class AesCtrRandom:
    """A fast CSPRNG: AES-256-CTR keyed with 32 bytes from ``os.urandom``.

    The CTR_DRBG construction without reseeding: the key is secret and fresh per
    instance, the keystream is the output.  It is what the bulk draws (DP noise,
    randomized rounding) use, because ``os.urandom`` runs at a fraction of AES-NI
    speed.  :meth:`child` and :meth:`fork` return generators keyed with 32 fresh
    bytes of this stream (independent streams; the label is only documentation).

    Security notes
    --------------
    After ``os.fork`` a child process would continue the parent's stream; every draw
    therefore checks the process id and rekeys from ``os.urandom`` in a new process.
    Draws are serialised with a lock (one keystream, several threads).
    """

    __slots__ = ("_enc", "_lock", "_pid", "_scratch")

    def __init__(self, *, key: bytes | None = None) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) != 32):
            raise ParameterError("key must be 32 bytes")
        self._lock = threading.Lock()
        self._scratch = bytearray(_AES_CHUNK + 16)
        self._rekey(key if key is not None else os.urandom(32))

    def _rekey(self, key: bytes) -> None:
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\x00" * 16)).encryptor()
        self._pid = os.getpid()

    def random_bytes(self, n: int) -> bytes:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ParameterError("n must be a non-negative integer")
        out = bytearray(n)
        self.fill(out)
        return bytes(out)

    def fill(self, out: bytearray | memoryview, nbytes: int | None = None) -> None:
        """Overwrite the first ``nbytes`` (default: all) bytes of the writable buffer
        ``out`` with the next ``nbytes`` bytes of the stream — the copy-free path of
        :func:`random_uint64`.  Spare room after ``nbytes`` lets the cipher write in
        place; it is left unspecified."""
        with self._lock:
            if os.getpid() != self._pid:
                self._rekey(os.urandom(32))
            _fill_ctr(self._enc, out, nbytes, self._scratch)

    def child(self, label: str) -> AesCtrRandom:
        return AesCtrRandom(key=self.random_bytes(32))

    def fork(self, label: str) -> AesCtrRandom:
        return AesCtrRandom(key=self.random_bytes(32))


def randbelow(rng: RandomSource, n: int) -> int:
    """Uniform integer in ``[0, n)`` by rejection sampling (no modulo bias)."""
    if n <= 0:
        raise ParameterError("n must be positive")
    k = n.bit_length()
    nbytes = (k + 7) // 8
    excess = nbytes * 8 - k
    while True:
        r = int.from_bytes(rng.random_bytes(nbytes), "big") >> excess
        if r < n:
            return r


def random_uint64(rng: RandomSource, size: int) -> npt.NDArray[np.uint64]:
    """``size`` uniform 64-bit words from ``rng`` (a view of CSPRNG bytes)."""
    if size < 0:
        raise ParameterError("size must be non-negative")
    out = np.empty(size + 2, dtype=np.uint64)  # 16 spare bytes: the cipher writes in place
    fill_uint64(rng, out, size)
    return out[:size]


def fill_uint64(rng: RandomSource, out: npt.NDArray[np.uint64], size: int | None = None) -> None:
    """Overwrite ``out[:size]`` (default: all of ``out``) with the next ``size`` 64-bit
    little-endian words of ``rng`` — the words :func:`random_uint64` would return — in
    place: a source with ``fill`` (the AES-CTR ones) writes its keystream straight
    into ``out`` (give ``out`` two spare words after ``size`` to avoid a copy).

    Raises
    ------
    ParameterError
        If ``out`` is not a writable C-contiguous uint64 array or ``size`` does not fit.
    """
    if not isinstance(out, np.ndarray) or out.dtype != np.uint64 or out.ndim != 1:
        raise ParameterError("out must be a 1-D uint64 array")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ParameterError("out must be C-contiguous and writable")
    n = out.shape[0] if size is None else size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= out.shape[0]:
        raise ParameterError("size must be in [0, len(out)]")
    n = int(n)
    fill = getattr(rng, "fill", None)
    if fill is None:
        out[:n] = np.frombuffer(rng.random_bytes(8 * n), dtype="<u8")
        return
    fill(out.data, 8 * n)
    if sys.byteorder != "little":  # pragma: no cover - the words are little-endian by definition
        out[:n].byteswap(inplace=True)


def random_unit_float64(rng: RandomSource, size: int) -> npt.NDArray[np.float64]:
    """``size`` uniform floats in ``[0, 1)`` with 53 random bits each."""
    words = random_uint64(rng, size) >> np.uint64(11)
    out: npt.NDArray[np.float64] = words.astype(np.float64) * (1.0 / 9007199254740992.0)
    return out
