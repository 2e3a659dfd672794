"""The batched plane's exact refusals and its edges (issue 20, mutation triage).

``test_plane.py`` checks that the batched helpers give the bytes of the one-at-a-time
reference; this file pins what a caller reads when they refuse (the typed error *and*
its text), and the edges that a round of honest parties never reaches: a byte-like
public key that is not ``bytes``, the default batch size handed to ``map_fn``, a share
exactly ``P``, a reconstructed value exactly ``2**256``, no senders at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import CryptoError, ParameterError
from secagg.masking import _common as cm
from secagg.masking import _plane
from secagg.primitives import aead
from secagg.primitives.field import ELEMENT_BYTES, P
from secagg.primitives.kex import KeyPair
from secagg.primitives.rand import InsecureDeterministicRandom

SID = bytes(range(32))
SELF_PAIR = "a party cannot agree a pairwise key with itself"
KEY_LENGTH = "an X25519 public key is exactly 32 bytes"


def _kp(seed: int) -> KeyPair:
    return KeyPair.generate(InsecureDeterministicRandom(seed, warn=False))


def _refusal(exc: type[Exception], fn, *args) -> str:
    with pytest.raises(exc) as info:
        fn(*args)
    assert type(info.value) is exc
    return str(info.value)


def test_a_pairwise_key_with_oneself_is_refused_in_words():
    lab = _plane.labels(SID)
    a, b = _kp(1), _kp(2)
    assert _refusal(ParameterError, lab.pair_info, lab.share_key, 3, 3) == SELF_PAIR
    assert _refusal(ParameterError, _plane.share_keys, a.private, 5, [(5, b.public)], lab) == (
        SELF_PAIR
    )
    pairs = [(a.private, b.public, 4, 4)]
    assert _refusal(ParameterError, _plane.pairwise_seeds, pairs, lab) == SELF_PAIR


@pytest.mark.parametrize("pk", [b"\x09" * 31, b"\x09" * 33, bytearray(31), b""])
def test_a_public_key_of_another_length_is_refused_in_words(pk):
    lab = _plane.labels(SID)
    a = _kp(1)
    assert _refusal(ParameterError, _plane.share_keys, a.private, 5, [(6, pk)], lab) == KEY_LENGTH
    pairs = [(a.private, pk, 5, 6)]
    assert _refusal(ParameterError, _plane.pairwise_seeds, pairs, lab) == KEY_LENGTH


def test_a_public_key_that_is_not_byte_like_is_refused_in_words():
    lab = _plane.labels(SID)
    a = _kp(1)
    not_bytes = "x" * 32  # the right length, the wrong type
    assert _refusal(ParameterError, _plane.share_keys, a.private, 5, [(6, not_bytes)], lab) == (
        KEY_LENGTH
    )
    pairs = [(a.private, not_bytes, 5, 6)]
    assert _refusal(ParameterError, _plane.pairwise_seeds, pairs, lab) == KEY_LENGTH


def test_pairwise_seeds_take_a_bytearray_key_as_its_bytes():
    lab = _plane.labels(SID)
    a, b, c = _kp(1), _kp(2), _kp(3)
    as_bytes = [
        (a.private, b.public, 1, 2),
        (a.private, c.public, 1, 3),
        (c.private, b.public, 3, 2),
    ]
    as_array = [(sk, bytearray(pk), x, y) for sk, pk, x, y in as_bytes]
    want = [cm.pairwise_seed(sk, pk, session_id=SID, a=x, b=y) for sk, pk, x, y in as_bytes]
    assert _plane.pairwise_seeds(as_array, lab) == want
    # one key given as bytes and as a bytearray: the same parsed key, the same seed
    mixed = [as_bytes[0], as_array[0]]
    assert _plane.pairwise_seeds(mixed, lab) == [want[0], want[0]]


def test_pairwise_seeds_hand_map_fn_batches_of_256_by_default():
    lab = _plane.labels(SID)
    a, b = _kp(1), _kp(2)
    pairs = [(a.private, b.public, 1, v) for v in range(2, 2 + 257)]
    sizes: list[int] = []

    def recording_map(fn, parts):
        parts = list(parts)
        sizes.extend(len(p) for p in parts)
        return map(fn, parts)

    seeds = _plane.pairwise_seeds(pairs, lab, recording_map)
    assert sizes == [256, 1]
    assert seeds[0] == cm.pairwise_seed(a.private, b.public, session_id=SID, a=1, b=2)
    assert seeds[-1] == cm.pairwise_seed(a.private, b.public, session_id=SID, a=1, b=258)


def test_seal_share_boxes_refuses_rows_of_another_length():
    lab = _plane.labels(SID)
    keys = {2: bytes(32), 5: bytes(32)}
    rng = InsecureDeterministicRandom(3, warn=False)
    with pytest.raises(ValueError, match=r"^zip\(\) argument 2 is shorter than argument 1$"):
        _plane.seal_share_boxes(1, [2, 5], keys, [7], [8, 9], lab, rng)
    with pytest.raises(ValueError, match=r"^zip\(\) argument 3 is shorter than arguments 1-2$"):
        _plane.seal_share_boxes(1, [2, 5], keys, [7, 8], [9], lab, rng)
    with pytest.raises(ValueError, match=r"^zip\(\) argument 2 is longer than argument 1$"):
        _plane.seal_share_boxes(1, [2], keys, [7, 8], [9, 10], lab, rng)


@pytest.mark.parametrize(("b", "s"), [(P, 6), (5, P), (P - 1, P - 1)])
def test_open_share_boxes_takes_shares_below_p_only(b, s):
    lab = _plane.labels(SID)
    key = bytes(range(32))
    pt = (4).to_bytes(4, "big") + (1).to_bytes(4, "big")
    pt += b.to_bytes(ELEMENT_BYTES, "big") + s.to_bytes(ELEMENT_BYTES, "big")
    box = aead.seal_with_ad(
        key, pt, lab.box_ad(4, 1), rng=InsecureDeterministicRandom(1, warn=False)
    )
    if b < P and s < P:
        assert _plane.open_share_boxes(1, [(4, box)], {4: key}, lab) == {4: (b, s)}
    else:
        assert _refusal(CryptoError, _plane.open_share_boxes, 1, [(4, box)], {4: key}, lab) == (
            "cryptographic verification failed"
        )


def test_reconstructed_secrets_are_below_2_to_the_256():
    top = 2**256 - 1
    assert _plane.reconstruct_secrets([[(1, top), (2, top)], [(3, 1), (1, 1)]], 2) == [
        b"\xff" * 32,
        (1).to_bytes(32, "big"),
    ]
    for too_big in (2**256, 2**256 + 1, P - 1):
        lists = [[(1, 5), (2, 5)], [(1, too_big), (2, too_big)]]
        assert _refusal(ParameterError, _plane.reconstruct_secrets, lists, 2) == (
            "reconstructed value is not a 32-byte secret"
        )


def test_route_boxes_with_no_senders_gives_empty_lists():
    assert _plane.route_boxes({}, [1, 2]) == {1: (), 2: ()}
    assert _plane.route_boxes({}, []) == {}
    box = bytes(range(100)) + b"\x00\x00"
    assert _plane.route_boxes({3: [(1, box)]}, []) == {}
    assert _plane.route_boxes({3: [(1, box)], 2: []}, [1, 4]) == {1: ((3, box),), 4: ()}


def test_reconstructed_rows_refuse_a_value_of_2_to_the_256_or_more_in_words():
    # the server's batched path (shamir.reconstruct_rows) refuses as reconstruct_secrets does
    xs = np.array([[1, 2]], dtype=np.uint32)
    for value, ok in ((2**256 - 1, True), (2**256, False), (P - 1, False)):
        ys = np.frombuffer(value.to_bytes(ELEMENT_BYTES, "big") * 2, dtype=np.uint8)
        ys = ys.reshape(1, 2, ELEMENT_BYTES)
        if ok:
            assert _plane.reconstruct_secret_rows(xs, ys, 2) == [b"\xff" * 32]
        else:
            assert _refusal(ParameterError, _plane.reconstruct_secret_rows, xs, ys, 2) == (
                "reconstructed value is not a 32-byte secret"
            )
