"""The config handshake: the encoded RoundConfig in HELLO and the client's check of it.

This module is the one place the transport encodes a :class:`RoundConfig` and
checks it against a client's policy.  HELLO carries the shared canonical codec,
``RoundConfig.to_bytes()`` (``protocols/wire/secagg.md``, RoundConfig); a client
accepts a round only if its own input fits (id registered, vector length, bit
width) and the masking core's :class:`~secagg.masking.policy.ClientPolicy`
accepts the protocol, security mode and ``(k, t)`` for ``n``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from secagg.errors import DecodeError, PolicyError
from secagg.masking.config import RoundConfig
from secagg.masking.policy import ClientPolicy

__all__ = ["ConfigPolicy", "decode_config", "encode_config"]


def encode_config(config: RoundConfig) -> bytes:
    """The bytes of ``config`` carried in HELLO (``RoundConfig.to_bytes()``)."""
    return config.to_bytes()


def decode_config(data: bytes | bytearray | memoryview) -> RoundConfig:
    """Parse and validate a HELLO config (``RoundConfig.from_bytes``).

    Raises
    ------
    DecodeError
        Anything but the canonical encoding of a valid config.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("config bytes expected")
    return _decode(bytes(data))


@functools.lru_cache(maxsize=4)
def _decode(data: bytes) -> RoundConfig:
    # A RoundConfig is immutable, so equal bytes may share one: a process hosting many
    # clients of a round (simulations) decodes its HELLO once, not once per client
    # (about 1 ms each at n = 1000).  Refusals raise and are not cached.
    return RoundConfig.from_bytes(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigPolicy:
    """What a client accepts before it sends anything.

    Parameters
    ----------
    length, bits:
        The vector length and bit width of this client's input.
    rules:
        The protocol-level policy (protocol, security mode, bits, ``n``, and
        whether ``(k, t)`` is secure enough for ``n``).
    """

    length: int
    bits: int
    rules: ClientPolicy = field(default_factory=ClientPolicy)

    def check(self, config: RoundConfig, client_id: int) -> None:
        """Raise :class:`PolicyError` (saying why) unless ``config`` is acceptable."""
        if client_id not in config.clients:
            raise PolicyError(f"this client ({client_id}) is not registered in the round")
        if config.length != self.length:
            raise PolicyError(f"round length {config.length} != input length {self.length}")
        if config.bits != self.bits:
            raise PolicyError(f"round bit width {config.bits} != expected {self.bits}")
        self.rules.check(config)
