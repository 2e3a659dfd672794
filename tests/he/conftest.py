"""Key pairs shared by the HE tests: SEAL key generation is the slow part, and an
:class:`~secagg.he.HEKeys` is immutable, so one CKKS and one BFV pair serve every
module that asks for ``keys`` / ``bfv_keys`` (a module may still define its own)."""

from __future__ import annotations

import pytest

from secagg.he import HEKeys, Preset, generate_keys


@pytest.fixture(scope="session")
def keys() -> HEKeys:
    """A CKKS_4096 key pair (needs tenseal: use it from modules that importorskip it)."""
    return generate_keys(Preset.CKKS_4096.params)


@pytest.fixture(scope="session")
def bfv_keys() -> HEKeys:
    """A BFV_4096 key pair (needs tenseal)."""
    return generate_keys(Preset.BFV_4096.params)
