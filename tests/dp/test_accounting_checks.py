"""The accountant's argument checks: exact bounds, typed errors, the text a user reads.

A privacy accountant that accepts a zero noise multiplier, a sampling rate above
one or a delta of one returns a number that means nothing; each refusal here is
checked at its boundary (the last accepted value and the first refused one) and
with its message.  Written for mutants that survived ``mutmut`` over
``secagg/dp/accounting.py`` (benchmarks/mutation/README.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.dp.accounting import (
    Mechanism,
    MechanismSpec,
    calibrate_local_stddev,
    ddgauss_rdp,
    ddgauss_zcdp_epsilon,
    epsilon,
    gaussian_rdp,
    poisson_subsampled_rdp,
    rdp_to_dp,
    sampled_gaussian_rdp,
    skellam_rdp,
)
from secagg.errors import ParameterError

DD = dict(l2_sensitivity=1.0, local_stddev=1.0, clients=2, dim=4)
SPEC = dict(mechanism=Mechanism.SKELLAM, l2_sensitivity=1.0, l1_sensitivity=1.0, local_stddev=1.0)

CASES: list[tuple[str, Callable[[], Any], str]] = [
    (
        "z bool",
        lambda: gaussian_rdp([2], noise_multiplier=True),
        "noise_multiplier must be a number",
    ),
    ("z str", lambda: gaussian_rdp([2], noise_multiplier="1"), "noise_multiplier must be a number"),
    (
        "z zero",
        lambda: gaussian_rdp([2], noise_multiplier=0.0),
        "noise_multiplier must be finite and > 0",
    ),
    (
        "z neg",
        lambda: gaussian_rdp([2], noise_multiplier=-1),
        "noise_multiplier must be finite and > 0",
    ),
    (
        "z inf",
        lambda: gaussian_rdp([2], noise_multiplier=math.inf),
        "noise_multiplier must be finite and > 0",
    ),
    (
        "z nan",
        lambda: gaussian_rdp([2], noise_multiplier=math.nan),
        "noise_multiplier must be finite and > 0",
    ),
    (
        "orders 1",
        lambda: gaussian_rdp([1, 2], noise_multiplier=1.0),
        "orders must be a non-empty sequence of integers >= 2",
    ),
    (
        "orders empty",
        lambda: gaussian_rdp([], noise_multiplier=1.0),
        "orders must be a non-empty sequence of integers >= 2",
    ),
    (
        "orders float",
        lambda: gaussian_rdp([2.5], noise_multiplier=1.0),
        "orders must be a non-empty sequence of integers >= 2",
    ),
    (
        "orders 2-D",
        lambda: gaussian_rdp([[2, 3]], noise_multiplier=1.0),
        "orders must be a non-empty sequence of integers >= 2",
    ),
    (
        "clients 0",
        lambda: ddgauss_zcdp_epsilon(**{**DD, "clients": 0}),
        "clients must be a positive integer",
    ),
    (
        "clients bool",
        lambda: ddgauss_zcdp_epsilon(**{**DD, "clients": True}),
        "clients must be a positive integer",
    ),
    (
        "clients float",
        lambda: ddgauss_zcdp_epsilon(**{**DD, "clients": 2.0}),
        "clients must be a positive integer",
    ),
    ("dim 0", lambda: ddgauss_zcdp_epsilon(**{**DD, "dim": 0}), "dim must be a positive integer"),
    (
        "max_clients",
        lambda: ddgauss_zcdp_epsilon(**DD, max_clients=1),
        "max_clients must be >= clients",
    ),
    (
        "max_clients 0",
        lambda: ddgauss_zcdp_epsilon(**DD, max_clients=0),
        "max_clients must be a positive integer",
    ),
    (
        "sigma 0",
        lambda: ddgauss_zcdp_epsilon(**{**DD, "local_stddev": 0}),
        "local_stddev must be finite and > 0",
    ),
    (
        "l2 0",
        lambda: ddgauss_zcdp_epsilon(**{**DD, "l2_sensitivity": 0}),
        "l2_sensitivity must be finite and > 0",
    ),
    (
        "q > 1",
        lambda: sampled_gaussian_rdp([2], sampling_rate=1.0000001, noise_multiplier=1.0),
        "sampling_rate must be in (0, 1]",
    ),
    (
        "q 0",
        lambda: sampled_gaussian_rdp([2], sampling_rate=0.0, noise_multiplier=1.0),
        "sampling_rate must be finite and > 0",
    ),
    (
        "zw q > 1",
        lambda: poisson_subsampled_rdp([2], sampling_rate=2.0, base_rdp=lambda o: np.ones(len(o))),
        "sampling_rate must be in (0, 1]",
    ),
    (
        "order too big",
        lambda: sampled_gaussian_rdp([16384], sampling_rate=0.5, noise_multiplier=1.0),
        "Rényi orders above 16383 are not supported",
    ),
    ("delta 1", lambda: rdp_to_dp([2], [0.1], 1.0), "delta must be in (0, 1)"),
    ("delta 0", lambda: rdp_to_dp([2], [0.1], 0.0), "delta must be finite and > 0"),
    ("shapes", lambda: rdp_to_dp([2, 3], [0.1], 1e-5), "rdp and orders must have the same length"),
    (
        "skellam l1",
        lambda: skellam_rdp([2], l1_sensitivity=0, l2_sensitivity=1, variance=1),
        "l1_sensitivity must be finite and > 0",
    ),
    (
        "skellam l2",
        lambda: skellam_rdp([2], l1_sensitivity=1, l2_sensitivity=0, variance=1),
        "l2_sensitivity must be finite and > 0",
    ),
    (
        "skellam var",
        lambda: skellam_rdp([2], l1_sensitivity=1, l2_sensitivity=1, variance=0),
        "variance must be finite and > 0",
    ),
    (
        "mechanism",
        lambda: MechanismSpec(**{**SPEC, "mechanism": "skellam"}, dim=4),
        "mechanism must be a Mechanism",
    ),
    ("spec dim", lambda: MechanismSpec(**SPEC, dim=0), "dim must be a positive integer"),
    (
        "spec l1",
        lambda: MechanismSpec(**{**SPEC, "l1_sensitivity": -1.0}, dim=4),
        "l1_sensitivity must be finite and > 0",
    ),
    (
        "spec sigma",
        lambda: MechanismSpec(**{**SPEC, "local_stddev": 0.0}, dim=4),
        "local_stddev must be finite and > 0",
    ),
    (
        "skellam clients",
        lambda: MechanismSpec(**SPEC, dim=4).rdp([2], 0),
        "clients must be a positive integer",
    ),
    (
        "rounds",
        lambda: epsilon(MechanismSpec(**SPEC, dim=4), delta=1e-5, rounds=0, clients=3),
        "rounds must be a positive integer",
    ),
    (
        "target",
        lambda: calibrate_local_stddev(
            target_epsilon=0,
            delta=1e-5,
            rounds=1,
            sampling_rate=1.0,
            mechanism=Mechanism.DDGAUSS,
            l2_sensitivity=1.0,
            l1_sensitivity=1.0,
            dim=4,
            clients=3,
        ),
        "target_epsilon must be finite and > 0",
    ),
]


@pytest.mark.parametrize(("call", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusals_are_typed_and_say_why(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        call()


def test_boundaries_that_are_accepted() -> None:
    # the largest sampling rate, the largest supported order, numpy scalars
    assert sampled_gaussian_rdp([2, 16383], sampling_rate=1.0, noise_multiplier=2.0).tolist() == [
        2 / 8,
        16383 / 8,
    ]
    assert np.isfinite(
        sampled_gaussian_rdp([16383], sampling_rate=0.5, noise_multiplier=50.0)
    ).all()
    base = gaussian_rdp([2, 3], noise_multiplier=np.float64(1.5))
    assert (
        poisson_subsampled_rdp(
            np.array([2, 3], dtype=np.int32),
            sampling_rate=1.0,
            base_rdp=lambda o: gaussian_rdp(o, noise_multiplier=1.5),
        ).tolist()
        == base.tolist()
    )
    assert ddgauss_zcdp_epsilon(**{**DD, "clients": np.int64(2)}) == ddgauss_zcdp_epsilon(**DD)
    assert ddgauss_zcdp_epsilon(**DD, max_clients=2) == ddgauss_zcdp_epsilon(**DD)
    eps, order = rdp_to_dp([2, 3], [0.0, 0.0], 0.999999)
    assert eps == 0.0 and order in (2, 3)  # clamped at zero, never negative
    assert ddgauss_rdp([2, 4], **DD).tolist() == [
        2 * ddgauss_zcdp_epsilon(**DD) ** 2 / 2,
        4 * ddgauss_zcdp_epsilon(**DD) ** 2 / 2,
    ]


def test_closed_forms() -> None:
    # Gaussian: alpha / (2 z^2); Skellam: Agarwal et al. with mu = 8, D1 = 3, D2 = 2
    assert gaussian_rdp([2, 10], noise_multiplier=2.0).tolist() == [2 / 8, 10 / 8]
    a = np.array([2.0, 5.0])
    want = a * 4 / 16 + np.minimum(((2 * a - 1) * 4 + 18) / 256, 9 / 16)
    got = skellam_rdp([2, 5], l1_sensitivity=3, l2_sensitivity=2, variance=8)
    assert np.allclose(got, want, rtol=1e-15, atol=0)


def test_unreachable_target_says_how_far_it_searched() -> None:
    msg = (
        "epsilon 1e-09 cannot be reached with noise up to 2^40 at Rényi orders <= 3 "
        "(delta=1e-05); raise epsilon or delta"
    )
    with pytest.raises(ParameterError, match=f"^{re.escape(msg)}$"):
        calibrate_local_stddev(
            target_epsilon=1e-9,
            delta=1e-5,
            rounds=1,
            sampling_rate=1.0,
            mechanism=Mechanism.SKELLAM,
            l2_sensitivity=1.0,
            l1_sensitivity=1.0,
            dim=4,
            clients=3,
            orders=[2, 3],
        )
