"""Differential privacy: distributed discrete noise over secure aggregation, accounting,
and an Opacus DP-SGD wrapper for local training (``protocols/dp.md``).

Nothing here imports torch or opacus at module level; :mod:`secagg.dp.dpsgd` imports
them lazily through :func:`secagg._extras.require` (extra ``dp``).

Client/server API (user-level DP)::

    params = plan(mechanism=Mechanism.DDGAUSS, epsilon=3.0, delta=1e-5, dim=d, l2_clip=1.0,
                  bits=20, min_survivors=90, max_clients=100)
    rnd = DDPRound(params=params, rotation_seed=seed)      # seed: public, per round
    y_i = rnd.encode(x_i, rng)                              # client -> secure_sum input
    mean = rnd.decode_mean(total, survivors)                # server (aborts below n_min)
"""

from secagg.dp.accounting import (
    Mechanism,
    MechanismSpec,
    calibrate_local_stddev,
    ddgauss_zcdp_epsilon,
    epsilon,
    poisson_subsampled_rdp,
    rdp_to_dp,
    sampled_gaussian_rdp,
    skellam_rdp,
)
from secagg.dp.distributed import DDPParams, DDPRound, plan
from secagg.dp.rotation import RandomizedHadamard, fwht, padded_dim
from secagg.dp.samplers import discrete_gaussian, discrete_laplace, poisson, skellam

__all__ = [
    "DDPParams",
    "DDPRound",
    "Mechanism",
    "MechanismSpec",
    "RandomizedHadamard",
    "calibrate_local_stddev",
    "ddgauss_zcdp_epsilon",
    "discrete_gaussian",
    "discrete_laplace",
    "epsilon",
    "fwht",
    "padded_dim",
    "plan",
    "poisson",
    "poisson_subsampled_rdp",
    "rdp_to_dp",
    "sampled_gaussian_rdp",
    "skellam",
    "skellam_rdp",
]
