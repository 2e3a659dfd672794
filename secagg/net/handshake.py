"""The config handshake: the encoded RoundConfig in HELLO and the client's check of it.

This module is the one place the transport encodes a :class:`RoundConfig` and
checks it against a client's policy, so swapping in the shared codec
(``RoundConfig.to_bytes/from_bytes``) and ``ClientPolicy`` is one edit here.
Encoding: ``protocols/wire/transport.md`` §4.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from secagg.encoding.codec import Reader, Writer
from secagg.errors import DecodeError, ParameterError
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode

__all__ = ["ConfigPolicy", "decode_config", "encode_config"]

CONFIG_CODEC_VERSION = 1
_PROTO = {ProtocolKind.SECAGG: 1, ProtocolKind.SECAGG_PLUS: 2}
_SEC = {SecurityMode.SEMI_HONEST: 1, SecurityMode.MALICIOUS: 2}


def encode_config(config: RoundConfig) -> bytes:
    """The bytes of ``config`` carried in HELLO."""
    w = Writer()
    w.u16(CONFIG_CODEC_VERSION).raw(config.session_id)
    w.u8(_PROTO[config.protocol]).u8(_SEC[config.security]).u8(config.bits)
    w.u64(config.length).u32(config.threshold).u32(config.degree)
    w.u8(1 if config.graph_seed else 0)
    if config.graph_seed:
        w.raw(config.graph_seed)
    w.u32(config.n)
    for c in config.clients:
        w.u32(c)
    w.u32(len(config.identity_keys))
    for c, pk in config.identity_keys:
        w.u32(c).raw(pk)
    return w.getvalue()


def decode_config(data: bytes | bytearray | memoryview) -> RoundConfig:
    """Parse and validate a HELLO config.

    Raises
    ------
    DecodeError
        Malformed bytes, an unknown codec version, or values the RoundConfig
        checks refuse.
    """
    r = Reader(data)
    if r.u16() != CONFIG_CODEC_VERSION:
        raise DecodeError("unsupported config codec version")
    session_id = r.raw(32)
    try:
        protocol = {v: k for k, v in _PROTO.items()}[r.u8()]
        security = {v: k for k, v in _SEC.items()}[r.u8()]
    except KeyError:
        raise DecodeError("unknown protocol or security mode") from None
    bits = r.u8()
    length = r.u64()
    threshold = r.u32()
    neighbors = r.u32()
    flag = r.u8()
    if flag not in (0, 1):
        raise DecodeError("graph seed flag must be 0 or 1")
    graph_seed = r.raw(32) if flag else b""
    n = r.count(r.remaining // 4)
    ids = [r.u32() for _ in range(n)]
    nk = r.count(r.remaining // 36)
    keys = [(r.u32(), r.raw(32)) for _ in range(nk)]
    r.finish()
    if any(b <= a for a, b in pairwise(ids)) or any(b[0] <= a[0] for a, b in pairwise(keys)):
        raise DecodeError("client ids must be strictly ascending")
    try:
        cfg = RoundConfig(
            session_id=session_id,
            protocol=protocol,
            security=security,
            clients=tuple(ids),
            bits=bits,
            length=length,
            threshold=threshold,
            neighbors=neighbors,
            graph_seed=graph_seed,
            identity_keys=tuple(keys),
        )
    except ParameterError as exc:
        raise DecodeError(f"config refused: {exc}") from None
    if cfg.degree != neighbors:
        raise DecodeError("neighbors field does not match the config")
    return cfg


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigPolicy:
    """What a client accepts before it sends anything (stand-in for ``ClientPolicy``).

    Parameters
    ----------
    length, bits:
        The vector length and bit width of this client's input.
    min_clients:
        Refuse rounds with fewer registered clients (a tiny round reveals more).
    min_threshold:
        Refuse a Shamir threshold below this.
    require_malicious:
        Refuse semi-honest rounds.
    """

    length: int
    bits: int
    min_clients: int = 2
    min_threshold: int = 2
    require_malicious: bool = False

    def check(self, config: RoundConfig, client_id: int) -> None:
        """Raise :class:`ParameterError` (saying why) unless ``config`` is acceptable."""
        if client_id not in config.clients:
            raise ParameterError(f"this client ({client_id}) is not registered in the round")
        if config.length != self.length:
            raise ParameterError(f"round length {config.length} != input length {self.length}")
        if config.bits != self.bits:
            raise ParameterError(f"round bit width {config.bits} != expected {self.bits}")
        if config.n < self.min_clients:
            raise ParameterError(f"round has {config.n} clients (< {self.min_clients})")
        if config.n > 2 and config.threshold < self.min_threshold:
            raise ParameterError(f"threshold {config.threshold} below {self.min_threshold}")
        if self.require_malicious and config.security is not SecurityMode.MALICIOUS:
            raise ParameterError("this client requires malicious-mode rounds")
