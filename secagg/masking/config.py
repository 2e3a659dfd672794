"""Round configuration shared by every party of one SecAgg / SecAgg+ round.

The server fixes a :class:`RoundConfig` before the round (it chooses
``session_id`` and, for SecAgg+, ``graph_seed``) and distributes it with the
task (:meth:`RoundConfig.to_bytes`); every client decodes it strictly
(:meth:`RoundConfig.from_bytes`) and checks it against its own policy
(:class:`secagg.masking.policy.ClientPolicy`).  See ``protocols/secagg.md`` §1 and
``protocols/wire/secagg.md`` (RoundConfig).
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, ParameterError
from secagg.masking.messages import WIRE_VERSION
from secagg.primitives import sign as _sign
from secagg.primitives.prg import dtype_for_bits

__all__ = [
    "CONFIG_MAGIC",
    "GRAPH_SEED_BYTES",
    "MAX_CLIENT_ID",
    "SESSION_ID_BYTES",
    "ProtocolKind",
    "RoundConfig",
    "SecurityMode",
    "default_parameters",
]

SESSION_ID_BYTES = 32
GRAPH_SEED_BYTES = 32
MAX_CLIENT_ID = 2**32 - 1


class ProtocolKind(enum.Enum):
    """Which neighbor graph the round uses."""

    SECAGG = "secagg"  #: complete graph (Bonawitz et al. 2017)
    SECAGG_PLUS = "secagg+"  #: k-regular Harary graph (Bell et al. 2020)


class SecurityMode(enum.Enum):
    """Threat model the round defends against."""

    SEMI_HONEST = "semi-honest"
    MALICIOUS = "malicious"


#: Corrupt fraction the default thresholds defend against (the finder's default alpha).
DEFAULT_CORRUPT_FRACTION = 0.05


def default_parameters(n: int, protocol: ProtocolKind) -> tuple[int, int]:
    """The conservative ``(k, t)`` used when the caller gives none.

    Complete graph: ``k = n - 1``, ``t = floor(n/2) + 1`` (capped at ``k``).
    SecAgg+: ``k = min(n - 1, smallest even number >= 6*ceil(log2 n))``,
    ``t = floor(k/2) + 1``.

    Raises
    ------
    ParameterError
        If ``n < 2``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ParameterError("a round needs at least 2 clients")
    if protocol is ProtocolKind.SECAGG:
        k = n - 1
        return k, max(1, min(k, n // 2 + 1))
    want = 6 * max(1, math.ceil(math.log2(n)))
    want += want % 2
    k = min(n - 1, want)
    return k, max(1, min(k, k // 2 + 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundConfig:
    """Everything all parties must agree on before round 0.

    Parameters
    ----------
    session_id:
        32 bytes chosen uniformly by the server; bound into every derivation.
    protocol, security:
        Graph kind and threat model.
    clients:
        Registered client ids ``U0`` (distinct, ``1 <= id < 2^32``); stored sorted.
    bits:
        Inputs and sum live in Z_{2^bits}, ``1 <= bits <= 64``.
    length:
        Elements per input vector.
    threshold:
        Shamir threshold ``t``.
    neighbors:
        Harary degree ``k`` for SecAgg+; ignored (``n - 1``) for SecAgg.
    graph_seed:
        32 server-chosen bytes from which the Harary permutation is derived
        (SecAgg+ only; ignored otherwise).
    identity_keys:
        Malicious mode: every client's Ed25519 public identity key (a PKI input).

    Raises
    ------
    ParameterError
        On any inconsistent or insecure value.

    Security notes
    --------------
    ``t`` below 2 gives no protection against a single curious neighbor and is
    refused unless ``n = 2``; malicious mode requires ``t > k/2``.
    """

    session_id: bytes
    protocol: ProtocolKind
    security: SecurityMode
    clients: tuple[int, ...]
    bits: int
    length: int
    threshold: int
    neighbors: int | None = None
    graph_seed: bytes = b""
    identity_keys: tuple[tuple[int, bytes], ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.session_id, bytes) or len(self.session_id) != SESSION_ID_BYTES:
            raise ParameterError("session_id must be 32 bytes")
        if not isinstance(self.protocol, ProtocolKind):
            raise ParameterError("protocol must be a ProtocolKind")
        if not isinstance(self.security, SecurityMode):
            raise ParameterError("security must be a SecurityMode")
        ids = tuple(self.clients)
        for c in ids:
            if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= MAX_CLIENT_ID:
                raise ParameterError("client ids are integers in [1, 2^32)")
        if len(set(ids)) != len(ids):
            raise ParameterError("duplicate client ids")
        n = len(ids)
        if n < 2:
            raise ParameterError("a round needs at least 2 clients")
        object.__setattr__(self, "clients", tuple(sorted(ids)))
        dtype_for_bits(self.bits)
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ParameterError("length must be a positive integer")
        if self.protocol is ProtocolKind.SECAGG:
            object.__setattr__(self, "neighbors", n - 1)
            object.__setattr__(self, "graph_seed", b"")
        else:
            k = self.neighbors
            if isinstance(k, bool) or not isinstance(k, int) or not k >= 1:
                raise ParameterError("SecAgg+ needs neighbors k >= 1")
            if k > n - 1:
                k = n - 1
                object.__setattr__(self, "neighbors", k)
            if not isinstance(self.graph_seed, bytes) or len(self.graph_seed) != GRAPH_SEED_BYTES:
                raise ParameterError("SecAgg+ needs a 32-byte graph_seed")
        k = self.degree
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= k:
            raise ParameterError(f"threshold must satisfy 1 <= t <= k (t={t}, k={k})")
        if t < 2 and n > 2:
            raise ParameterError("threshold 1 lets any single neighbor unmask a client")
        keys = dict(self.identity_keys)
        if len(keys) != len(self.identity_keys):
            raise ParameterError("duplicate identity keys")
        if self.security is SecurityMode.MALICIOUS:
            if set(keys) != set(ids):
                raise ParameterError("malicious mode needs an identity key for every client")
            for pk in keys.values():
                if not isinstance(pk, bytes) or len(pk) != _sign.PUBLIC_KEY_BYTES:
                    raise ParameterError("identity keys are 32-byte Ed25519 public keys")
            if 2 * t <= k:
                raise ParameterError("malicious mode needs t > k/2")
        object.__setattr__(self, "identity_keys", tuple(sorted(keys.items())))

    @classmethod
    def create(
        cls,
        *,
        session_id: bytes,
        clients: tuple[int, ...] | list[int],
        bits: int,
        length: int,
        protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
        security: SecurityMode = SecurityMode.SEMI_HONEST,
        neighbors: int | None = None,
        threshold: int | None = None,
        graph_seed: bytes = b"",
        identity_keys: Mapping[int, bytes] | None = None,
    ) -> RoundConfig:
        """Build a config, filling ``neighbors``/``threshold`` with safe defaults.

        Only ``neighbors`` and ``threshold`` are defaulted.  SecAgg+ (the default
        ``protocol``) still needs ``graph_seed``: 32 fresh random bytes from the
        server, e.g. ``os.urandom(32)`` (the empty default is refused for SecAgg+
        and is right only for SecAgg); ``session_id`` (32 bytes) must be fresh per round.

        SecAgg+ defaults come from :func:`secagg.masking.params.choose_parameters`
        (Bell et al.; corrupt fraction 0.05, dropout fraction 0.33, 2^-40 / 2^-20)
        for the given security mode; SecAgg (complete graph) uses
        :func:`default_parameters`.  Given ``neighbors`` but no ``threshold``:
        ``t = floor(k/2) + 1``.  In malicious mode a default threshold is raised to
        ``floor(k/2) + 1`` if needed.

        Raises
        ------
        ParameterError
            If the parameters are infeasible or insecure (the message says why).
        """
        n = len(tuple(clients))
        k_def, t_def = _defaults(n, protocol, security)
        k = neighbors if neighbors is not None else k_def
        if protocol is ProtocolKind.SECAGG:
            k = n - 1
        k = min(k, n - 1) if isinstance(k, int) and not isinstance(k, bool) else k
        if threshold is None:
            t = (
                t_def
                if neighbors is None or protocol is ProtocolKind.SECAGG
                else max(1, min(k, k // 2 + 1))
            )
            if security is SecurityMode.MALICIOUS:
                t = max(t, k // 2 + 1)
            t = min(t, k)
            if n > 2:
                t = max(t, 2)
        else:
            t = threshold
        return cls(
            session_id=session_id,
            protocol=protocol,
            security=security,
            clients=tuple(clients),
            bits=bits,
            length=length,
            threshold=t,
            neighbors=k,
            graph_seed=graph_seed,
            identity_keys=tuple((identity_keys or {}).items()),
        )

    @property
    def n(self) -> int:
        return len(self.clients)

    @property
    def degree(self) -> int:
        """``k`` (``n - 1`` for the complete graph)."""
        return self.n - 1 if self.neighbors is None else int(self.neighbors)

    @property
    def signature_threshold(self) -> int:
        """``t_sig = max(t, floor(n/2) + 1)`` (malicious ConsistencyCheck)."""
        return max(self.threshold, self.n // 2 + 1)

    def to_bytes(self) -> bytes:
        """The canonical wire form (``protocols/wire/secagg.md``, RoundConfig).

        ``magic "SACF" || u16 wire version``, then one ``u16 tag, u32 length, value``
        record per entry of :data:`_FIELDS`, in ascending tag order.  Every field is
        always present (normalized as ``__post_init__`` left it), so equal configs
        have equal bytes and :meth:`from_bytes` accepts exactly these bytes.
        """
        w = Writer().raw(CONFIG_MAGIC).u16(WIRE_VERSION)
        for f in _FIELDS:
            value = Writer()
            f.write(value, getattr(self, f.name))
            w.u16(f.tag).blob(value.getvalue())
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundConfig:
        """Decode and validate a config received from the server.

        Raises
        ------
        DecodeError
            On anything but the canonical encoding of a valid config: wrong magic
            or wire version, truncation, trailing bytes, an unknown, missing,
            repeated or out-of-order tag, a value whose length does not match its
            content, an unknown enum code, ids not strictly ascending, or field
            values that :class:`RoundConfig` refuses (the ``ParameterError`` is
            chained).  Nothing is returned unless the bytes re-encode to themselves.
        """
        r = Reader(data)
        if r.remaining < len(CONFIG_MAGIC) + 2 or r.raw(len(CONFIG_MAGIC)) != CONFIG_MAGIC:
            raise DecodeError("not a RoundConfig (bad magic)")
        version = r.u16()
        if version != WIRE_VERSION:
            raise DecodeError(f"RoundConfig of wire version {version}; expected {WIRE_VERSION}")
        kwargs: dict[str, Any] = {}
        for f in _FIELDS:
            if r.remaining == 0:
                raise DecodeError(f"RoundConfig field {f.name!r} (tag {f.tag}) is missing")
            tag = r.u16()
            if tag != f.tag:
                raise DecodeError(
                    f"RoundConfig tag {tag} where tag {f.tag} ({f.name}) was expected "
                    "(unknown, repeated, missing or out of order)"
                )
            value = Reader(r.blob(max_len=r.remaining))
            kwargs[f.name] = f.read(value)
            value.finish()
        if r.remaining >= 2:
            tag = r.u16()
            raise DecodeError(f"RoundConfig tag {tag} after the last field (unknown or repeated)")
        r.finish()
        try:
            cfg = cls(**kwargs)
        except ParameterError as exc:
            raise DecodeError(f"invalid RoundConfig: {exc}") from exc
        if cfg.to_bytes() != bytes(data):
            raise DecodeError("RoundConfig encoding is not canonical")
        return cfg

    def identity_key(self, client: int) -> bytes:
        """Client's Ed25519 public identity key (malicious mode)."""
        for cid, pk in self.identity_keys:
            if cid == client:
                return pk
        raise ParameterError(f"no identity key for client {client}")


def _defaults(n: int, protocol: ProtocolKind, security: SecurityMode) -> tuple[int, int]:
    """SecAgg+: Bell et al.'s finder when available; the documented default otherwise."""
    if protocol is ProtocolKind.SECAGG:
        k, t = default_parameters(n, protocol)
        if security is SecurityMode.MALICIOUS:
            # A server that shows different survivor sets to honest clients gets
            # |X| + A self-mask shares and |Y| + A mask-key shares of a target with
            # |X| + |Y| <= k - A; both reach t iff 2t <= k + A.  So 2t > k + A, with
            # A = floor(alpha * n) colluders at the finder's default alpha.
            colluders = math.floor(DEFAULT_CORRUPT_FRACTION * n)
            t = min(k, max(t, (k + colluders) // 2 + 1))
        return k, t
    try:
        from secagg.masking.params import choose_parameters  # the parameter finder
    except ImportError:  # pragma: no cover - the finder ships with the package
        return default_parameters(n, protocol)
    chosen = choose_parameters(n=n, mode=security)
    return chosen.k, chosen.t


# ---------------------------------------------------------------------------
# Wire form of RoundConfig (protocols/wire/secagg.md, "RoundConfig").
#
# One row per dataclass field, in field order; tags ascend.  Adding a field to
# RoundConfig = adding one row here (the next tag; new enum values get a code in
# their table) and one line in the spec table; tests/masking/test_config_codec.py
# fails while a field has no row or no spec line.  Any change to the rows is a
# wire change: it bumps WIRE_VERSION and regenerates
# protocols/vectors/secagg_round_config.json (generate_round_config.py).

#: First bytes of an encoded RoundConfig (never the start of a wire message,
#: which begins with the u16 version).
CONFIG_MAGIC = b"SACF"

_PROTOCOL_CODES: dict[ProtocolKind, int] = {ProtocolKind.SECAGG: 1, ProtocolKind.SECAGG_PLUS: 2}
_SECURITY_CODES: dict[SecurityMode, int] = {SecurityMode.SEMI_HONEST: 1, SecurityMode.MALICIOUS: 2}


@dataclass(frozen=True, slots=True)
class _Field:
    tag: int
    name: str
    write: Callable[[Writer, Any], object]
    read: Callable[[Reader], Any]


def _enum_reader(codes: Mapping[Any, int], what: str) -> Callable[[Reader], Any]:
    by_code = {c: e for e, c in codes.items()}

    def read(r: Reader) -> Any:
        code = r.u8()
        if code not in by_code:
            raise DecodeError(f"unknown {what} code {code}")
        return by_code[code]

    return read


def _fixed_reader(sizes: tuple[int, ...], what: str) -> Callable[[Reader], bytes]:
    def read(r: Reader) -> bytes:
        if r.remaining not in sizes:
            raise DecodeError(f"{what} must be {' or '.join(map(str, sizes))} bytes")
        return r.raw(r.remaining)

    return read


def _write_ids(w: Writer, ids: tuple[int, ...]) -> None:
    w.u32(len(ids))
    for c in ids:
        w.u32(c)


def _read_ids(r: Reader) -> tuple[int, ...]:
    n = r.count(MAX_CLIENT_ID)
    ids = tuple(r.u32() for _ in range(n))
    if any(a >= b for a, b in itertools.pairwise(ids)) or (ids and ids[0] == 0):
        raise DecodeError("client ids must be >= 1 and strictly ascending")
    return ids


def _write_keys(w: Writer, keys: tuple[tuple[int, bytes], ...]) -> None:
    w.u32(len(keys))
    for c, pk in keys:
        w.u32(c).raw(pk)


def _read_keys(r: Reader) -> tuple[tuple[int, bytes], ...]:
    n = r.count(MAX_CLIENT_ID)
    keys = tuple((r.u32(), r.raw(_sign.PUBLIC_KEY_BYTES)) for _ in range(n))
    ids = [c for c, _ in keys]
    if any(a >= b for a, b in itertools.pairwise(ids)):
        raise DecodeError("identity keys must be strictly ascending by client id")
    return keys


_FIELDS: tuple[_Field, ...] = (
    _Field(1, "session_id", Writer.raw, _fixed_reader((SESSION_ID_BYTES,), "session_id")),
    _Field(2, "protocol", lambda w, v: w.u8(_PROTOCOL_CODES[v]),
           _enum_reader(_PROTOCOL_CODES, "protocol")),
    _Field(3, "security", lambda w, v: w.u8(_SECURITY_CODES[v]),
           _enum_reader(_SECURITY_CODES, "security mode")),
    _Field(4, "clients", _write_ids, _read_ids),
    _Field(5, "bits", Writer.u8, Reader.u8),
    _Field(6, "length", Writer.u64, Reader.u64),
    _Field(7, "threshold", Writer.u32, Reader.u32),
    _Field(8, "neighbors", Writer.u32, Reader.u32),
    _Field(9, "graph_seed", Writer.raw, _fixed_reader((0, GRAPH_SEED_BYTES), "graph_seed")),
    _Field(10, "identity_keys", _write_keys, _read_keys),
)
