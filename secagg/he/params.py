"""Add-only CKKS/BFV parameter sets, their security and overflow checks, presets.

Pure Python (no TenSEAL): every rule of ``protocols/he_sum.md`` §2 is checked in
:meth:`HEParams.__post_init__`, so an insecure or overflowing parameter set can
never reach key generation.

Security notes
--------------
The bit limits are SEAL's 128-bit classical limits (HomomorphicEncryption.org
standard, ternary secret).  The BFV noise rule and the CKKS error bound are
calibrated measurements (see the spec), deliberately kept with a margin.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from dataclasses import dataclass
from fractions import Fraction

from secagg.encoding.codec import Writer
from secagg.errors import ParameterError

__all__ = [
    "SEAL_MAX_COEFF_BITS",
    "HEParams",
    "KeyCustody",
    "Preset",
    "Scheme",
    "coeff_modulus_primes",
    "laplace_tail",
    "resolve_params",
]

#: SEAL's 128-bit security limit: largest total coeff-modulus bits per degree N.
SEAL_MAX_COEFF_BITS: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}

_PARAM_ID_LABEL = b"secagg/he param-set v1"
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
#: BFV noise rule constant (bits): q_bits - t_bits >= 9 + log2(n)/2 + log2(N/4096)/2.
BFV_NOISE_MARGIN_BITS = 9.0
#: CKKS per-slot noise std of one fresh ciphertext, in units of N / 2^scale_bits.
CKKS_SIGMA_COEFF = 0.17
#: Per-coordinate probability that the stated CKKS error bound is exceeded.
CKKS_BOUND_FAILURE = 2.0**-40


class Scheme(enum.Enum):
    """Which homomorphic scheme: CKKS (approximate floats) or BFV (exact integers)."""

    CKKS = 1
    BFV = 2


class KeyCustody(enum.Enum):
    """Who holds the secret key (``protocols/he_sum.md`` §8)."""

    #: Every client holds the secret key and decrypts the aggregate (NVIDIA FLARE).
    SHARED_CLIENT_KEY = "shared-client-key"
    #: A separate decryptor holds it and only ever receives the aggregate.
    SEPARATE_DECRYPTOR = "separate-decryptor"


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (the 12 first prime bases)."""
    if n < 2:
        return False
    for p in _MR_BASES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def laplace_tail(eps: float) -> float:
    """``t`` with ``P(|L| > t) = eps`` for a unit-variance Laplace variable ``L``.

    ``P(|L| > t) = exp(-√2 t)``, so ``t = ln(1/eps) / √2``.
    """
    if not 0 < eps < 1:
        raise ParameterError("need 0 < eps < 1")
    return math.log(1.0 / eps) / math.sqrt(2.0)


