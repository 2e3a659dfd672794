"""Choose the SecAgg+ neighborhood size ``k`` and Shamir threshold ``t``.

SecAgg+ (Bell et al., CCS 2020) replaces SecAgg's complete graph by a ``k``-regular
Harary graph ``H(k, n)`` laid over a uniformly random permutation of the ``n``
client ids; every client Shamir-shares its secrets ``t``-of-``k`` among its ``k``
neighbors.  This module finds the smallest even ``k`` (and, for it, the smallest
admissible ``t``) such that, when at most ``A = floor(alpha * n)`` clients are
corrupt and at most ``D = floor(delta * n)`` drop out:

* **security** fails with probability ``<= 2^-security_bits``.  Two bad events,
  each given half of the budget (``2^-(security_bits + 1)``), as in the production
  finder (google-parfait/federated-compute, ``graph_parameter_finder.cc``):

  1. *disconnection* — the graph of honest survivors falls apart, so the server
     would learn partial sums.  Removing nodes disconnects ``H(k, n)`` only if two
     disjoint runs of ``k/2`` consecutive ring positions are all bad (corrupt or
     dropped, ``B = A + D`` nodes); there are ``n (n - k - 1) / 2`` such pairs and
     each is all-bad with probability ``B^(k) / n^(k)`` (falling factorials).
     Union bound: ``P_disc <= n (n-k-1)/2 * B^(k) / n^(k)``.
  2. *share leak* — the corrupt neighbors of some honest client hold enough
     shares to reconstruct its secrets.  The neighbors of an honest client are a
     uniform ``k``-subset of the other ``n - 1`` clients, so the number ``X`` of
     corrupt neighbors is hypergeometric ``Hyp(N=n-1, K=A, k)``.  Semi-honest:
     leak iff ``X >= t``.  Malicious (the server may tell different honest
     neighbors different dropout sets and collect shares of both the self-mask
     seed and the key): leak iff ``X >= 2t - k``.  Union bound over the
     ``n - A`` honest clients.

* **correctness** fails with probability ``<= 2^-correctness_bits``: some client
  has fewer than ``t`` surviving neighbors, so its secret cannot be rebuilt.  The
  number ``S`` of surviving neighbors is (worst case) ``Hyp(N=n-1, K=n-1-D, k)``;
  failure iff ``S < t``; union bound over all ``n`` clients.

If no even ``k < n - 1`` works, the finder falls back to the complete graph
(``k = n - 1``: SecAgg), where both events are deterministic: it needs
``A < t`` (semi-honest) or ``A + k < 2t`` (malicious), and ``t <= n - 1 - D``.

Probabilities are computed in log space: the hypergeometric pmf is anchored with
``math.lgamma`` at one end of its support and continued with the exact ratio
``pmf(x+1)/pmf(x)``; tails are accumulated with ``logaddexp``.  Every bound is
compared with a safety margin of ``1e-6`` bits (far above the ~1e-8 rounding
error of ``lgamma`` at ``n = 10^6``), so rounding never lets a weaker choice
through.  The tests check the achieved values against ``scipy.stats.hypergeom``.

With ``alpha = 0.05``, ``delta = 0.33``, 40/20 bits, semi-honest, the finder gives
``(k, t) = (72, 24)`` at ``n = 10^3``, ``(86, 29)`` at ``10^4`` and ``(102, 34)``
at ``10^6`` — the values of Bell et al. and of the production finder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

# The masking state machines already define the threat-model enum
# (SEMI_HONEST = "semi-honest", MALICIOUS = "malicious"); reuse it so that one
# value means the same thing everywhere.  SEMI_HONEST: the server and corrupt
# clients follow the protocol but pool what they see.  MALICIOUS: the server may
# also lie about who dropped (the production finder's "semi-malicious" server),
# which raises the threshold to t > (k + corrupt neighbors) / 2.
from secagg.masking.config import SecurityMode as ThreatModel

__all__ = [
    "MAX_BAD_FRACTION",
    "MAX_CLIENTS",
    "GraphParameters",
    "ThreatModel",
    "choose_parameters",
    "log2_disconnection_probability",
    "log2_hypergeom_cdf",
    "log2_hypergeom_sf",
]

#: Largest ``n`` accepted (keeps every product in the pmf ratios exact in float64).
MAX_CLIENTS = 10**9

#: Largest ``alpha + delta`` (semi-honest) or ``alpha + 2 delta`` (malicious)
#: accepted; the production finder uses the same bound.  Beyond it ``k`` grows
#: towards ``n`` and SecAgg+ stops paying off.
MAX_BAD_FRACTION = Fraction(9, 10)

#: Safety margin (bits) applied to every comparison of a computed log2 bound.
_MARGIN_BITS = 1e-6

_LN2 = math.log(2.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class GraphParameters:
    """The neighborhood size and threshold chosen for one round.

    Parameters
    ----------
    n:
        Number of clients in the round.
    k:
        Neighbors per client (``n - 1`` for the complete graph).
    t:
        Shamir threshold: ``t`` of a client's ``k`` neighbors rebuild its secrets.
    mode:
        Threat model the parameters were chosen for.
    log2_security_failure:
        ``log2`` of the (union-bound) probability that the server learns more
        than the sum; ``-inf`` when it is zero.
    log2_correctness_failure:
        ``log2`` of the (union-bound) probability that the round cannot finish
        although at most the assumed fraction dropped; ``-inf`` when it is zero.
    complete:
        Whether the graph is complete (plain SecAgg, ``k = n - 1``).
    max_corrupt:
        ``floor(corrupt_fraction * n)``, the number of corrupt clients assumed.
    max_dropouts:
        ``floor(dropout_fraction * n)``, the number of dropouts assumed.

    Raises
    ------
    ParameterError
        If the fields are inconsistent (``1 <= t <= k <= n - 1``, ``complete``
        iff ``k = n - 1``, log-probabilities ``<= 0``).
    """

    n: int
    k: int
    t: int
    mode: ThreatModel
    log2_security_failure: float
    log2_correctness_failure: float
    complete: bool
    max_corrupt: int
    max_dropouts: int

    def __post_init__(self) -> None:
        for name in ("n", "k", "t", "max_corrupt", "max_dropouts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParameterError(f"{name} must be an int")
        if self.n < 2:
            raise ParameterError(f"n must be >= 2 (n={self.n})")
        if not 1 <= self.t <= self.k <= self.n - 1:
            raise ParameterError(f"need 1 <= t <= k <= n - 1 (n={self.n}, k={self.k}, t={self.t})")
        if not isinstance(self.mode, ThreatModel):
            raise ParameterError("mode must be a ThreatModel")
        if self.complete != (self.k == self.n - 1):
            raise ParameterError("complete must be True exactly when k == n - 1")
        if not self.complete and self.k % 2:
            raise ParameterError("a Harary graph needs an even k")
        for name in ("log2_security_failure", "log2_correctness_failure"):
            value = getattr(self, name)
            if not isinstance(value, float) or math.isnan(value) or value > 0:
                raise ParameterError(f"{name} must be a float <= 0 (or -inf)")
        if not 0 <= self.max_corrupt < self.n or not 0 <= self.max_dropouts < self.n:
            raise ParameterError("max_corrupt and max_dropouts must be in [0, n)")

    @property
    def security_failure(self) -> float:
        """The security failure probability bound (``2 ** log2_security_failure``)."""
        return math.pow(2.0, self.log2_security_failure)

    @property
    def correctness_failure(self) -> float:
        """The correctness failure probability bound."""
        return math.pow(2.0, self.log2_correctness_failure)


# ---------------------------------------------------------------------------
# log-space probabilities


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _hypergeom_log_pmf(
    population: int, marked: int, sampled: int
) -> tuple[int, npt.NDArray[np.float64]]:
    """Natural-log pmf of ``Hyp(population, marked, sampled)`` on its support.

    Returns ``(lo, logpmf)`` with ``logpmf[i] = ln P[X = lo + i]``.
    """
    lo = max(0, sampled - (population - marked))
    hi = min(sampled, marked)
    anchor = (
        _log_comb(marked, lo)
        + _log_comb(population - marked, sampled - lo)
        - _log_comb(population, sampled)
    )
    x = np.arange(lo, hi, dtype=np.float64)
    out = np.empty(hi - lo + 1, dtype=np.float64)
    out[0] = anchor
    if hi > lo:
        # pmf(x+1)/pmf(x) = (K-x)(k-x) / ((x+1)(N-K-k+x+1)); every factor is an
        # integer < 2^53, so the products are exact.
        num = (marked - x) * (sampled - x)
        den = (x + 1.0) * (population - marked - sampled + x + 1.0)
        out[1:] = anchor + np.cumsum(np.log(num) - np.log(den))
    return lo, out


def _check_hypergeom(population: int, marked: int, sampled: int) -> None:
    for name, value in (("population", population), ("marked", marked), ("sampled", sampled)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ParameterError(f"{name} must be a non-negative int")
    if marked > population or sampled > population:
        raise ParameterError("marked and sampled must not exceed population")


def log2_hypergeom_sf(population: int, marked: int, sampled: int, x: int) -> float:
    """``log2 P[X >= x]`` for ``X ~ Hyp(population, marked, sampled)``.

    Raises
    ------
    ParameterError
        On negative or inconsistent sizes.
    """
    _check_hypergeom(population, marked, sampled)
    lo, lp = _hypergeom_log_pmf(population, marked, sampled)
    i = x - lo
    if i <= 0:
        return 0.0
    if i >= lp.size:
        return -math.inf
    return float(np.logaddexp.reduce(lp[i:])) / _LN2


def log2_hypergeom_cdf(population: int, marked: int, sampled: int, x: int) -> float:
    """``log2 P[X <= x]`` for ``X ~ Hyp(population, marked, sampled)``.

    Raises
    ------
    ParameterError
        On negative or inconsistent sizes.
    """
    _check_hypergeom(population, marked, sampled)
    lo, lp = _hypergeom_log_pmf(population, marked, sampled)
    i = x - lo
    if i < 0:
        return -math.inf
    if i >= lp.size - 1:
        return 0.0
    return float(np.logaddexp.reduce(lp[: i + 1])) / _LN2


def log2_disconnection_probability(n: int, k: int, bad: int) -> float:
    """Union bound (log2) on ``H(k, n)`` losing connectivity when ``bad`` random nodes go.

    ``n (n - k - 1) / 2`` pairs of disjoint runs of ``k/2`` consecutive nodes, each
    all-bad with probability ``bad^(k) / n^(k)``.

    Raises
    ------
    ParameterError
        Unless ``k`` is even, ``2 <= k <= n - 2`` and ``0 <= bad <= n``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2 or k > n - 2:
        raise ParameterError(f"k must be even with 2 <= k <= n - 2 (n={n}, k={k})")
    if isinstance(bad, bool) or not isinstance(bad, int) or not 0 <= bad <= n:
        raise ParameterError("bad must be an int in [0, n]")
    if k > bad:
        return -math.inf
    ln = (
        math.log(n)
        + math.log(n - k - 1)
        - _LN2
        + math.lgamma(bad + 1)
        - math.lgamma(bad - k + 1)
        - math.lgamma(n + 1)
        + math.lgamma(n - k + 1)
    )
    return min(0.0, ln / _LN2)


