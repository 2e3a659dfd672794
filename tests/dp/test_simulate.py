"""``secagg simulate --dp``: the report carries ε, δ, bits per coordinate and the error."""

from __future__ import annotations

import argparse
import json

import pytest

from secagg.errors import ParameterError
from secagg.sim.dp import run


def ns(**kw) -> argparse.Namespace:
    base = dict(
        protocol="secagg+",
        clients=20,
        length=50,
        dropout=0.1,
        drop_phase="masked-input",
        neighbors=None,
        threshold=None,
        bits=None,
        security="semi-honest",
        seed=3,
        dp="skellam",
        epsilon=2.0,
        delta=1e-6,
    )
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("mech", ["ddgauss", "skellam"])
def test_simulate_reports_privacy_and_error(mech: str) -> None:
    r = run(ns(dp=mech))
    json.dumps(r)  # serialisable
    dp = r["dp"]
    assert not r["aborted"] and r["survivors"] == 18 and r["dropped"] == 2
    assert dp["mechanism"] == mech and dp["bits_per_coordinate"] == 20 and dp["delta"] == 1e-6
    assert dp["epsilon_realized"] <= dp["epsilon_calibrated"] <= 2.0
    assert dp["epsilon_calibrated"] > 1.99
    assert dp["wrap_probability_bound"] <= 1e-4
    # the realised error is the noise level (within a factor 1.5 at 64 coordinates)
    assert 0.6 < dp["rmse_vs_true_mean"] / dp["expected_noise_rmse"] < 1.5


def test_simulate_refuses_missing_epsilon_and_tiny_bits() -> None:
    with pytest.raises(ParameterError):
        run(ns(epsilon=None))
    with pytest.raises(ParameterError):
        run(ns(bits=3))
    with pytest.raises(ParameterError):
        run(ns(dp="laplace"))
