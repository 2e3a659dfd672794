"""The public parameters of one LightSecAgg round (``protocols/lightsecagg.md`` §1-§2).

``N`` registered clients, privacy threshold ``T`` (colluding clients that learn
nothing, together with the server, beyond the aggregate), dropout tolerance ``D``
and target ``U`` (responses the server decodes from) with ``T < U <= N - D``.
Inputs are integers in ``[0, 2^bits)``; ``N * (2^bits - 1) < p`` makes their sum
exact in GF(p) (the overflow rule), and the round's result is that sum reduced
mod ``2^bits`` (the masking family's ``Z_{2^b}`` contract).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from secagg.errors import ParameterError
from secagg.lightsecagg.field import P

__all__ = [
    "MAX_CLIENT_ID",
    "SESSION_ID_BYTES",
    "LightSecAggConfig",
    "default_lightsecagg_parameters",
    "max_bits",
]

SESSION_ID_BYTES = 32
MAX_CLIENT_ID = 2**32 - 1
#: Elements per vector the wire format allows (u32 count).
MAX_LENGTH = 2**32 - 1


def max_bits(n: int) -> int:
    """The largest ``b`` with ``n * (2^b - 1) < p`` (the overflow rule)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParameterError("n must be a positive integer")
    b = 0
    while n * ((1 << (b + 1)) - 1) < P:
        b += 1
    return b


def default_lightsecagg_parameters(n: int) -> tuple[int, int, int]:
    """``(T, U, D)`` for ``n`` clients: ``T = max(1, n // 4)``,
    ``U = max(T + 1, ceil(n / 2))``, ``D = n - U`` (tolerates about half dropping).

    Raises
    ------
    ParameterError
        If ``n < 2``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ParameterError("LightSecAgg needs at least 2 clients")
    t = max(1, n // 4)
    u = max(t + 1, math.ceil(n / 2))
    return t, u, n - u


@dataclass(frozen=True, slots=True, kw_only=True)
class LightSecAggConfig:
    """One round's public configuration (every party holds the same one).

    Attributes
    ----------
    session_id:
        32 fresh random bytes; bound into every derivation, box and message.
    clients:
        ``U0``: registered client ids, ascending, unique, in ``[1, 2^32)``.
    bits:
        Input width: inputs are in ``[0, 2^bits)``; ``N (2^bits - 1) < p``.
    length:
        ``m``: elements per input vector.
    privacy:
        ``T >= 1``: colluding clients (plus the server) that learn nothing more.
    target:
        ``U``: the server decodes the aggregate mask from any ``U`` responses;
        every phase aborts with fewer than ``U`` survivors.
    dropout:
        ``D``: dropouts the round is guaranteed to tolerate (``U <= N - D``).

    Raises
    ------
    ParameterError
        On any violated bound.
    """

    session_id: bytes
    clients: tuple[int, ...]
    bits: int
    length: int
    privacy: int
    target: int
    dropout: int

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise ParameterError("session_id must be 32 bytes")
        ids = self.clients
        if not isinstance(ids, tuple) or any(
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CLIENT_ID
            for c in ids
        ):
            raise ParameterError("clients must be a tuple of ids in [1, 2^32)")
        if list(ids) != sorted(set(ids)):
            raise ParameterError("clients must be ascending and unique")
        n = len(ids)
        if n < 2:
            raise ParameterError("LightSecAgg needs at least 2 clients")
        for name in ("bits", "length", "privacy", "target", "dropout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParameterError(f"{name} must be an integer")
        if not 1 <= self.length <= MAX_LENGTH:
            raise ParameterError("length must be in [1, 2^32)")
        if self.privacy < 1:
            raise ParameterError("privacy threshold T must be >= 1 (the padding needs T > 0)")
        if self.dropout < 0:
            raise ParameterError("dropout tolerance D must be >= 0")
        if not self.privacy < self.target <= n - self.dropout:
            raise ParameterError(
                f"need T < U <= N - D; got T={self.privacy}, U={self.target}, "
                f"N={n}, D={self.dropout}")
        if not 1 <= self.bits <= 30 or n * ((1 << self.bits) - 1) >= P:
            raise ParameterError(
                f"overflow rule: N * (2^bits - 1) < p = 2^31 - 1 (bits <= {max_bits(n)} "
                f"for N = {n})")

    @classmethod
    def create(cls, *, session_id: bytes, clients: list[int] | tuple[int, ...], bits: int,
               length: int, privacy: int | None = None, target: int | None = None,
               dropout: int | None = None) -> LightSecAggConfig:
        """A config with :func:`default_lightsecagg_parameters` for what is not given
        (``D`` defaults to ``N - U``)."""
        ids = tuple(sorted(clients))
        t0, u0, _ = default_lightsecagg_parameters(len(ids))
        t = t0 if privacy is None else privacy
        u = (max(t + 1, u0) if target is None else target)
        d = len(ids) - u if dropout is None else dropout
        return cls(session_id=session_id, clients=ids, bits=bits, length=length,
                   privacy=t, target=u, dropout=d)

    @property
    def n(self) -> int:
        return len(self.clients)

    @property
    def pieces(self) -> int:
        """``U - T``: the mask is split into this many pieces."""
        return self.target - self.privacy

    @property
    def piece_length(self) -> int:
        """``L = ceil(m / (U - T))``: elements per piece and per coded share."""
        return -(-self.length // self.pieces)

    def alpha(self, client: int) -> int:
        """Client ``client``'s evaluation point ``alpha = U + position`` (1-based
        position in ``U0``).

        Raises
        ------
        ParameterError
            If ``client`` is not registered.
        """
        pos = _position(self.clients, client)
        return self.target + pos + 1

    @property
    def betas(self) -> tuple[int, ...]:
        """``beta_k = k`` for ``k = 1..U``: pieces at ``1..U-T``, padding after."""
        return tuple(range(1, self.target + 1))


def _position(ids: tuple[int, ...], client: int) -> int:
    import bisect

    i = bisect.bisect_left(ids, client)
    if i == len(ids) or ids[i] != client:
        raise ParameterError(f"client {client} is not registered")
    return i
