"""Secret-key (SEAL symmetric) encryption for parties that hold the secret key.

Same ciphertext format as public-key encryption: the server validates and adds
both alike, the decryptor decrypts the mixed sum within the stated bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ParameterError

pytest.importorskip("tenseal")

from secagg.he import (
    ContextKind,
    EncryptionMode,
    HEContext,
    KeyCustody,
    Preset,
    Scheme,
    generate_keys,
)
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime import he_sum


@pytest.fixture(scope="module", params=[Preset.CKKS_4096, Preset.BFV_4096], ids=lambda p: p.value)
def keys(request):  # type: ignore[no-untyped-def]
    return generate_keys(request.param.params, n_threads=1)


def _block(params, k: int, seed: int):  # type: ignore[no-untyped-def]
    g = np.random.default_rng(seed)  # test data only
    if params.scheme is Scheme.CKKS:
        return g.uniform(-1, 1, (params.slots, k))
    return g.integers(0, 1 << params.value_bits, (params.slots, k), dtype=np.int64)


def test_secret_key_mode_needs_the_secret_context(keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError):
        HEContext.from_bytes(
            keys.public_context, kind=ContextKind.PUBLIC, encryption=EncryptionMode.SECRET_KEY
        )
    with pytest.raises(ParameterError):
        HEContext.from_bytes(
            keys.secret_context, kind=ContextKind.SECRET, encryption="secret-key"  # type: ignore[arg-type]
        )
    ctx = HEContext.from_bytes(
        keys.secret_context, kind=ContextKind.SECRET, encryption=EncryptionMode.SECRET_KEY
    )
    assert ctx.encryption is EncryptionMode.SECRET_KEY and ctx.can_decrypt


def test_mixed_secret_and_public_key_ciphertexts_sum(keys) -> None:  # type: ignore[no-untyped-def]
    p = keys.params
    sym = HEContext.from_bytes(
        keys.secret_context, kind=ContextKind.SECRET, n_threads=1,
        encryption=EncryptionMode.SECRET_KEY,
    )
    pub = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC, n_threads=1)
    a, b = _block(p, 3, 1), _block(p, 3, 2)
    # the server's path: payload validation + TenSEAL load under the public context
    ta = pub.load(HEContext.serialize(sym.encrypt_columns(a)), ciphertexts=3)
    tb = pub.load(HEContext.serialize(pub.encrypt_columns(b)), ciphertexts=3)
    total = HEContext.serialize(HEContext.add(ta, tb))
    got = sym.decrypt(sym.load(total, ciphertexts=3))
    if p.scheme is Scheme.CKKS:
        assert np.max(np.abs(got - (a + b))) <= p.ckks_error_bound(2)
    else:
        np.testing.assert_array_equal(got, a + b)


def test_secret_key_mode_is_really_symmetric() -> None:
    """SEAL's symmetric CKKS encryption has no public-key noise term ``u·e``: its
    fresh error is ~10x smaller.  If the mode switch silently failed, the two
    error maxima (over 8192 slots each) would be alike."""
    p = Preset.CKKS_4096.params
    keys = generate_keys(p, n_threads=1)
    sym = HEContext.from_bytes(
        keys.secret_context, kind=ContextKind.SECRET, n_threads=1,
        encryption=EncryptionMode.SECRET_KEY,
    )
    asym = HEContext.from_bytes(keys.secret_context, kind=ContextKind.SECRET, n_threads=1)
    assert asym.encryption is EncryptionMode.PUBLIC_KEY
    x = _block(p, 4, 3)
    err_sym = np.max(np.abs(sym.decrypt(sym.encrypt_columns(x)) - x))
    err_asym = np.max(np.abs(asym.decrypt(asym.encrypt_columns(x)) - x))
    assert err_sym < err_asym / 2, (err_sym, err_asym)
    assert err_asym <= p.ckks_error_bound(1)


@pytest.mark.parametrize("scheme", [Scheme.CKKS, Scheme.BFV])
def test_shared_client_key_round_uses_secret_key_encryption(scheme: Scheme) -> None:
    g = np.random.default_rng(5)  # test data only
    n, m = 3, 5000
    if scheme is Scheme.CKKS:
        inputs = {i: g.uniform(-1, 1, m) for i in range(1, n + 1)}
    else:
        inputs = {i: g.integers(0, 1 << 22, m, dtype=np.int64) for i in range(1, n + 1)}
    res = he_sum(
        inputs, scheme=scheme, custody=KeyCustody.SHARED_CLIENT_KEY,
        rng=InsecureDeterministicRandom(5, warn=False), n_threads=1,
    )
    expected = sum(inputs.values())
    assert res.sum is not None and res.count == n
    if scheme is Scheme.CKKS:
        assert np.max(np.abs(res.sum - expected)) <= res.error_bound
    else:
        assert res.total is not None
        np.testing.assert_array_equal(res.total, expected)
