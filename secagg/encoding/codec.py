"""A tiny, strict binary codec shared by every wire format in secagg.

Big-endian fixed-width integers and ``u32``-length-prefixed byte strings.
:class:`Reader` raises :class:`~secagg.errors.DecodeError` on truncation, on
trailing bytes (:meth:`Reader.finish`) and on lengths above a caller-given bound,
so a hostile length field cannot make a parser allocate unbounded memory.
"""

from __future__ import annotations

from secagg.errors import DecodeError, ParameterError

__all__ = ["MAX_BLOB", "Reader", "Writer"]

#: Default upper bound for one length-prefixed blob (1 GiB).
MAX_BLOB = 1 << 30


class Writer:
    """Append-only builder of a message's bytes."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        return self._uint(v, 1)

    def u16(self, v: int) -> Writer:
        return self._uint(v, 2)

    def u32(self, v: int) -> Writer:
        return self._uint(v, 4)

    def u64(self, v: int) -> Writer:
        return self._uint(v, 8)

    def _uint(self, v: int, n: int) -> Writer:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << (8 * n):
            raise ParameterError(f"value {v!r} does not fit in u{8 * n}")
        self._parts.append(v.to_bytes(n, "big"))
        return self

    def raw(self, b: bytes) -> Writer:
        """Fixed-length bytes (the length is implied by the format)."""
        self._parts.append(bytes(b))
        return self

    def raw_parts(self, parts: list[bytes]) -> Writer:
        """Fixed-length byte strings, appended without a copy (each is joined once, by
        :meth:`getvalue`): ``bytes`` only, so nothing can change before then."""
        if any(type(p) is not bytes for p in parts):
            raise ParameterError("raw_parts takes bytes objects")
        self._parts.extend(parts)
        return self

    def blob(self, b: bytes) -> Writer:
        """``u32`` length prefix, then the bytes."""
        bb = bytes(b)
        self.u32(len(bb))
        self._parts.append(bb)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Cursor over untrusted bytes; every read is bounds-checked."""

    __slots__ = ("_buf", "_pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError("expected bytes")
        self._buf = memoryview(bytes(data))
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._buf):
            raise DecodeError("truncated message")
        mv = self._buf[self._pos : self._pos + n]
        self._pos += n
        return mv

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self._take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def raw(self, n: int) -> bytes:
        return bytes(self._take(n))

    def raw_view(self, n: int) -> memoryview:
        """Zero-copy view of the next ``n`` bytes (for large vectors)."""
        return self._take(n)

    def rewind(self, n: int) -> None:
        """Step back ``n`` bytes (a parser that peeked ahead and chose another path)."""
        if not 0 <= n <= self._pos:
            raise ParameterError("cannot rewind past the start")
        self._pos -= n

    def blob(self, max_len: int = MAX_BLOB) -> bytes:
        n = self.u32()
        if n > max_len:
            raise DecodeError(f"length field {n} exceeds the bound {max_len}")
        return bytes(self._take(n))

    def count(self, max_count: int) -> int:
        """A ``u32`` element count, bounded by ``max_count`` and by the bytes left."""
        n = self.u32()
        if n > max_count or n > self.remaining:
            raise DecodeError(f"element count {n} is out of bounds")
        return n

    def finish(self) -> None:
        """Require that every byte was consumed."""
        if self.remaining:
            raise DecodeError(f"{self.remaining} trailing bytes")
