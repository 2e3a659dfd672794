"""The vectorized Shamir paths equal the reference, and keep the sharing properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.primitives import field, shamir
from secagg.primitives.rand import InsecureDeterministicRandom

P = field.P
element = st.integers(0, P - 1)


@st.composite
def big_sharing(draw):
    n = draw(st.integers(3, 40))
    t = draw(st.integers(3, n))
    top = draw(st.sampled_from([64, 2**21, 2**22 - 1, 2**22 + 5, 2**40]))
    lo = max(1, top - 4 * n) if top > 4 * n else 1
    xs = draw(st.lists(st.integers(lo, top), min_size=n, max_size=n, unique=True))
    secrets = draw(st.lists(element, min_size=1, max_size=3))
    seed = draw(st.integers(0, 2**64))
    return t, xs, secrets, seed


@settings(max_examples=60, deadline=None)
@given(big_sharing())
def test_split_many_equals_reference(case):
    t, xs, secrets, seed = case
    fast = shamir.split_many(secrets, t, xs, InsecureDeterministicRandom(seed, warn=False))
    ref = shamir._split_reference(secrets, t, xs, InsecureDeterministicRandom(seed, warn=False))
    assert fast == ref


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(element, min_size=2, max_size=30), min_size=1, max_size=3),
    st.lists(st.integers(1, 2**22 - 1), min_size=1, max_size=30, unique=True),
    st.data(),
)
def test_limb_horner_equals_python_on_any_coefficients(coeff_rows, xs, data):
    k = len(coeff_rows[0])
    rows = [(r * k)[:k] for r in coeff_rows]  # equal lengths
    secrets = [data.draw(element) for _ in rows]
    xt = tuple(xs)
    assert shamir._horner_limbs(secrets, rows, xt) == shamir._horner_python(secrets, rows, xt, P)


def test_limb_horner_extremes():
    """Largest coefficients and x just below the proven bound: no int64 overflow."""
    xt = tuple(range(2**22 - 300, 2**22))
    for c in (P - 1, 2**256 + 296, 2**256 - 1, 2**255):
        rows = [[c] * 300, [P - 1 - i for i in range(300)]]
        assert shamir._horner_limbs([P - 1, 0], rows, xt) == shamir._horner_python(
            [P - 1, 0], rows, xt, P
        )


@settings(max_examples=40, deadline=None)
@given(big_sharing(), st.data())
def test_any_t_of_n_reconstruct_many(case, data):
    t, xs, secrets, seed = case
    rows = shamir.split_many(secrets, t, xs, InsecureDeterministicRandom(seed, warn=False))
    lists = []
    for row in rows:
        idx = data.draw(st.permutations(range(len(xs))))
        k = data.draw(st.integers(t, len(xs)))
        lists.append([(xs[i], row[i]) for i in idx[:k]])
    assert shamir.reconstruct_many(lists, t) == secrets
    assert shamir.reconstruct_many(lists, t) == [
        shamir.reconstruct(sorted(pts)[:t], t) for pts in lists
    ]


def test_reconstruct_many_complete_graph_shape_uses_one_base():
    """Holders 'everyone but the owner': every x-set is a t-subset of one (t+1)-set."""
    n, t = 41, 21
    ids = list(range(1, n + 1))
    secrets = [11, 22, 33]
    rows = shamir.split_many(secrets, t, ids, InsecureDeterministicRandom(4, warn=False))
    lists = [[(x, rows[v % 3][x - 1]) for x in ids if x != v] for v in ids]
    want = [secrets[v % 3] for v in ids]
    shamir.lagrange_at_zero.cache_clear()
    assert shamir.reconstruct_many(lists, t) == want
    info = shamir.lagrange_at_zero.cache_info()
    assert info.currsize == 1  # only the base set was interpolated from scratch


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 6), st.data())
def test_t_minus_1_shares_do_not_determine_the_secret(t, data):
    """Over P: for t-1 fixed shares, every candidate secret has a consistent polynomial.

    Take t-1 shares of a random sharing and any other secret s'; interpolating
    through (0, s') and the t-1 shares gives a degree-(t-1) polynomial whose
    shares at those holders are exactly the given ones — so the shares rule out
    no secret.
    """
    xs = data.draw(st.lists(st.integers(1, 2**30), min_size=t + 2, max_size=t + 2, unique=True))
    secret = data.draw(element)
    other = data.draw(element)
    rows = shamir.split_many([secret], t, xs, InsecureDeterministicRandom(1, warn=False))
    seen = list(zip(xs, rows[0], strict=True))[: t - 1]
    # the polynomial through (0, other) and the t-1 seen shares, evaluated at a new x
    pts = [(0, other), *seen]
    for x, y in seen:
        assert shamir._interpolate_at(pts, x, P) == y
    # and it is a valid sharing of `other`: any t of its points give `other` back
    extra = [(x, shamir._interpolate_at(pts, x, P)) for x in xs[t - 1 : t + 1]]
    assert shamir.reconstruct_many([seen + extra[:1], seen + extra[1:]], t) == [other, other]


@pytest.mark.parametrize(
    "lists, t",
    [
        ([[(1, 5)]], 2),  # too few
        ([[(1, 5), (1, 6)]], 2),  # duplicate x among the used
        ([[(0, 5), (1, 6)]], 2),  # x = 0
        ([[(1, P), (2, 6)]], 2),  # share out of the field
        ([[(1, 5), (P, 6)]], 2),  # x out of the field
        ([[(1, True), (2, 6)]], 2),  # bool share
        ([[(1, 5), (2, 6)]], 0),  # bad threshold
    ],
)
def test_reconstruct_many_rejects(lists, t):
    with pytest.raises(ParameterError):
        shamir.reconstruct_many(lists, t)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([P, 257, 65537, 2**61 - 1]),
    st.sampled_from([300, 2**22, 2**32 - 1, 2**32, 2**40]),
    st.data(),
)
def test_lagrange_exact_product_path_equals_the_modular_loop(prime, top, data):
    """Party ids below 2^32 take the exact-product path; larger ones the modular loop;
    both give the coefficients the modular loop gives."""
    top = min(top, prime - 1)
    k = data.draw(st.integers(1, 30))
    xs = tuple(data.draw(st.lists(st.integers(1, top), min_size=k, max_size=k, unique=True)))
    nums, dens = shamir._lagrange_terms(xs, prime)
    want = tuple(n * pow(d, -1, prime) % prime for n, d in zip(nums, dens, strict=True))
    shamir.lagrange_at_zero.cache_clear()
    assert shamir.lagrange_at_zero(xs, prime=prime) == want


def test_lagrange_exact_path_known_values_and_refusals():
    shamir.lagrange_at_zero.cache_clear()
    # L_i(0) over {1, 2, 3}: 3, -3, 1
    assert shamir.lagrange_at_zero((1, 2, 3)) == (3, P - 3, 1)
    assert shamir.lagrange_at_zero((2**32 - 1, 5)) == shamir.lagrange_at_zero((2**32 - 1, 5))
    with pytest.raises(ParameterError):
        shamir.lagrange_at_zero((1, 1, 2))
    with pytest.raises(ParameterError):
        shamir.lagrange_at_zero((0, 2))


def _rows(rows_y):
    return np.frombuffer(
        b"".join(y.to_bytes(field.ELEMENT_BYTES, "big") for row in rows_y for y in row),
        dtype=np.uint8,
    ).reshape(len(rows_y), -1, field.ELEMENT_BYTES)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_reconstruct_rows_equals_reconstruct_many(data):
    """The limb path (rows inside one (t+1)-set) and the fallback (other rows) give
    exactly what reconstruct_many gives, extreme shares included."""
    t = data.draw(st.integers(1, 12))
    top = data.draw(st.sampled_from([40, 2**20, 2**32 - 1]))
    ids = sorted(data.draw(st.lists(st.integers(1, top), min_size=t + 1, max_size=t + 6,
                                    unique=True)))
    n_rows = data.draw(st.integers(1, 6))
    share = st.one_of(element, st.sampled_from([0, 1, P - 1, 2**256, 2**256 - 1]))
    rows_x, rows_y = [], []
    for _ in range(n_rows):
        pool = ids[: t + 1] if data.draw(st.booleans()) else ids
        rows_x.append(sorted(data.draw(st.permutations(pool))[:t]))
        rows_y.append(data.draw(st.lists(share, min_size=t, max_size=t)))
    got = shamir.reconstruct_rows(np.array(rows_x, dtype=np.uint32), _rows(rows_y), t)
    want = shamir.reconstruct_many(
        [list(zip(x, y, strict=True)) for x, y in zip(rows_x, rows_y, strict=True)], t
    )
    assert got == want


def test_reconstruct_rows_complete_graph_shape_and_known_secret():
    # f(x) = 7 + 3x + 5x^2 (t = 3); rows: every 3-subset of {1, 2, 3, 4} plus {1, 2, 9}
    f = lambda x: (7 + 3 * x + 5 * x * x) % P  # noqa: E731
    sets = [(1, 2, 3), (1, 2, 4), (1, 3, 4), (2, 3, 4), (1, 2, 9)]
    got = shamir.reconstruct_rows(
        np.array(sets, dtype=np.uint32), _rows([[f(x) for x in s] for s in sets]), 3
    )
    assert got == [7] * 5
    assert shamir.reconstruct_rows(np.empty((0, 3), np.uint32),
                                   np.empty((0, 3, field.ELEMENT_BYTES), np.uint8), 3) == []


def test_reconstruct_rows_refusals():
    xs = np.array([[1, 2]], dtype=np.uint32)
    ok = _rows([[5, 6]])
    with pytest.raises(ParameterError, match="ascending"):
        shamir.reconstruct_rows(np.array([[2, 1]], dtype=np.uint32), ok, 2)
    with pytest.raises(ParameterError, match="ascending"):
        shamir.reconstruct_rows(np.array([[2, 2]], dtype=np.uint32), ok, 2)
    with pytest.raises(ParameterError, match="x-coordinates"):
        shamir.reconstruct_rows(np.array([[0, 2]], dtype=np.uint32), ok, 2)
    with pytest.raises(ParameterError, match="x-coordinates"):
        shamir.reconstruct_rows(np.array([[1, 2**32]], dtype=np.int64), ok, 2)
    with pytest.raises(ParameterError, match="field element"):
        shamir.reconstruct_rows(xs, _rows([[5, P]]), 2)
    bad = _rows([[5, 6]]).copy()
    bad[0, 1, 0] = 2  # top byte above P's
    with pytest.raises(ParameterError, match="field element"):
        shamir.reconstruct_rows(xs, bad, 2)
    with pytest.raises(ParameterError, match="xs must be"):
        shamir.reconstruct_rows(np.array([[1, 2, 3]], dtype=np.uint32), ok, 2)
    with pytest.raises(ParameterError, match="ys must be"):
        shamir.reconstruct_rows(xs, ok[:, :1], 2)
    with pytest.raises(ParameterError, match="threshold"):
        shamir.reconstruct_rows(xs, ok, 0)
