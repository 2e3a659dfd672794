"""Homomorphic summation with TenSEAL (CKKS for floats, BFV for exact integers).

The normative description is ``protocols/he_sum.md``.  TenSEAL is an optional
dependency (``pip install 'secagg[he]'``) imported only when keys are generated
or contexts are loaded; importing :mod:`secagg.he` does not load it.

A round is driven by :func:`secagg.runtime.he_sum` (this core imports no
runtime).  The parties are sans-IO state machines:
:class:`HEClient`, :class:`HEServer` (public context only) and
:class:`HEDecryptor` (the secret-key holder, which only accepts aggregates).

I/O, as for every party of ``secagg``: bytes in, message objects out.
``HEServer.receive(data)`` and ``HEDecryptor.receive(data)`` take the bytes that
arrived (and send nothing back); ``HEClient.encrypt`` and ``HEServer.finalize``
return signed :class:`Envelope` messages that carry their routing (``sender``,
``recipient``) and their wire form (``to_bytes()``, the same bytes as
:func:`encode_envelope`; :func:`decode_envelope` parses).
"""

from __future__ import annotations

from secagg.he.api import DECRYPTOR_ID, HESumResult, Observer
from secagg.he.client import HEClient, quantization_spec
from secagg.he.decryptor import HEAggregate, HEDecryptor
from secagg.he.envelope import (
    Envelope,
    EnvelopeKind,
    decode_envelope,
    encode_envelope,
    sign_envelope,
)
from secagg.he.keys import ContextKind, EncryptionMode, HEContext, HEKeys, generate_keys
from secagg.he.params import (
    SEAL_MAX_COEFF_BITS,
    HEParams,
    KeyCustody,
    Preset,
    Scheme,
    coeff_modulus_primes,
    resolve_params,
)
from secagg.he.server import HEServer
from secagg.he.session import HESession
from secagg.phase import Phase

__all__ = [
    "DECRYPTOR_ID",
    "SEAL_MAX_COEFF_BITS",
    "ContextKind",
    "EncryptionMode",
    "Envelope",
    "EnvelopeKind",
    "HEAggregate",
    "HEClient",
    "HEContext",
    "HEDecryptor",
    "HEKeys",
    "HEParams",
    "HEServer",
    "HESession",
    "HESumResult",
    "KeyCustody",
    "Observer",
    "Phase",
    "Preset",
    "Scheme",
    "coeff_modulus_primes",
    "decode_envelope",
    "encode_envelope",
    "generate_keys",
    "quantization_spec",
    "resolve_params",
    "sign_envelope",
]
