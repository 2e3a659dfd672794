"""The one error hierarchy of secagg.

Everything the library raises on purpose derives from :class:`SecAggError`.

* :class:`LocalProtocolError` — *you* misused the API (bad argument, a method
  called in the wrong phase, parameters that are insecure or would overflow).
* :class:`RemoteProtocolError` — a *peer* misbehaved (malformed bytes, a message
  that does not fit the phase, a replay, inconsistent shares).
* :class:`CryptoError` — one opaque error for every failed verification or
  decryption; it never says *why* (pyca style).
* :class:`AbortedError` — the round can no longer be completed correctly and was
  aborted; nothing about the inputs is revealed.

Dropouts are not errors: they are data handed to the state machines.
"""

from __future__ import annotations

__all__ = [
    "AbortedError",
    "CryptoError",
    "DecodeError",
    "InsecureConfigurationWarning",
    "LocalProtocolError",
    "MissingExtraError",
    "ParameterError",
    "PolicyError",
    "RejectedUploadError",
    "RemoteProtocolError",
    "SecAggError",
]


class SecAggError(Exception):
    """Root of every error secagg raises on purpose."""


class LocalProtocolError(SecAggError):
    """The caller misused the API; nothing changed."""


class ParameterError(LocalProtocolError, ValueError):
    """A parameter is out of range, insecure or would make the sum overflow."""


class RemoteProtocolError(SecAggError):
    """A peer sent something that does not fit the protocol."""


class DecodeError(RemoteProtocolError, ValueError):
    """Bytes from the network could not be parsed or failed validation."""


class PolicyError(RemoteProtocolError):
    """The server proposed a round this client's policy refuses; the client sends
    nothing (to the server it is a dropout)."""


class RejectedUploadError(DecodeError):
    """An authenticated upload failed validation; the blame is on ``sender`` only.

    Raised by a party that has verified who sent the bytes (e.g. the HE server,
    after the envelope signature) and then found the content invalid.  The
    receiving party's state is unchanged: the round goes on without the upload.
    """

    def __init__(self, message: str, *, sender: int, chunk_index: int) -> None:
        super().__init__(f"upload of client {sender}, chunk {chunk_index}: {message}")
        self.sender = sender
        self.chunk_index = chunk_index


class CryptoError(SecAggError):
    """A signature, MAC or decryption check failed.

    Deliberately opaque: the message never says which check failed or why.
    """

    def __init__(self, message: str = "cryptographic verification failed") -> None:
        super().__init__(message)


class AbortedError(SecAggError):
    """The round was aborted; no aggregate (and nothing else) is revealed."""


class MissingExtraError(SecAggError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class InsecureConfigurationWarning(UserWarning):
    """Emitted when an ``insecure_*`` knob weakens a security property."""
