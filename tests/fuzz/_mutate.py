"""Hypothesis strategies for fuzzing decoders: arbitrary bytes, and valid samples
mutated by bit flips, byte overwrites, truncations, insertions, deletions,
duplications and splices with another sample."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

__all__ = ["arbitrary", "fuzz_input", "mutated"]


def _apply(data: bytearray, op: tuple, other: bytes) -> bytearray:  # type: ignore[type-arg]
    kind = op[0]
    n = len(data)
    if kind == "flip" and n:
        data[op[1] % n] ^= 1 << op[2]
    elif kind == "set" and n:
        data[op[1] % n] = op[2]
    elif kind == "truncate":
        del data[op[1] % (n + 1) :]
    elif kind == "insert":
        p = op[1] % (n + 1)
        data[p:p] = op[2]
    elif kind == "delete" and n:
        p = op[1] % n
        del data[p : p + op[2]]
    elif kind == "duplicate" and n:
        p = op[1] % n
        data[p:p] = data[p : p + op[2]]
    elif kind == "splice":
        cut_a = op[1] % (n + 1)
        cut_b = op[2] % (len(other) + 1)
        data = bytearray(data[:cut_a] + other[cut_b:])
    elif kind == "u32":  # overwrite a length/count/id field with an extreme value
        p = op[1] % max(1, n)
        data[p : p + 4] = op[2].to_bytes(4, "big")
    return data


_OPS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
    st.tuples(st.just("duplicate"), st.integers(0, 2**20), st.integers(1, 64)),
    st.tuples(st.just("splice"), st.integers(0, 2**20), st.integers(0, 2**20)),
    st.tuples(
        st.just("u32"),
        st.integers(0, 2**20),
        st.sampled_from([0, 1, 2, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1]),
    ),
)


def mutated(samples: Sequence[bytes], max_ops: int = 4) -> st.SearchStrategy[bytes]:
    """A valid sample with 1..``max_ops`` mutations (never returned unchanged)."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        i = draw(st.integers(0, len(samples) - 1))
        base = samples[i]
        other = samples[draw(st.integers(0, len(samples) - 1))]
        data = bytearray(base)
        for op in draw(st.lists(_OPS, min_size=1, max_size=max_ops)):
            data = _apply(data, op, other)
        out = bytes(data)
        if out == base:  # a no-op mutation: force a flip
            out = bytes(_apply(bytearray(base), ("flip", draw(st.integers(0, 2**20)), 0), other))
        return out

    return build()


def arbitrary(max_size: int = 512) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


def fuzz_input(
    samples: Sequence[bytes], prefixes: Sequence[bytes] = ()
) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, valid prefixes followed by arbitrary bytes, or mutated samples."""
    parts = [arbitrary(), mutated(samples)]
    if prefixes:
        parts.append(
            st.tuples(st.sampled_from(list(prefixes)), st.binary(max_size=256)).map(
                lambda p: p[0] + p[1]
            )
        )
    return st.one_of(*parts)
