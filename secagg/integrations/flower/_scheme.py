"""Client half and server half of the update encoding (the one adapter to swap).

``encode_update`` turns a Flower client's float parameters and ``num_examples`` into
the vector it feeds the masking client; ``decode_aggregate`` turns the server's
exact modular sum over the survivors into the FedAvg mean.  Both go through the
SecAgg+ client and server halves of :mod:`secagg.runtime.schemes` (one for the
weighted parameters, one for the weight coordinate); the DP pair uses
:class:`secagg.dp.DDPRound` directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt

from secagg.dp import DDPRound
from secagg.encoding.modular import UIntArray, dtype_for_bits
from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, ParameterError
from secagg.integrations.flower._wire import UpdateEncoding
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.runtime.schemes import MaskedClientHalf, MaskedServerHalf, SchemeKind, SumOutcome

__all__ = ["decode_aggregate", "decode_dp_mean_delta", "encode_dp_delta", "encode_update"]


def _specs(enc: UpdateEncoding) -> tuple[QuantizationSpec, QuantizationSpec]:
    values = QuantizationSpec(
        clip=float(enc.clip), value_bits=enc.value_bits, max_clients=enc.max_clients,
        bits=enc.bits,
    )
    weight = QuantizationSpec(
        clip=1.0, value_bits=enc.value_bits, max_clients=enc.max_clients, bits=enc.bits
    )
    return values, weight


def _halves(enc: UpdateEncoding) -> tuple[MaskedClientHalf, MaskedClientHalf]:
    values, weight = _specs(enc)
    kind = SchemeKind.SECAGG_PLUS
    return (
        MaskedClientHalf(kind=kind, spec=values, length=enc.length - 1),
        MaskedClientHalf(kind=kind, spec=weight, length=1),
    )


def encode_update(
    enc: UpdateEncoding,
    arrays: Sequence[npt.ArrayLike],
    num_examples: int,
    rng: RandomSource,
) -> UIntArray:
    """``quantize(w * params) || quantize(w)`` with ``w = num_examples / max_weight``,
    each part by the SecAgg+ client half of :mod:`secagg.runtime.schemes`.

    Raises
    ------
    ParameterError
        Shapes that differ from the round's, NaN/inf values, a negative
        ``num_examples`` or one above ``max_weight`` (it would not fit the range the
        server sized the modulus for; Flower only warns and risks a wrong sum).
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, int | np.integer):
        raise ParameterError("num_examples must be an integer")
    if not 0 <= num_examples <= enc.max_weight:
        raise ParameterError(
            f"num_examples={num_examples} is outside [0, max_weight={enc.max_weight:g}]; "
            "raise max_weight on the server"
        )
    w = float(num_examples) / float(enc.max_weight)
    flat = _flat(arrays, enc.shapes)
    flat *= w
    values, weight = _halves(enc)
    out = np.empty(enc.length, dtype=dtype_for_bits(enc.bits))
    out[:-1] = values.encode(flat, rng.child("quantize/values"))
    out[-1:] = weight.encode(np.array([w]), rng.child("quantize/weight"))
    return cast("UIntArray", out)


def decode_aggregate(
    enc: UpdateEncoding,
    total: UIntArray,
    survivors: Sequence[int],
    dtypes: Sequence[npt.DTypeLike],
) -> list[npt.NDArray[np.generic]]:
    """The weighted mean ``Σ w_u x_u / Σ w_u`` from the exact sum over ``survivors``
    (client ids), each part by the SecAgg+ server half of :mod:`secagg.runtime.schemes`.

    Raises
    ------
    AbortedError
        The sum is not a sum of valid encodings (a client added values outside the
        quantization range), or the survivors' total weight is zero: nothing is
        released.
    ParameterError
        ``total`` has the wrong length or ``dtypes`` the wrong count.
    """
    if len(total) != enc.length:
        raise ParameterError("aggregate length differs from the round's")
    if len(dtypes) != len(enc.shapes):
        raise ParameterError("one dtype per array")
    values, weight = _specs(enc)
    ids = tuple(sorted(survivors))
    kind = SchemeKind.SECAGG_PLUS
    s = MaskedServerHalf(kind=kind, spec=values, length=enc.length - 1).decode(
        SumOutcome(total=np.ascontiguousarray(total[:-1]), survivors=ids)
    ).sum
    sw = float(
        MaskedServerHalf(kind=kind, spec=weight, length=1)
        .decode(SumOutcome(total=np.ascontiguousarray(total[-1:]), survivors=ids))
        .sum[0]
    )
    if not sw > len(ids) * weight.step:  # within the rounding error of zero
        raise AbortedError("the survivors' total weight is zero; no mean to release")
    return split(enc, s / sw, dtypes)


def _flat(
    arrays: Sequence[npt.ArrayLike], shapes: tuple[tuple[int, ...], ...]
) -> npt.NDArray[np.float64]:
    """The arrays as one new float64 vector (one copy), after a shape check."""
    arrs = [np.asarray(a) for a in arrays]
    got = tuple(tuple(a.shape) for a in arrs)
    if got != shapes:
        raise ParameterError(f"update shapes {got} differ from the round's {shapes}")
    return np.concatenate([a.ravel() for a in arrs], dtype=np.float64)


def encode_dp_delta(
    enc: UpdateEncoding,
    dp: DDPRound,
    new: Sequence[npt.ArrayLike],
    old: Sequence[npt.ArrayLike],
) -> UIntArray:
    """Distributed DP: the client's noisy, clipped, rotated model delta ``new - old``.

    Rounding and noise come from the OS CSPRNG (never from the seed kept in the
    Context: the guarantee needs noise nobody else can re-derive).

    Raises
    ------
    ParameterError
        Shapes that differ from the round's, or NaN/inf values.
    """
    delta = _flat(new, enc.shapes) - _flat(old, enc.shapes)
    if not np.all(np.isfinite(delta)):
        raise ParameterError("update holds NaN or infinity")
    return dp.encode(delta, SystemRandom())


def decode_dp_mean_delta(
    enc: UpdateEncoding, dp: DDPRound, total: UIntArray, count: int
) -> npt.NDArray[np.float64]:
    """The noisy mean delta over ``count`` survivors (flat, model units).

    Raises
    ------
    AbortedError
        Fewer survivors than the noise was calibrated for.
    """
    out = dp.decode_mean(total, count)
    if out.shape != (enc.length - 1,):
        raise ParameterError("decoded delta has the wrong length")
    return out


def split(enc: UpdateEncoding, flat: npt.NDArray[np.float64], dtypes: Sequence[npt.DTypeLike]
          ) -> list[npt.NDArray[np.generic]]:
    """A flat vector back into the round's arrays."""
    out: list[npt.NDArray[np.generic]] = []
    pos = 0
    for shape, dt in zip(enc.shapes, dtypes, strict=True):
        size = int(np.prod(shape, dtype=np.int64))
        out.append(flat[pos : pos + size].reshape(shape).astype(dt))
        pos += size
    return out
