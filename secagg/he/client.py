"""HE client: pack, encrypt and sign an update (``protocols/he_sum.md`` §4, §5.3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import ParameterError
from secagg.he.envelope import Envelope, EnvelopeKind, sign_envelope
from secagg.he.keys import HEContext
from secagg.he.params import HEParams, Scheme
from secagg.he.session import HESession
from secagg.primitives.rand import RandomSource, SystemRandom
from secagg.primitives.sign import SigningKey

__all__ = ["HEClient", "quantization_spec"]


def quantization_spec(params: HEParams) -> QuantizationSpec:
    """The quantizer BFV clients use for float updates (clip, value_bits, max_clients).

    Raises
    ------
    ParameterError
        For CKKS, or when ``value_bits`` is too wide for float quantization.
    """
    if params.scheme is not Scheme.BFV:
        raise ParameterError("quantization applies to BFV only")
    return QuantizationSpec(
        clip=params.clip, value_bits=params.value_bits, max_clients=params.max_clients
    )


class HEClient:
    """One client of a round.

    Parameters
    ----------
    client_id:
        Its id (registered in ``session.client_keys``).
    session:
        The round configuration.
    context:
        A loaded context (public, or secret in SHARED_CLIENT_KEY custody) for the
        session's key.
    signing_key:
        The client's Ed25519 identity key (its public half is in the session).
    rng:
        Randomness for stochastic rounding of BFV float updates.

    Raises
    ------
    ParameterError
        If the context or key does not match the session.
    """

    __slots__ = ("_ctx", "_key", "_rng", "_session", "client_id")

    def __init__(
        self,
        *,
        client_id: int,
        session: HESession,
        context: HEContext,
        signing_key: SigningKey,
        rng: RandomSource | None = None,
    ) -> None:
        if not isinstance(session, HESession) or not isinstance(context, HEContext):
            raise ParameterError("session must be HESession and context HEContext")
        if client_id not in session.client_keys:
            raise ParameterError(f"client {client_id!r} is not registered in the session")
        if not isinstance(signing_key, SigningKey) or (
            signing_key.public != session.client_keys[client_id]
        ):
            raise ParameterError("signing_key does not match the registered public key")
        session.check_context(context, role="context")
        self.client_id = client_id
        self._session = session
        self._ctx = context
        self._key = signing_key
        self._rng = rng if rng is not None else SystemRandom()

    # ------------------------------------------------------------------ checks
    def _check_ckks(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        arr = np.asarray(x)
        if arr.ndim != 1 or arr.shape[0] != self._session.vector_length:
            raise ParameterError(f"update must be 1-D of length {self._session.vector_length}")
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise ParameterError("CKKS updates are real numbers")
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ParameterError("update holds NaN or infinity")
        clip = self._session.params.clip
        if arr.size and float(np.max(np.abs(arr))) > clip:
            raise ParameterError(f"update values must satisfy |x| <= clip = {clip}")
        return arr

    def _check_ints(self, x: npt.ArrayLike) -> npt.NDArray[np.int64]:
        arr = np.asarray(x)
        if arr.ndim != 1 or arr.shape[0] != self._session.vector_length:
            raise ParameterError(f"update must be 1-D of length {self._session.vector_length}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ParameterError(
                "BFV updates are integer arrays (use encrypt_quantized for floats)"
            )
        vb = self._session.params.value_bits
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 1 << vb):
            raise ParameterError(f"BFV values must lie in [0, 2^{vb})")
        return arr.astype(np.int64)

    # ------------------------------------------------------------------ encrypt
    def encrypt(self, x: npt.ArrayLike) -> list[Envelope]:
        """Encrypt a whole update: CKKS floats with ``|x| <= clip``, BFV integers in
        ``[0, 2^value_bits)``.  Returns one signed envelope per chunk, addressed to
        the server (send ``envelope.to_bytes()``).

        Raises
        ------
        ParameterError
            Wrong length, dtype or range (nothing is encrypted).
        """
        return list(self.iter_envelopes(x))

    def encrypt_quantized(self, x: npt.ArrayLike) -> list[Envelope]:
        """BFV only: quantize a float update (stochastic rounding) and encrypt it.

        Raises
        ------
        ParameterError
            For CKKS sessions or malformed input.
        """
        spec = quantization_spec(self._session.params)
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 1 or arr.shape[0] != self._session.vector_length:
            raise ParameterError(f"update must be 1-D of length {self._session.vector_length}")
        # fork, not child: every encryption gets fresh rounding randomness
        q = spec.quantize(arr, self._rng.fork(f"quantize/{self.client_id}"))
        return self.encrypt(q.astype(np.int64))

    def iter_envelopes(self, x: npt.ArrayLike) -> Iterator[Envelope]:
        """Like :meth:`encrypt` but yields chunk by chunk (the input is checked first)."""
        s = self._session
        arr: npt.NDArray[Any]
        arr = self._check_ckks(x) if s.params.scheme is Scheme.CKKS else self._check_ints(x)
        return self._chunks(arr)

    def _chunks(self, arr: npt.NDArray[Any]) -> Iterator[Envelope]:
        s = self._session
        slots, k = s.params.slots, s.max_ciphertexts_per_chunk
        for j in range(s.chunk_count):
            n_ct = s.chunk_ciphertexts(j)
            start = j * k * slots
            piece = arr[start : start + n_ct * slots]
            block = np.zeros(n_ct * slots, dtype=arr.dtype)
            block[: piece.shape[0]] = piece
            # column c of the (slots, n_ct) block is ciphertext c of the chunk
            tensor = self._ctx.encrypt_columns(block.reshape(n_ct, slots).T)
            env = s.envelope(
                kind=EnvelopeKind.CLIENT_CHUNK,
                sender=self.client_id,
                chunk_index=j,
                contributors=(self.client_id,),
                payload=HEContext.serialize(tensor),
            )
            yield sign_envelope(env, self._key)
