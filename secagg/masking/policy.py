"""What a client accepts: :class:`ClientPolicy`, checked before it sends anything.

The server chooses the round configuration; a client that joins must not trust it
to be secure.  ``protocols/secagg.md`` §1 says clients check the configuration
"against their policy": this module is that check.  A :class:`~secagg.masking.Client`
built with ``policy=`` refuses a configuration below the policy with
:class:`~secagg.errors.PolicyError` before it produces its first message, so the
server only sees a dropout.

The threshold rule is the parameter finder's (:mod:`secagg.masking.params`, Bell
et al. 2020), evaluated for the configuration's own ``(n, k, t)`` instead of
choosing them: with ``A = floor(alpha n)`` corrupt clients and
``D = floor(delta n)`` dropouts,

* complete graph (``k = n - 1``): ``t > A`` (semi-honest), ``2t > k + A``
  (malicious) — deterministic;
* Harary graph (``k < n - 1``): the graph survives the loss of ``A + D`` random
  nodes except with probability ``<= 2^-(sigma+1)``
  (:func:`~secagg.masking.params.log2_disconnection_probability`, for the even
  part of ``k``), and ``(n - A) * P[X >= x] <= 2^-(sigma+1)`` for
  ``X ~ Hyp(n-1, A, k)`` corrupt neighbors, ``x = t`` (semi-honest) or
  ``x = 2t - k`` (malicious).

So every ``(k, t)`` the finder chooses passes, and so does any other pair that is
at least as secure; correctness under dropouts is the server's concern and is not
checked here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from secagg.errors import ParameterError, PolicyError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.params import (
    MAX_CLIENTS,
    choose_parameters,
    log2_disconnection_probability,
    log2_hypergeom_sf,
)

__all__ = ["ClientPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientPolicy:
    """The round configurations one client accepts.

    Parameters
    ----------
    protocols:
        Neighbor graphs accepted (default: both).
    security_modes:
        Threat models accepted (default: both; a client that needs protection
        against a lying server accepts ``{SecurityMode.MALICIOUS}`` only).
    min_bits, max_bits:
        Accepted modulus exponents ``b`` (inclusive, within 1..64).
    min_length, max_length:
        Accepted input vector lengths ``m`` (inclusive): ``max_length`` bounds
        what the device must hold and upload.
    min_clients, max_clients:
        Accepted numbers of registered clients ``n`` (inclusive, ``>= 2``).
    corrupt_fraction, dropout_fraction, security_bits:
        The finder's ``alpha``, ``delta`` and ``sigma``: the threshold rule above
        must hold for ``floor(alpha n)`` corrupt clients colluding with the server
        and ``floor(delta n)`` dropouts, up to probability ``2^-sigma``.

    Raises
    ------
    ParameterError
        On an empty set, a range outside its limits or with ``min > max``, or
        fractions/bits out of range.
    """

    protocols: frozenset[ProtocolKind] = frozenset(ProtocolKind)
    security_modes: frozenset[SecurityMode] = frozenset(SecurityMode)
    min_bits: int = 1
    max_bits: int = 64
    min_length: int = 1
    max_length: int = 2**40
    min_clients: int = 2
    max_clients: int = MAX_CLIENTS
    corrupt_fraction: float = 0.05
    dropout_fraction: float = 0.33
    security_bits: float = 40.0

    def __post_init__(self) -> None:
        for name, enum_type in (("protocols", ProtocolKind), ("security_modes", SecurityMode)):
            values = frozenset(getattr(self, name))
            if not values or not all(isinstance(v, enum_type) for v in values):
                raise ParameterError(f"{name} must be a non-empty set of {enum_type.__name__}")
            object.__setattr__(self, name, values)
        for lo_name, hi_name, lo, hi in (
            ("min_bits", "max_bits", 1, 64),
            ("min_length", "max_length", 1, 2**64 - 1),
            ("min_clients", "max_clients", 2, MAX_CLIENTS),
        ):
            a, b = getattr(self, lo_name), getattr(self, hi_name)
            for v in (a, b):
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ParameterError(f"{lo_name}/{hi_name} must be integers in [{lo}, {hi}]")
            if a > b:
                raise ParameterError(f"{lo_name} > {hi_name}")
        for name, flo, fhi in (
            ("corrupt_fraction", 0.0, 1.0),
            ("dropout_fraction", 0.0, 1.0),
            ("security_bits", 1.0, 256.0),
        ):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, int | float) or not flo <= x < fhi:
                raise ParameterError(f"{name} must be a number in [{flo}, {fhi})")
        if self.corrupt_fraction + self.dropout_fraction >= 1.0:
            raise ParameterError("corrupt_fraction + dropout_fraction must be < 1")

    def minimum_parameters(self, n: int, security: SecurityMode) -> tuple[int, int]:
        """The finder's ``(k, t)`` for ``n`` clients under this policy's
        ``alpha``/``delta``/``sigma`` (the smallest SecAgg+ graph it would accept).

        Raises
        ------
        ParameterError
            If no ``(k, t)`` exists for ``n`` under these fractions.
        """
        g = choose_parameters(
            n=n,
            corrupt_fraction=self.corrupt_fraction,
            dropout_fraction=self.dropout_fraction,
            security_bits=self.security_bits,
            mode=security,
        )
        return g.k, g.t

    def check(self, config: RoundConfig) -> None:
        """Accept ``config`` or raise; changes nothing.

        Raises
        ------
        PolicyError
            Naming the first rule ``config`` breaks: protocol, security mode,
            bits, length, number of clients, or ``k``/``t`` too small for ``n``.
        ParameterError
            If ``config`` is not a :class:`RoundConfig`.
        """
        if not isinstance(config, RoundConfig):
            raise ParameterError("config must be a RoundConfig")
        if config.protocol not in self.protocols:
            raise PolicyError(f"protocol {config.protocol.value} is not accepted")
        if config.security not in self.security_modes:
            raise PolicyError(f"security mode {config.security.value} is not accepted")
        if not self.min_bits <= config.bits <= self.max_bits:
            raise PolicyError(
                f"bits={config.bits} outside the accepted [{self.min_bits}, {self.max_bits}]"
            )
        if not self.min_length <= config.length <= self.max_length:
            raise PolicyError(
                f"length={config.length} outside the accepted "
                f"[{self.min_length}, {self.max_length}]"
            )
        if not self.min_clients <= config.n <= self.max_clients:
            raise PolicyError(
                f"n={config.n} clients outside the accepted "
                f"[{self.min_clients}, {self.max_clients}]"
            )
        problem = _threshold_problem(
            config.n,
            config.degree,
            config.threshold,
            config.security,
            float(self.corrupt_fraction),
            float(self.dropout_fraction),
            float(self.security_bits),
        )
        if problem is not None:
            raise PolicyError(
                f"{problem} (n={config.n}, k={config.degree}, t={config.threshold}, "
                f"{config.security.value}; alpha={self.corrupt_fraction:g}, "
                f"delta={self.dropout_fraction:g}, sigma={self.security_bits:g})"
            )


@lru_cache(maxsize=256)
def _threshold_problem(
    n: int,
    k: int,
    t: int,
    security: SecurityMode,
    alpha: float,
    delta: float,
    sigma: float,
) -> str | None:
    """Why ``(n, k, t)`` is below the finder's rule, or ``None`` (cached: every
    client of a simulated round checks the same configuration)."""
    corrupt = math.floor(alpha * n)
    dropouts = math.floor(delta * n)
    malicious = security is SecurityMode.MALICIOUS
    if n > 2 and t < 2:
        return "threshold t < 2 hands a client's secrets to any single neighbor"
    if k >= n - 1:
        if malicious and 2 * t <= k + corrupt:
            return f"complete graph, malicious server: needs 2t > k + {corrupt} corrupt"
        if not malicious and t <= corrupt:
            return f"complete graph: needs t > {corrupt} corrupt clients"
        return None
    target = -(sigma + 1.0)
    even_k = k - k % 2  # H(k-1, n) is a subgraph of H(k, n): its bound holds for both
    if even_k < 2 or (
        even_k <= n - 2
        and log2_disconnection_probability(n, even_k, min(n, corrupt + dropouts)) > target
    ):
        return "neighbors k too small: the graph may disconnect"
    x = 2 * t - k if malicious else t
    leak = math.log2(n - corrupt) + log2_hypergeom_sf(n - 1, corrupt, k, x)
    if leak > target:
        return "threshold t too small: corrupt neighbors may reach it"
    return None
