"""Fuzzing the DP server decoder: whatever "total" and survivor count reach
``DDPRound.decode_sum`` / ``decode_mean`` (a wrong dtype, length, out-of-range
values, a survivor count below ``n_min`` or of the wrong type), the outcome is a
finite float vector of length ``dim`` or a typed error — ``AbortedError`` below
``n_min`` (nothing released), ``ParameterError`` otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg.dp import DDPRound, Mechanism, plan
from secagg.errors import AbortedError, ParameterError

from ._count import count

PARAMS = plan(
    mechanism=Mechanism.DDGAUSS,
    epsilon=3.0,
    delta=1e-5,
    dim=50,
    l2_clip=1.0,
    bits=20,
    min_survivors=5,
    max_clients=8,
)
ROUND = DDPRound(params=PARAMS, rotation_seed=b"fuzz-rotation-seed")
D = PARAMS.padded_dim

TOTALS = st.one_of(
    hnp.arrays(
        st.sampled_from([np.uint32, np.uint64, np.int64, np.float64, np.uint8]),
        st.sampled_from([(D,), (D - 1,), (D + 1,), (0,), (D, 1), (1, D)]),
    ),
    hnp.arrays(np.uint32, (D,), elements=st.integers(0, 2**20 - 1)),
    hnp.arrays(np.uint32, (D,), elements=st.integers(0, 2**32 - 1)),
)
SURVIVORS = st.one_of(
    st.integers(-3, 12), st.just(True), st.floats(0, 10), st.just(np.int64(6)), st.none()
)


def check_decode(total: np.ndarray, survivors: object) -> None:
    count()
    try:
        out = ROUND.decode_mean(total, survivors)  # type: ignore[arg-type]
    except (AbortedError, ParameterError) as exc:
        if isinstance(exc, AbortedError):
            assert int(survivors) < PARAMS.min_survivors  # type: ignore[call-overload]
        return
    except ZeroDivisionError as exc:  # pragma: no cover - the property failing
        raise AssertionError("untyped error") from exc
    assert out.shape == (PARAMS.dim,) and np.all(np.isfinite(out))
    assert total.shape == (D,) and int(total.max()) < 2**PARAMS.bits


@given(TOTALS, SURVIVORS)
def test_fuzz_dp_decoder(total: np.ndarray, survivors: object) -> None:
    check_decode(total, survivors)


@pytest.mark.long
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(TOTALS, SURVIVORS)
def test_fuzz_dp_decoder_long(total: np.ndarray, survivors: object) -> None:
    check_decode(total, survivors)
