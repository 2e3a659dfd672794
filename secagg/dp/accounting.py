"""Privacy accounting for the distributed discrete Gaussian and Skellam mechanisms.

Pure math on numpy (no torch, no opacus): ``protocols/dp.md`` §6.

* :func:`ddgauss_zcdp_epsilon` — Kairouz–Liu–Steinke 2021: the sum of ``m``
  independent discrete Gaussians ``N_Z(0, σ²)`` in ``D`` dimensions with L2
  sensitivity ``Δ₂`` is ``ε²/2``-zCDP.
* :func:`skellam_rdp` — Agarwal–Kairouz–Liu 2021: RDP of the Skellam mechanism.
* :func:`poisson_subsampled_rdp` — Zhu–Wang 2019 general upper bound for Poisson
  subsampling (client sampling), integer orders.
* :func:`sampled_gaussian_rdp` — the exact sampled-Gaussian RDP at integer orders
  (Mironov–Talwar–Zhang 2019), the continuous reference that Opacus implements.
* :func:`rdp_to_dp` — RDP → (ε, δ), the conversion Opacus uses (Balle et al. 2020).
* :func:`epsilon` and :func:`calibrate_local_stddev` — the per-deployment entry points.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_ORDERS",
    "Mechanism",
    "MechanismSpec",
    "calibrate_local_stddev",
    "ddgauss_rdp",
    "ddgauss_zcdp_epsilon",
    "epsilon",
    "gaussian_rdp",
    "poisson_subsampled_rdp",
    "rdp_to_dp",
    "sampled_gaussian_rdp",
    "skellam_rdp",
]

FloatArray = npt.NDArray[np.float64]

#: Integer Rényi orders used everywhere (the Zhu–Wang bound needs integers).  Orders
#: up to 4096 let small targets be reached: with ``α ≤ A`` no ε below about
#: ``ln(1/δ)/(A−1)`` can be certified.
DEFAULT_ORDERS: tuple[int, ...] = (
    *range(2, 257),
    *(288, 320, 384, 448, 512, 640, 768, 1024, 1536, 2048, 3072, 4096),
)


class Mechanism(enum.Enum):
    """Which discrete noise the clients add."""

    DDGAUSS = "ddgauss"
    SKELLAM = "skellam"


def _pos(name: str, v: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number")
    f = float(v)
    if not math.isfinite(f) or f <= 0:
        raise ParameterError(f"{name} must be finite and > 0")
    return f


def _pos_int(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ParameterError(f"{name} must be a positive integer")
    return int(v)


def _orders(orders: Sequence[int]) -> npt.NDArray[np.int64]:
    arr = np.asarray(orders)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 2:
        raise ParameterError("orders must be a non-empty sequence of integers >= 2")
    return arr.astype(np.int64)


def ddgauss_zcdp_epsilon(
    *,
    l2_sensitivity: float,
    local_stddev: float,
    clients: int,
    dim: int,
    max_clients: int | None = None,
) -> float:
    """KLS 2021: ``ε`` such that the sum of ``clients`` discrete Gaussians is ``ε²/2``-zCDP.

    ``ε = min( sqrt(Δ²/(mσ²) + τD/2), Δ/(sqrt(m)σ) + τ sqrt(D) )`` with
    ``τ = 10·Σ_{k=1}^{m−1} exp(−2π²σ²·k/(k+1))``.

    Parameters
    ----------
    l2_sensitivity:
        ``Δ₂`` in integer units.
    local_stddev:
        ``σ`` of each client's discrete Gaussian (integer units).
    clients:
        ``m``, the number of noise summands (survivors).
    dim:
        ``D``, the number of coordinates.
    max_clients:
        If given, the worst (largest) ``ε`` over every ``m ∈ [clients, max_clients]``.

    Raises
    ------
    ParameterError
        On non-positive inputs.
    """
    delta2 = _pos("l2_sensitivity", l2_sensitivity)
    sigma = _pos("local_stddev", local_stddev)
    m0 = _pos_int("clients", clients)
    m1 = m0 if max_clients is None else _pos_int("max_clients", max_clients)
    if m1 < m0:
        raise ParameterError("max_clients must be >= clients")
    d = _pos_int("dim", dim)
    k = np.arange(1, m1, dtype=np.float64)
    terms = np.exp(-2.0 * math.pi**2 * sigma**2 * k / (k + 1.0))
    taus = 10.0 * np.concatenate([[0.0], np.cumsum(terms)])  # taus[m-1] = τ for m summands
    ms = np.arange(m0, m1 + 1, dtype=np.float64)
    tau = taus[m0 - 1 : m1]
    var = ms * sigma**2
    a = np.sqrt(delta2**2 / var + 0.5 * tau * d)
    b = delta2 / np.sqrt(var) + tau * math.sqrt(d)
    return float(np.max(np.minimum(a, b)))


def ddgauss_rdp(
    orders: Sequence[int],
    *,
    l2_sensitivity: float,
    local_stddev: float,
    clients: int,
    dim: int,
    max_clients: int | None = None,
) -> FloatArray:
    """RDP ``ε(α) = α·ε_z²/2`` of the distributed discrete Gaussian (from its zCDP)."""
    a = _orders(orders).astype(np.float64)
    ez = ddgauss_zcdp_epsilon(
        l2_sensitivity=l2_sensitivity,
        local_stddev=local_stddev,
        clients=clients,
        dim=dim,
        max_clients=max_clients,
    )
    return a * ez * ez / 2.0


def skellam_rdp(
    orders: Sequence[int], *, l1_sensitivity: float, l2_sensitivity: float, variance: float
) -> FloatArray:
    """Agarwal–Kairouz–Liu 2021: RDP of the Skellam mechanism with total variance ``μ``.

    ``ε(α) = α Δ₂²/(2μ) + min( ((2α−1)Δ₂² + 6Δ₁)/(4μ²), 3Δ₁/(2μ) )``.
    """
    a = _orders(orders).astype(np.float64)
    d1 = _pos("l1_sensitivity", l1_sensitivity)
    d2 = _pos("l2_sensitivity", l2_sensitivity)
    mu = _pos("variance", variance)
    return a * d2**2 / (2.0 * mu) + np.minimum(
        ((2.0 * a - 1.0) * d2**2 + 6.0 * d1) / (4.0 * mu**2), 3.0 * d1 / (2.0 * mu)
    )


def gaussian_rdp(orders: Sequence[int], *, noise_multiplier: float) -> FloatArray:
    """RDP ``α/(2z²)`` of the Gaussian mechanism with noise multiplier ``z``."""
    z = _pos("noise_multiplier", noise_multiplier)
    return _orders(orders).astype(np.float64) / (2.0 * z * z)


_LOGFACT = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 1 << 14, dtype=np.float64)))])


def _log_binom(n: int, k: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if n >= _LOGFACT.shape[0]:
        raise ParameterError("Rényi orders above 16383 are not supported")
    ki = k.astype(np.int64)
    return _LOGFACT[n] - _LOGFACT[ki] - _LOGFACT[n - ki]  # type: ignore[no-any-return]


def _logsumexp(x: npt.NDArray[np.float64]) -> float:
    m = float(np.max(x))
    if m == -math.inf:
        return -math.inf
    return m + math.log(float(np.sum(np.exp(x - m))))


def sampled_gaussian_rdp(
    orders: Sequence[int], *, sampling_rate: float, noise_multiplier: float
) -> FloatArray:
    """Exact RDP of the Poisson-sampled Gaussian mechanism at integer orders.

    ``A_α = Σ_{k=0}^{α} C(α,k)(1−q)^{α−k} q^k exp((k²−k)/(2z²))``,
    ``ε(α) = ln(A_α)/(α−1)`` (Mironov–Talwar–Zhang 2019, §3.3), computed in log space.
    """
    q = _pos("sampling_rate", sampling_rate)
    if q > 1:
        raise ParameterError("sampling_rate must be in (0, 1]")
    z = _pos("noise_multiplier", noise_multiplier)
    out = []
    for alpha in _orders(orders):
        al = int(alpha)
        if q == 1.0:
            out.append(al / (2.0 * z * z))
            continue
        k = np.arange(al + 1, dtype=np.float64)
        terms = (
            _log_binom(al, k)
            + (al - k) * math.log1p(-q)
            + k * math.log(q)
            + (k * k - k) / (2.0 * z * z)
        )
        out.append(_logsumexp(terms) / (al - 1))
    return np.asarray(out, dtype=np.float64)


def poisson_subsampled_rdp(
    orders: Sequence[int], *, sampling_rate: float, base_rdp: Callable[[Sequence[int]], FloatArray]
) -> FloatArray:
    """Zhu–Wang 2019 (Thm. 6) RDP upper bound for a Poisson-subsampled mechanism.

    Parameters
    ----------
    orders:
        Integer orders ``α ≥ 2``.
    sampling_rate:
        ``q ∈ (0, 1]``; ``q = 1`` returns ``base_rdp(orders)``.
    base_rdp:
        ``ε(·)`` of the mechanism without sampling, evaluated at integer orders.

    The result is capped at ``ε(α)`` (subsampling never hurts).
    """
    q = _pos("sampling_rate", sampling_rate)
    if q > 1:
        raise ParameterError("sampling_rate must be in (0, 1]")
    ords = _orders(orders)
    base_at = np.asarray(base_rdp(list(ords)), dtype=np.float64)
    if q == 1.0:
        return base_at
    top = int(ords.max())
    eps_all = np.asarray(base_rdp(list(range(2, top + 1))), dtype=np.float64)  # ε(2..top)
    lq, l1q = math.log(q), math.log1p(-q)
    out = []
    for alpha, cap in zip(ords, base_at, strict=True):
        al = int(alpha)
        t0 = (al - 1) * l1q + math.log(al * q - q + 1.0)
        t1 = math.log(al * (al - 1) / 2.0) + 2 * lq + (al - 2) * l1q + eps_all[0]
        parts = [t0, t1]
        if al >= 3:
            ell = np.arange(3, al + 1, dtype=np.float64)
            tl = (
                math.log(3.0)
                + _log_binom(al, ell)
                + (al - ell) * l1q
                + ell * lq
                + (ell - 1.0) * eps_all[ell.astype(np.int64) - 2]
            )
            parts.append(_logsumexp(tl))
        val = _logsumexp(np.asarray(parts)) / (al - 1)
        out.append(min(val, float(cap)))
    return np.asarray(out, dtype=np.float64)


def rdp_to_dp(orders: Sequence[int], rdp: npt.ArrayLike, delta: float) -> tuple[float, int]:
    """Convert an RDP curve to ``(ε, δ)``-DP; returns ``(ε, best order)``.

    ``ε = min_α [R(α) − (ln δ + ln α)/(α−1) + ln((α−1)/α)]`` (Balle et al. 2020,
    the formula Opacus's ``get_privacy_spent`` uses).

    Raises
    ------
    ParameterError
        If ``delta`` is not in (0, 1) or the shapes differ.
    """
    d = _pos("delta", delta)
    if d >= 1:
        raise ParameterError("delta must be in (0, 1)")
    a = _orders(orders).astype(np.float64)
    r = np.asarray(rdp, dtype=np.float64)
    if r.shape != a.shape:
        raise ParameterError("rdp and orders must have the same length")
    eps = r - (math.log(d) + np.log(a)) / (a - 1.0) + np.log((a - 1.0) / a)
    eps = np.where(np.isnan(eps), np.inf, eps)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), int(a[i])


@dataclass(frozen=True, slots=True, kw_only=True)
class MechanismSpec:
    """What the accountant needs to know about one round of the aggregate.

    Parameters
    ----------
    mechanism:
        :class:`Mechanism`.
    l2_sensitivity, l1_sensitivity:
        ``Δ₂``, ``Δ₁`` of one client's rounded, scaled vector (integer units).
    local_stddev:
        ``σ`` per client, integer units.
    dim:
        ``D`` (padded dimension).
    """

    mechanism: Mechanism
    l2_sensitivity: float
    l1_sensitivity: float
    local_stddev: float
    dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, Mechanism):
            raise ParameterError("mechanism must be a Mechanism")
        _pos("l2_sensitivity", self.l2_sensitivity)
        _pos("l1_sensitivity", self.l1_sensitivity)
        _pos("local_stddev", self.local_stddev)
        _pos_int("dim", self.dim)

    def rdp(
        self, orders: Sequence[int], clients: int, max_clients: int | None = None
    ) -> FloatArray:
        """Per-round RDP (no sampling) of the sum of ``clients`` noisy inputs.

        With ``max_clients``, the worst case over every survivor count in
        ``[clients, max_clients]``.
        """
        if self.mechanism is Mechanism.DDGAUSS:
            return ddgauss_rdp(
                orders,
                l2_sensitivity=self.l2_sensitivity,
                local_stddev=self.local_stddev,
                clients=clients,
                dim=self.dim,
                max_clients=max_clients,
            )
        # Skellam's bound decreases with the total variance: the worst case is ``clients``.
        _pos_int("clients", clients)
        return skellam_rdp(
            orders,
            l1_sensitivity=self.l1_sensitivity,
            l2_sensitivity=self.l2_sensitivity,
            variance=clients * self.local_stddev**2,
        )


def epsilon(
    spec: MechanismSpec,
    *,
    delta: float,
    rounds: int,
    sampling_rate: float = 1.0,
    clients: int,
    max_clients: int | None = None,
    orders: Sequence[int] = DEFAULT_ORDERS,
) -> float:
    """``ε`` of ``rounds`` rounds of the aggregate at the given ``δ``.

    Parameters
    ----------
    clients:
        The number of survivors (noise summands) per round.
    max_clients:
        If given, the worst case over every survivor count in ``[clients, max_clients]``
        — the guarantee of a deployment calibrated to ``n_min = clients``.
    sampling_rate:
        Poisson client-sampling rate ``q``.

    Raises
    ------
    ParameterError
        On invalid parameters.
    """
    t = _pos_int("rounds", rounds)
    r = poisson_subsampled_rdp(
        orders,
        sampling_rate=sampling_rate,
        base_rdp=lambda o: spec.rdp(o, clients, max_clients),
    )
    return rdp_to_dp(orders, t * r, delta)[0]


def calibrate_local_stddev(
    *,
    target_epsilon: float,
    delta: float,
    rounds: int,
    sampling_rate: float,
    mechanism: Mechanism,
    l2_sensitivity: float,
    l1_sensitivity: float,
    dim: int,
    clients: int,
    max_clients: int | None = None,
    orders: Sequence[int] = DEFAULT_ORDERS,
    rtol: float = 1e-6,
) -> float:
    """Smallest local ``σ`` (integer units) whose :func:`epsilon` is ``≤ target_epsilon``.

    Bisection on ``σ`` to relative tolerance ``rtol`` (the returned ``σ`` always meets
    the target).

    Raises
    ------
    ParameterError
        If the target cannot be met with ``σ ≤ 2^40``.
    """
    target = _pos("target_epsilon", target_epsilon)

    def eps_at(sigma: float) -> float:
        spec = MechanismSpec(
            mechanism=mechanism,
            l2_sensitivity=l2_sensitivity,
            l1_sensitivity=l1_sensitivity,
            local_stddev=sigma,
            dim=dim,
        )
        return epsilon(
            spec,
            delta=delta,
            rounds=rounds,
            sampling_rate=sampling_rate,
            clients=clients,
            max_clients=max_clients,
            orders=orders,
        )

    hi = max(1.0, float(l2_sensitivity))
    while eps_at(hi) > target:
        hi *= 2.0
        if hi > 2.0**40:
            raise ParameterError(
                f"epsilon {target} cannot be reached with noise up to 2^40 at Rényi orders "
                f"<= {max(orders)} (delta={delta}); raise epsilon or delta"
            )
    lo = hi / 2.0
    while lo > 1e-9 and eps_at(lo) <= target:
        lo /= 2.0
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if eps_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi
