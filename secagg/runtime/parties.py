"""What a pool's workers need to create client parties: picklable recipes.

``cryptography`` key objects do not pickle, and a client's ephemeral keys must be
generated where the client lives anyway.  So a pool receives a
:class:`ClientFactory` — a small picklable object holding the round's public
configuration, a recipe for each client's input and randomness, and (malicious
mode / HE) the raw 32-byte identity seeds the simulation's PKI issued — and calls
:meth:`ClientFactory.make` inside the worker.  Every key a client generates during
the round (X25519 pairs, mask seeds, HE encryption randomness) is generated there.

Configs travel as a recipe made by :func:`ship_config` / read by
:func:`load_config` (one helper, until ``RoundConfig`` has a canonical wire form).
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError
from secagg.lightsecagg import messages as lm
from secagg.lightsecagg.client import Client as LightClient
from secagg.lightsecagg.config import LightSecAggConfig
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.primitives.prg import dtype_for_bits
from secagg.primitives.rand import (
    AesCtrRandom,
    InsecureDeterministicRandom,
    RandomSource,
    SystemRandom,
)
from secagg.primitives.sign import SigningKey

__all__ = [
    "ArrayInputs",
    "ClientFactory",
    "ClientParty",
    "GeneratedInputs",
    "HEClientFactory",
    "InputSource",
    "LightSecAggClientFactory",
    "MaskingClientFactory",
    "RngRecipe",
    "ShiftedInputs",
    "load_config",
    "ship_config",
]


@runtime_checkable
class ClientParty(Protocol):
    """A sans-IO client as a pool sees it: bytes in, bytes out."""

    def start(self) -> list[bytes]:
        """The client's first wire messages."""
        ...

    def receive(self, data: bytes) -> list[bytes]:
        """Handle one server message; return the encoded replies.  Raises a
        :class:`~secagg.errors.SecAggError` when the client refuses or aborts."""
        ...

    @property
    def state(self) -> str:
        """The client's phase, for reports."""
        ...


@runtime_checkable
class ClientFactory(Protocol):
    """Picklable: creates client ``u``'s party inside a worker."""

    kind: str  #: "masking" | "he"

    def make(self, client: int) -> ClientParty: ...


# -- randomness ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RngRecipe:
    """A picklable stand-in for a :class:`RandomSource` whose children a worker can
    derive: ``os.urandom`` (``seed is None``) or a seeded source's (seed, label path).

    A seeded source's child depends only on the seed and the label path, so a
    worker derives exactly the stream the in-process path would.
    """

    seed: bytes | None
    label: str = "root"
    #: fresh-entropy recipe only: build an :class:`AesCtrRandom` (keyed from
    #: ``os.urandom`` inside the worker) instead of a :class:`SystemRandom`
    fast: bool = False

    @classmethod
    def of(cls, src: RandomSource) -> RngRecipe:
        """The recipe of ``src`` (a SystemRandom or an InsecureDeterministicRandom)."""
        if isinstance(src, SystemRandom):
            return cls(None, "")
        if isinstance(src, AesCtrRandom):
            # its children are keyed with fresh OS entropy: nothing secret is shipped,
            # the worker keys its own generator from os.urandom
            return cls(None, "", fast=True)
        if isinstance(src, InsecureDeterministicRandom):
            # the seeded source's child() is a function of (seed, label) only
            return cls(src._seed, src._label)
        raise ParameterError(
            f"randomness of type {type(src).__name__} cannot be shipped to pool workers "
            "(use SystemRandom, AesCtrRandom or, for reproducible simulations, "
            "InsecureDeterministicRandom)"
        )

    def child(self, label: str) -> RngRecipe:
        if self.seed is None:
            return self
        return RngRecipe(self.seed, f"{self.label}/{label}")

    def build(self) -> RandomSource:
        if self.seed is None:
            return AesCtrRandom() if self.fast else SystemRandom()
        return InsecureDeterministicRandom(self.seed, self.label, warn=False)


# -- inputs ------------------------------------------------------------------------


class InputSource(Protocol):
    """Picklable: client ``u``'s input vector, inside a worker."""

    def get(self, client: int) -> npt.NDArray[Any]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ArrayInputs:
    """Given vectors (shipped once: forked into processes, put once in Ray's store)."""

    arrays: Mapping[int, npt.NDArray[Any]]

    def get(self, client: int) -> npt.NDArray[Any]:
        return self.arrays[client]


@dataclasses.dataclass(frozen=True, slots=True)
class ShiftedInputs:
    """Benchmark inputs that cost no memory per client: ``x_u = base[j : j + length]``
    for the ``j``-th client of ``ids`` (see :func:`secagg.bench.mask.shifted_inputs`)."""

    base: npt.NDArray[Any]
    ids: tuple[int, ...]
    length: int

    def get(self, client: int) -> npt.NDArray[Any]:
        j = _position(self.ids, client)
        return self.base[j : j + self.length]


def _position(ids: Sequence[int], client: int) -> int:
    if ids and ids[-1] - ids[0] == len(ids) - 1:  # contiguous ids: O(1)
        return client - ids[0]
    return list(ids).index(client)


@dataclasses.dataclass(frozen=True, slots=True)
class GeneratedInputs:
    """Simulation inputs drawn in the worker: uniform in Z_{2^bits} from
    ``rng.child("input/<u>")`` (no vector crosses a process boundary)."""

    rng: RngRecipe
    bits: int
    length: int

    def get(self, client: int) -> npt.NDArray[Any]:
        return generate_input(self.rng.child(f"input/{client}").build(), self.bits, self.length)


def generate_input(src: RandomSource, bits: int, length: int) -> npt.NDArray[Any]:
    """A uniform vector in Z_{2^bits} from ``src`` (simulation input)."""
    dt = dtype_for_bits(bits)
    width = np.dtype(dt).itemsize
    x: npt.NDArray[Any] = np.frombuffer(src.random_bytes(width * length), dtype=dt).copy()
    if bits < 8 * width:
        np.bitwise_and(x, dt((1 << bits) - 1), out=x)
    return x


# -- configs -----------------------------------------------------------------------


def ship_config(cfg: RoundConfig) -> bytes:
    """The picklable recipe of a config (its fields, enums by value).

    Stand-in until ``RoundConfig`` has its canonical wire form; the worker rebuilds
    the config with :func:`load_config`, which re-runs every check.
    """
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    fields = {k: (v.value if isinstance(v, (ProtocolKind, SecurityMode)) else v)
              for k, v in fields.items()}
    return pickle.dumps(fields, protocol=5)


def load_config(blob: bytes) -> RoundConfig:
    """Inverse of :func:`ship_config` (validated by ``RoundConfig.__post_init__``)."""
    fields = pickle.loads(blob)  # noqa: S301 - produced by ship_config in this round
    fields["protocol"] = ProtocolKind(fields["protocol"])
    fields["security"] = SecurityMode(fields["security"])
    return RoundConfig(**fields)


# -- masking clients ---------------------------------------------------------------


class _MaskingParty:
    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        self._client = client

    def start(self) -> list[bytes]:
        return [m.encode(self._client.start())]

    def receive(self, data: bytes) -> list[bytes]:
        return [m.encode(r) for r in self._client.receive(data)]

    @property
    def state(self) -> str:
        return self._client.phase.value


class MaskingClientFactory:
    """Creates SecAgg / SecAgg+ clients (:class:`~secagg.masking.client.Client`).

    Parameters
    ----------
    config:
        The round configuration.
    inputs:
        Each client's input (an :class:`InputSource`).
    rng:
        Client ``u`` draws from ``rng.child("client/<u>")`` (as :func:`secagg.sim.run_round`).
    identity:
        Malicious mode: client id -> raw 32-byte Ed25519 identity seed.
    """

    kind = "masking"

    def __init__(
        self,
        *,
        config: RoundConfig,
        inputs: InputSource,
        rng: RngRecipe,
        identity: Mapping[int, bytes] | None = None,
    ) -> None:
        self._blob = ship_config(config)
        self._config: RoundConfig | None = config
        self.inputs = inputs
        self.rng = rng
        self.identity = dict(identity or {})

    def __getstate__(self) -> dict[str, Any]:
        return {"blob": self._blob, "inputs": self.inputs, "rng": self.rng,
                "identity": self.identity}

    def __setstate__(self, st: dict[str, Any]) -> None:
        self._blob = st["blob"]
        self._config = None
        self.inputs = st["inputs"]
        self.rng = st["rng"]
        self.identity = st["identity"]

    @property
    def config(self) -> RoundConfig:
        if self._config is None:
            self._config = load_config(self._blob)
        return self._config

    def make(self, client: int) -> ClientParty:
        raw = self.identity.get(client)
        return _MaskingParty(Client(
            config=self.config,
            client_id=client,
            input_vector=self.inputs.get(client),
            rng=self.rng.child(f"client/{client}").build(),
            identity_key=SigningKey.from_private_bytes(raw) if raw is not None else None,
        ))


# -- LightSecAgg clients -------------------------------------------------------------


class _LightParty:
    __slots__ = ("_client",)

    def __init__(self, client: LightClient) -> None:
        self._client = client

    def start(self) -> list[bytes]:
        return [lm.encode(self._client.start())]

    def receive(self, data: bytes) -> list[bytes]:
        return [lm.encode(r) for r in self._client.receive(data)]

    @property
    def state(self) -> str:
        return self._client.phase.value


class LightSecAggClientFactory:
    """Creates LightSecAgg clients (:class:`~secagg.lightsecagg.client.Client`).

    Parameters
    ----------
    config:
        The round configuration (a frozen dataclass of plain values: it pickles).
    inputs:
        Each client's input (an :class:`InputSource`), integers in ``[0, 2^bits)``.
    rng:
        Client ``u`` draws its X25519 key and round secret from
        ``rng.child("lightsecagg-client/<u>")``.
    """

    kind = "lightsecagg"

    def __init__(self, *, config: LightSecAggConfig, inputs: InputSource,
                 rng: RngRecipe) -> None:
        if not isinstance(config, LightSecAggConfig):
            raise ParameterError("config must be a LightSecAggConfig")
        self.config = config
        self.inputs = inputs
        self.rng = rng

    def make(self, client: int) -> ClientParty:
        return _LightParty(LightClient(
            config=self.config,
            client_id=client,
            input_vector=self.inputs.get(client),
            rng=self.rng.child(f"lightsecagg-client/{client}").build(),
        ))


# -- HE clients ----------------------------------------------------------------------


class _HEParty:
    __slots__ = ("_client", "_done", "_quantize", "_x")

    def __init__(self, client: Any, x: npt.NDArray[Any], quantize: bool) -> None:
        self._client = client
        self._x = x
        self._quantize = quantize
        self._done = False

    def start(self) -> list[bytes]:
        envelopes = (self._client.encrypt_quantized(self._x) if self._quantize
                     else self._client.encrypt(self._x))
        out: list[bytes] = [e.to_bytes() for e in envelopes]
        self._done = True
        return out

    def receive(self, data: bytes) -> list[bytes]:
        return []  # the HE round asks nothing more of a client

    @property
    def state(self) -> str:
        return "uploaded" if self._done else "init"


class HEClientFactory:
    """Creates HE clients (:class:`~secagg.he.client.HEClient`) from the session, the
    context envelope the key holder published (public, or secret under
    SHARED_CLIENT_KEY custody) and each client's identity seed; the TenSEAL
    context is loaded once per worker."""

    kind = "he"

    def __init__(
        self,
        *,
        session: Any,
        context: bytes,
        secret_context: bool,
        inputs: InputSource,
        rng: RngRecipe,
        identity: Mapping[int, bytes],
        quantize: bool,
        n_threads: int = 1,
    ) -> None:
        self.session = session
        self.context = context
        self.secret_context = secret_context
        self.inputs = inputs
        self.rng = rng
        self.identity = dict(identity)
        self.quantize = quantize
        self.n_threads = n_threads
        self._ctx: Any = None

    def __getstate__(self) -> dict[str, Any]:
        st = dict(self.__dict__)
        st["_ctx"] = None
        return st

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)

    def _context(self) -> Any:
        if self._ctx is None:
            from secagg.he.keys import ContextKind, EncryptionMode, HEContext

            if self.secret_context:
                self._ctx = HEContext.from_bytes(
                    self.context, kind=ContextKind.SECRET, n_threads=self.n_threads,
                    encryption=EncryptionMode.SECRET_KEY)
            else:
                self._ctx = HEContext.from_bytes(
                    self.context, kind=ContextKind.PUBLIC, n_threads=self.n_threads,
                    encryption=EncryptionMode.PUBLIC_KEY)
        return self._ctx

    def make(self, client: int) -> ClientParty:
        from secagg.he.client import HEClient

        c = HEClient(
            client_id=client,
            session=self.session,
            context=self._context(),
            signing_key=SigningKey.from_private_bytes(self.identity[client]),
            rng=self.rng.child(f"he-client/{client}").build(),
        )
        return _HEParty(c, self.inputs.get(client), self.quantize)