def _log2_add(a: float, b: float) -> float:
    return float(np.logaddexp2(a, b))


# ---------------------------------------------------------------------------
# the finder


def _exact_fraction(value: float, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a real number")
    if not math.isfinite(value):
        raise ParameterError(f"{name} must be finite")
    # repr() gives the shortest decimal that round-trips, so 0.29 counts as
    # 29/100 and floor(0.29 * 100) is 29, not 28.
    return Fraction(repr(float(value)))


def _bits(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a real number")
    if not (math.isfinite(value) and 0 < value <= 256):
        raise ParameterError(f"{name} must be in (0, 256] (got {value!r})")
    return float(value)


def choose_parameters(
    *,
    n: int,
    corrupt_fraction: float = 0.05,
    dropout_fraction: float = 0.33,
    security_bits: float = 40,
    correctness_bits: float = 20,
    mode: ThreatModel = ThreatModel.SEMI_HONEST,
) -> GraphParameters:
    """Smallest even ``k`` and smallest ``t`` meeting the security/correctness targets.

    Parameters
    ----------
    n:
        Number of clients that start the round (``2 <= n <= 10^9``).
    corrupt_fraction:
        ``alpha``: at most ``floor(alpha * n)`` clients collude with the server.
    dropout_fraction:
        ``delta``: at most ``floor(delta * n)`` clients drop out before the end.
    security_bits:
        ``sigma``: the server learns more than the sum with probability
        ``<= 2^-sigma`` (over the random graph).
    correctness_bits:
        ``eta``: the round fails although at most ``delta n`` dropped with
        probability ``<= 2^-eta``.
    mode:
        :class:`ThreatModel`.

    Returns
    -------
    GraphParameters
        ``complete`` is true when no Harary graph with ``k < n - 1`` qualifies
        (small ``n``); then ``k = n - 1`` and both probabilities are 0.

    Raises
    ------
    ParameterError
        If an argument is out of range, or no ``(k, t)`` can meet the targets
        (e.g. too many corrupt or dropped clients for ``n``); the message says why.

    Security notes
    --------------
    The guarantee holds only if the graph permutation is drawn uniformly at random
    *after* the corrupt set is fixed and hidden from it, and only while at most
    ``alpha n`` clients are corrupt and ``delta n`` drop out.  The probabilities
    are union bounds, so the real failure rates are lower.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise ParameterError("n must be an int")
    if not 2 <= n <= MAX_CLIENTS:
        raise ParameterError(f"n must be in [2, {MAX_CLIENTS}] (got {n})")
    alpha = _exact_fraction(corrupt_fraction, "corrupt_fraction")
    delta = _exact_fraction(dropout_fraction, "dropout_fraction")
    if not 0 <= alpha < 1:
        raise ParameterError(f"corrupt_fraction must be in [0, 1) (got {corrupt_fraction!r})")
    if not 0 <= delta < 1:
        raise ParameterError(f"dropout_fraction must be in [0, 1) (got {dropout_fraction!r})")
    sigma = _bits(security_bits, "security_bits")
    eta = _bits(correctness_bits, "correctness_bits")
    if not isinstance(mode, ThreatModel):
        raise ParameterError("mode must be a ThreatModel")
    if mode is ThreatModel.SEMI_HONEST and alpha + delta > MAX_BAD_FRACTION:
        raise ParameterError(
            f"corrupt_fraction + dropout_fraction = {float(alpha + delta):g} > "
            f"{float(MAX_BAD_FRACTION):g}: too few honest survivors for a sparse graph "
            "(and >= 1 leaves none at all)"
        )
    if mode is ThreatModel.MALICIOUS and alpha + 2 * delta > MAX_BAD_FRACTION:
        raise ParameterError(
            f"corrupt_fraction + 2 * dropout_fraction = {float(alpha + 2 * delta):g} > "
            f"{float(MAX_BAD_FRACTION):g}: against a malicious server the threshold must "
            "exceed (k + corrupt neighbors) / 2 yet stay <= surviving neighbors"
        )
    return _choose(n, alpha, delta, sigma, eta, mode)


@lru_cache(maxsize=1024)
def _choose(
    n: int, alpha: Fraction, delta: Fraction, sigma: float, eta: float, mode: ThreatModel
) -> GraphParameters:
    corrupt = math.floor(alpha * n)
    dropouts = math.floor(delta * n)
    bad = corrupt + dropouts
    honest = n - corrupt
    sec_event = -(sigma + 1.0) - _MARGIN_BITS  # per event: half of 2^-sigma
    cor_target = -eta - _MARGIN_BITS
    log2_honest = math.log2(honest)
    log2_n = math.log2(n)

    # Disconnection is the only condition monotone in k: skip the k that fail it.
    k = 2
    while k <= n - 2 and log2_disconnection_probability(n, k, bad) > sec_event:
        k += 2
    while k <= n - 2:
        found = _check_degree(
            n, k, corrupt, dropouts, mode, sec_event, cor_target, log2_honest, log2_n
        )
        if found is not None:
            t, log2_leak, log2_fail = found
            log2_disc = log2_disconnection_probability(n, k, bad)
            return GraphParameters(
                n=n,
                k=k,
                t=t,
                mode=mode,
                log2_security_failure=_log2_add(log2_leak, log2_disc),
                log2_correctness_failure=log2_fail,
                complete=False,
                max_corrupt=corrupt,
                max_dropouts=dropouts,
            )
        k += 2
    return _complete_graph(n, corrupt, dropouts, mode)


def _check_degree(
    n: int,
    k: int,
    corrupt: int,
    dropouts: int,
    mode: ThreatModel,
    sec_event: float,
    cor_target: float,
    log2_honest: float,
    log2_n: float,
) -> tuple[int, float, float] | None:
    """Smallest admissible ``t`` for degree ``k`` and its log2 bounds, or ``None``."""
    population = n - 1
    # Corrupt neighbors X ~ Hyp(n-1, A, k): log2 of (n - A) * P[X >= lo + i].
    lo_x, lp_x = _hypergeom_log_pmf(population, corrupt, k)
    sf_x = np.logaddexp.accumulate(lp_x[::-1])[::-1] / _LN2 + log2_honest
    ok = np.flatnonzero(sf_x <= sec_event)
    # smallest x0 with (n - A) P[X >= x0] small enough (x0 past the support: P = 0)
    x0 = lo_x + int(ok[0]) if ok.size else lo_x + lp_x.size
    # semi-honest: leak iff X >= t -> t = x0; malicious: leak iff X >= 2t - k
    t = x0 if mode is ThreatModel.SEMI_HONEST else -((x0 + k) // -2)
    t = max(t, 2)  # t = 1 hands the secret to every neighbor; never use it
    if t > k:
        return None
    # Surviving neighbors S ~ Hyp(n-1, n-1-D, k): log2 of n * P[S <= t - 1].
    lo_s, lp_s = _hypergeom_log_pmf(population, population - dropouts, k)
    i = t - 1 - lo_s
    log2_fail = -math.inf if i < 0 else float(np.logaddexp.reduce(lp_s[: i + 1])) / _LN2 + log2_n
    if log2_fail > cor_target:
        return None
    x_leak = t if mode is ThreatModel.SEMI_HONEST else 2 * t - k
    j = x_leak - lo_x
    if j <= 0:
        log2_leak = log2_honest
    elif j >= lp_x.size:
        log2_leak = -math.inf
    else:
        log2_leak = float(sf_x[j])
    return t, min(0.0, log2_leak), min(0.0, log2_fail)


def _complete_graph(n: int, corrupt: int, dropouts: int, mode: ThreatModel) -> GraphParameters:
    k = n - 1
    # deterministic: corrupt neighbors <= A, surviving neighbors >= n - 1 - D
    t = corrupt + 1 if mode is ThreatModel.SEMI_HONEST else (corrupt + k) // 2 + 1
    t = max(t, min(2, k))
    survivors = n - 1 - dropouts
    if t > survivors:
        need = "t > corrupt" if mode is ThreatModel.SEMI_HONEST else "2t > n - 1 + corrupt"
        raise ParameterError(
            f"no threshold works for n={n}, {corrupt} corrupt and {dropouts} dropped "
            f"clients ({mode.value}): even the complete graph needs {need} "
            f"(t >= {t}) and t <= surviving neighbors ({survivors}); "
            "lower the fractions or add clients"
        )
    return GraphParameters(
        n=n,
        k=k,
        t=t,
        mode=mode,
        log2_security_failure=-math.inf,
        log2_correctness_failure=-math.inf,
        complete=True,
        max_corrupt=corrupt,
        max_dropouts=dropouts,
    )