def coeff_modulus_primes(poly_modulus_degree: int, bit_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The primes SEAL's ``CoeffModulus::Create(N, bit_sizes)`` picks.

    For each distinct size ``b`` occurring ``c`` times, the ``c`` largest primes
    ``< 2^b`` (and ``>= 2^(b-1)``) that are ``1 mod 2N``; the occurrences of ``b``
    in ``bit_sizes`` take them smallest first (SEAL pops from the back of its
    descending list).

    Raises
    ------
    ParameterError
        If there are not enough such primes of exactly ``b`` bits.
    """
    two_n = 2 * poly_modulus_degree
    found: dict[int, list[int]] = {}
    for b in sorted(set(bit_sizes)):
        want = bit_sizes.count(b)
        cand = ((1 << b) - 1) // two_n * two_n + 1
        primes: list[int] = []
        while len(primes) < want and cand > 1 << (b - 1):
            if _is_prime(cand):
                primes.append(cand)
            cand -= two_n
        if len(primes) < want:
            raise ParameterError(f"not enough {b}-bit primes = 1 mod {two_n}")
        found[b] = primes
    return tuple(found[b].pop() for b in bit_sizes)


def _check_int(name: str, v: object, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ParameterError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HEParams:
    """One add-only CKKS or BFV parameter set, validated on construction.

    Parameters
    ----------
    scheme:
        :class:`Scheme`.
    poly_modulus_degree:
        ``N``, a power of two in 1024..32768.
    coeff_mod_bit_sizes:
        Prime sizes; the last is SEAL's special prime, the others are data primes.
    scale_bits:
        CKKS only: ``log2`` of the scale ``Δ`` (0 for BFV).
    plain_modulus:
        BFV only: prime ``t = 1 mod 2N`` (0 for CKKS).
    max_clients:
        Largest number of summands the sum must hold without overflow.
    clip:
        CKKS: inputs must satisfy ``|x| <= clip``.  BFV: clipping range used when
        float inputs are quantized.
    value_bits:
        BFV: integer inputs lie in ``[0, 2^value_bits)`` (also the quantization
        width for floats).  CKKS: 0.
    name:
        A label for reports; not part of the parameter-set identity.

    Raises
    ------
    ParameterError
        If the set is above SEAL's 128-bit limit, would overflow for
        ``max_clients`` summands, or breaks the noise rule — the message says which.
    """

    scheme: Scheme
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int = 0
    plain_modulus: int = 0
    max_clients: int = 1000
    clip: float = 1.0
    value_bits: int = 0
    name: str = "custom"

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, Scheme):
            raise ParameterError("scheme must be a Scheme")
        n = self.poly_modulus_degree
        if isinstance(n, bool) or n not in SEAL_MAX_COEFF_BITS:
            raise ParameterError(
                f"poly_modulus_degree must be one of {sorted(SEAL_MAX_COEFF_BITS)}, got {n!r}"
            )
        bits = tuple(self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", bits)
        if len(bits) < 2:
            raise ParameterError("need at least 2 primes (data primes + SEAL's special prime)")
        for b in bits:
            _check_int("each coeff_mod bit size", b, 17, 60)
        total, limit = sum(bits), SEAL_MAX_COEFF_BITS[n]
        if total > limit:
            raise ParameterError(
                f"insecure: {total} coeff-modulus bits > {limit}, SEAL's 128-bit limit for N={n}"
            )
        _check_int("max_clients", self.max_clients, 1, 1 << 20)
        if (
            isinstance(self.clip, bool)
            or not isinstance(self.clip, (int, float))
            or not math.isfinite(self.clip)
            or self.clip <= 0
        ):
            raise ParameterError("clip must be a positive finite number")
        object.__setattr__(self, "clip", float(self.clip))
        if not isinstance(self.name, str):
            raise ParameterError("name must be a string")
        primes = coeff_modulus_primes(n, bits)
        q = math.prod(primes[:-1])
        if self.scheme is Scheme.CKKS:
            self._check_ckks(q)
        else:
            self._check_bfv(q)

    def _check_ckks(self, q: int) -> None:
        _check_int("scale_bits", self.scale_bits, 20, 60)
        if self.plain_modulus != 0 or self.value_bits != 0:
            raise ParameterError("CKKS takes no plain_modulus or value_bits (leave them 0)")
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])
        if self.scale_bits >= data_bits:
            raise ParameterError(
                f"scale 2^{self.scale_bits} does not fit the {data_bits} data-prime bits"
            )
        # exact (a float product overflows to inf for a huge clip: OverflowError, not a
        # ParameterError)
        top = math.ceil(Fraction(self.clip) * self.max_clients * (1 << self.scale_bits))
        if top + (1 << 20) >= q // 2:
            raise ParameterError(
                f"overflow: the sum of {self.max_clients} values of magnitude <= {self.clip} at "
                f"scale 2^{self.scale_bits} reaches ~2^{math.log2(top):.2f}, but the "
                f"coefficient modulus holds only < q/2 ~ 2^{math.log2(q / 2):.2f}; lower "
                "scale_bits, clip or max_clients, or use a larger data prime"
            )

    def _check_bfv(self, q: int) -> None:
        n = self.poly_modulus_degree
        if self.scale_bits != 0:
            raise ParameterError("BFV takes no scale_bits (leave it 0)")
        _check_int("value_bits", self.value_bits, 1, 58)
        t = self.plain_modulus
        _check_int("plain_modulus", t, 3, (1 << 60) - 1)
        if t % (2 * n) != 1 or not _is_prime(t):
            raise ParameterError(f"plain_modulus must be a prime = 1 mod 2N = {2 * n} (batching)")
        top = self.max_clients * ((1 << self.value_bits) - 1)
        if top >= t // 2:
            raise ParameterError(
                f"overflow: the sum of {self.max_clients} values of {self.value_bits} bits can "
                f"reach {top} (needs {top.bit_length()} bits), not below plain_modulus/2 = "
                f"{t // 2}; use a larger plain modulus or fewer value bits/clients"
            )
        data_bits = sum(self.coeff_mod_bit_sizes[:-1])
        need = (
            BFV_NOISE_MARGIN_BITS
            + 0.5 * math.log2(self.max_clients)
            + 0.5 * math.log2(n / 4096)
        )
        have = data_bits - t.bit_length()
        if have < need:
            raise ParameterError(
                f"noise: {data_bits} data-prime bits leave {have} bits above the "
                f"{t.bit_length()}-bit plain modulus; summing {self.max_clients} ciphertexts "
                f"needs >= {need:.2f} (protocols/he_sum.md §2 rule 5)"
            )

    # ------------------------------------------------------------------ derived
    @property
    def slots(self) -> int:
        """Values per ciphertext: N/2 (CKKS) or N (BFV)."""
        return self.poly_modulus_degree // 2 if self.scheme is Scheme.CKKS else (
            self.poly_modulus_degree
        )

    @property
    def primes(self) -> tuple[int, ...]:
        """The coefficient-modulus primes SEAL will use."""
        return coeff_modulus_primes(self.poly_modulus_degree, self.coeff_mod_bit_sizes)

    def ckks_error_bound(self, n: int) -> float:
        """Stated per-coordinate bound on ``|decrypted sum - true sum|`` for ``n`` summands.

        ``B(n) = (ln(2^40) / √2) · √n · 0.17 · N / 2^scale_bits``: the slot noise
        is dominated by ``Re(r(ζ)·s(ζ))`` (fresh rounding noise times the *fixed*
        secret key at the slot's root of unity), Laplace-distributed across slots
        with a standard deviation that grows like ``√n``; ``B`` is its
        ``2^-40`` tail point (``protocols/he_sum.md`` §3).

        Raises
        ------
        ParameterError
            For BFV (exact) or ``n`` outside ``[1, max_clients]``.
        """
        if self.scheme is not Scheme.CKKS:
            raise ParameterError("BFV sums are exact; the error bound is a CKKS notion")
        _check_int("n", n, 1, self.max_clients)
        sigma1 = CKKS_SIGMA_COEFF * self.poly_modulus_degree / 2.0**self.scale_bits
        return laplace_tail(CKKS_BOUND_FAILURE) * math.sqrt(n) * sigma1

    def canonical_bytes(self) -> bytes:
        """The canonical encoding (``protocols/wire/he_envelope.md`` §3)."""
        w = Writer().u8(self.scheme.value).u32(self.poly_modulus_degree)
        w.u8(len(self.coeff_mod_bit_sizes))
        for b in self.coeff_mod_bit_sizes:
            w.u8(b)
        t = self.plain_modulus
        w.u8(self.scale_bits).blob(t.to_bytes((t.bit_length() + 7) // 8, "big"))
        w.u32(self.max_clients).raw(struct.pack(">d", self.clip)).u8(self.value_bits)
        return w.getvalue()

    @property
    def param_set_id(self) -> bytes:
        """16-byte identifier of the parameter set (name excluded)."""
        return hashlib.sha256(_PARAM_ID_LABEL + self.canonical_bytes()).digest()[:16]


class Preset(enum.Enum):
    """Parameter presets for addition only (``protocols/he_sum.md`` §2)."""

    #: CKKS N=4096 [42, 20] Δ=2^31: ~25.6 B/param; 1000 sums in [-1, 1]: typically
    #: within 1e-4 over 2048 slots, stated bound 2.0e-4 per coordinate (2^-40).
    CKKS_4096 = "ckks-4096"
    #: BFV N=4096 [48, 20] t=33-bit prime: ~13.7 B/param; exact 1000 × 22-bit sums.
    BFV_4096 = "bfv-4096"
    #: NVIDIA FLARE's CKKS set N=8192 [60, 40, 40] Δ=2^40 (~57 B/param), for comparison.
    CKKS_8192_FLARE = "ckks-8192-flare"

    @property
    def params(self) -> HEParams:
        """The validated :class:`HEParams` of this preset."""
        return _PRESETS[self]


_PRESETS: dict[Preset, HEParams] = {
    Preset.CKKS_4096: HEParams(
        scheme=Scheme.CKKS,
        poly_modulus_degree=4096,
        coeff_mod_bit_sizes=(42, 20),
        scale_bits=31,
        max_clients=1000,
        clip=1.0,
        name=Preset.CKKS_4096.value,
    ),
    Preset.BFV_4096: HEParams(
        scheme=Scheme.BFV,
        poly_modulus_degree=4096,
        coeff_mod_bit_sizes=(48, 20),
        plain_modulus=8589852673,
        max_clients=1000,
        clip=1.0,
        value_bits=22,
        name=Preset.BFV_4096.value,
    ),
    Preset.CKKS_8192_FLARE: HEParams(
        scheme=Scheme.CKKS,
        poly_modulus_degree=8192,
        coeff_mod_bit_sizes=(60, 40, 40),
        scale_bits=40,
        max_clients=1000,
        clip=1.0,
        name=Preset.CKKS_8192_FLARE.value,
    ),
}


def resolve_params(scheme: Scheme, preset: Preset | HEParams | None) -> HEParams:
    """The parameter set for ``scheme``: a preset, a custom set, or the default preset.

    Raises
    ------
    ParameterError
        If the preset or parameter set is of another scheme.
    """
    if not isinstance(scheme, Scheme):
        raise ParameterError("scheme must be a Scheme")
    if preset is None:
        params = (Preset.CKKS_4096 if scheme is Scheme.CKKS else Preset.BFV_4096).params
    elif isinstance(preset, Preset):
        params = preset.params
    elif isinstance(preset, HEParams):
        params = preset
    else:
        raise ParameterError("preset must be a Preset or HEParams")
    if params.scheme is not scheme:
        raise ParameterError(
            f"parameter set {params.name!r} is {params.scheme.name}, not {scheme.name}"
        )
    return params
