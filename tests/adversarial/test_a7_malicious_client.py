"""Attack 7: a malicious client sends malformed or inconsistent shares, a vector of
the wrong length or width, out-of-range values, or garbage.

Outcome asserted: the round either excludes the client (treated as dropped) or
aborts; when it completes, the output is exactly the sum over the reported
survivors.  The one thing a client *can* do is shift the sum by a vector of its
choice through its own masked input (last test) — indistinguishable from a bad
input without zero-knowledge range proofs, and stated as such in SECURITY.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.masking import _common as cm
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.phase import Phase
from secagg.primitives import aead
from secagg.primitives.field import P
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.sim import ProtocolKind, RoundReport, SecurityMode

from ._harness import Manual, Round, assert_nothing_secret_left, make_round

BAD = 4
MODES = [SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS]


def _exact_or_abort(rnd: Round, report: RoundReport) -> None:
    if report.aborted:
        assert report.total is None
    else:
        np.testing.assert_array_equal(report.total, rnd.expected_sum(report.survivors))


def _as(cls: type[m.Message], fn):  # type: ignore[no-untyped-def]
    def hook(u: int, msg: m.Message) -> m.Message | bytes | None:
        if u == BAD and isinstance(msg, cls):
            return fn(msg)  # type: ignore[no-any-return]
        return msg

    return hook


@pytest.mark.parametrize("security", MODES)
def test_a7_garbage_share_box_makes_its_receiver_abort_never_a_wrong_sum(
    security: SecurityMode,
) -> None:
    rnd = make_round(8, security=security)
    junk = InsecureDeterministicRandom(3, warn=False).random_bytes(m.BOX_BYTES)
    victim = 1

    def garble(msg: m.ShareKeys) -> m.ShareKeys:
        return dataclasses.replace(
            msg, boxes=tuple((v, junk if v == victim else b) for v, b in msg.boxes)
        )

    report = rnd.run(client_hook=_as(m.ShareKeys, garble))
    assert report.client_phases[victim] == Phase.ABORTED.value
    assert "CryptoError" in report.client_errors[victim]
    assert victim not in report.survivors
    _exact_or_abort(rnd, report)
    assert not report.aborted  # one DoS'd neighbor is just a dropout
    assert_nothing_secret_left(rnd.recorder, [u for u in rnd.config.clients if u != BAD], t=rnd.t)


@pytest.mark.parametrize("drop_bad", [False, True])
def test_a7_inconsistent_shares_sealed_correctly_abort_at_reconstruction(drop_bad: bool) -> None:
    """The client seals a wrong share (valid AEAD) for the smallest holder: the server
    rebuilds b_v (or s_v^SK if the client then drops) from the t smallest holders, and
    the commitment h_v (or s_v^PK) check turns the lie into an abort."""
    rnd = make_round(7)
    run = Manual(rnd)
    run.start()
    cfg = rnd.config
    box, run.outbox = run.outbox, []
    for u, data in box:
        (reply,) = run.to_client(u, data)
        if u == BAD:
            msg = m.decode(reply)
            assert isinstance(msg, m.ShareKeys)
            bad = run.clients[BAD]
            holder = msg.boxes[0][0]
            key = bad._share_keys[holder]  # the malicious client's own key
            ad = dict(
                session_id=cfg.session_id,
                round_=cm.SHARE_ROUND,
                sender=BAD,
                receiver=holder,
                context=cm.SHARE_CONTEXT,
            )
            pt = aead.open_(key, msg.boxes[0][1], **ad)  # type: ignore[arg-type]
            owner, h, b_sh, s_sh = m.decode_share_plaintext(pt)
            lie = m.encode_share_plaintext(owner, h, (b_sh + 1) % P, (s_sh + 1) % P)
            src = InsecureDeterministicRandom(1, warn=False)
            forged = aead.seal(key, lie, rng=src, **ad)  # type: ignore[arg-type]
            reply = m.encode(dataclasses.replace(msg, boxes=((holder, forged), *msg.boxes[1:])))
        run.to_server(u, reply)
    while run.outbox:
        run.deliver(skip=[BAD] if drop_bad else ())
    assert run.server.aborted
    assert run.server.abort_code is AbortReason.RECONSTRUCTION_FAILED
    assert run.server.result is None


@pytest.mark.parametrize("security", MODES)
@pytest.mark.parametrize("kind", [m.ShareKind.SELF_MASK, m.ShareKind.MASK_KEY])
def test_a7_lying_holder_in_unmasking_aborts_or_is_unused(
    security: SecurityMode, kind: m.ShareKind
) -> None:
    from secagg.sim import Phase

    rnd = make_round(8, security=security)

    def lie(msg: m.UnmaskingResponse) -> m.UnmaskingResponse:
        return dataclasses.replace(
            msg, shares=tuple((o, k, (y + 1) % P if k is kind else y) for o, k, y in msg.shares)
        )

    report = rnd.run(
        client_hook=_as(m.UnmaskingResponse, lie), dropouts={Phase.MASKED_INPUT: [7]}
    )
    assert report.aborted  # BAD=4 is among the t smallest holders of someone
    assert rnd.recorder.abort_codes() == {AbortReason.RECONSTRUCTION_FAILED}
    _exact_or_abort(rnd, report)


@pytest.mark.parametrize(
    "name",
    [
        "too_long",
        "too_short",
        "wrong_bits",
        "extra_byte",
        "other_view",
        "garbage",
        "truncated",
        "empty",
    ],
)
def test_a7_malformed_masked_input_excludes_the_client(name: str) -> None:
    rnd = make_round(7, bits=16, length=8)

    def bad(msg: m.MaskedInput) -> m.Message | bytes:
        v = msg.vector
        if name == "too_long":
            return dataclasses.replace(msg, vector=np.concatenate([v, v[:1]]))
        if name == "too_short":
            return dataclasses.replace(msg, vector=v[:-1].copy())
        if name == "wrong_bits":
            return dataclasses.replace(msg, bits=17)
        raw = bytearray(m.encode(msg))
        if name == "extra_byte":  # v2 packs at b bits: values >= 2^b cannot be written
            return bytes(raw) + b"\x01"
        if name == "other_view":
            return dataclasses.replace(msg, view=bytes(32))
        if name == "garbage":
            return InsecureDeterministicRandom(5, warn=False).random_bytes(len(raw))
        if name == "truncated":
            return bytes(raw[:-3])
        return b""

    report = rnd.run(client_hook=_as(m.MaskedInput, bad))
    assert BAD in report.server_rejections
    assert BAD not in report.survivors
    assert not report.aborted
    np.testing.assert_array_equal(report.total, rnd.expected_sum(report.survivors))


@pytest.mark.parametrize("security", MODES)
def test_a7_share_keys_to_the_wrong_holders_excludes_the_client(security: SecurityMode) -> None:
    rnd = make_round(7, security=security)
    report = rnd.run(
        client_hook=_as(m.ShareKeys, lambda msg: dataclasses.replace(msg, boxes=msg.boxes[1:]))
    )
    assert "exactly N(u)" in report.server_rejections[BAD]
    assert BAD not in report.sets["U2"] and BAD not in report.survivors
    _exact_or_abort(rnd, report)
    assert not report.aborted


@pytest.mark.parametrize("security", MODES)
def test_a7_unmasking_response_with_wrong_kinds_is_rejected(security: SecurityMode) -> None:
    rnd = make_round(8, security=security)

    def flip(msg: m.UnmaskingResponse) -> m.UnmaskingResponse:
        other = {
            m.ShareKind.SELF_MASK: m.ShareKind.MASK_KEY,
            m.ShareKind.MASK_KEY: m.ShareKind.SELF_MASK,
        }
        return dataclasses.replace(msg, shares=tuple((o, other[k], y) for o, k, y in msg.shares))

    report = rnd.run(client_hook=_as(m.UnmaskingResponse, flip))
    assert BAD in report.server_rejections
    _exact_or_abort(rnd, report)
    assert not report.aborted


@pytest.mark.parametrize("protocol", [ProtocolKind.SECAGG, ProtocolKind.SECAGG_PLUS])
def test_a7_copied_public_keys_abort_neighbors_never_a_wrong_sum(protocol: ProtocolKind) -> None:
    """A client advertising another client's public keys is refused by the server (or,
    if it got through, makes its neighbors abort) — never a wrong sum."""
    k = 4 if protocol is ProtocolKind.SECAGG_PLUS else None
    rnd = make_round(8, protocol=protocol, neighbors=k)
    victim = 2
    stolen: dict[str, bytes] = {}

    def observe_and_copy(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.AdvertiseKeys):
            if u == victim:
                stolen.update(c=msg.c_pk, s=msg.s_pk)
            if u == BAD:
                return dataclasses.replace(msg, c_pk=stolen["c"], s_pk=stolen["s"])
        return msg

    report = rnd.run(client_hook=observe_and_copy)
    _exact_or_abort(rnd, report)
    if BAD in report.server_rejections:  # the server refuses a key it has seen
        assert "already advertised" in report.server_rejections[BAD]
        assert BAD not in report.sets["U1"] and not report.aborted
    else:  # otherwise the neighbors notice: typed refusals, never a wrong sum
        assert report.client_errors
        for err in report.client_errors.values():
            assert err.split(":")[0] in {"RemoteProtocolError", "CryptoError"}


@pytest.mark.parametrize("security", MODES)
def test_a7_documents_that_a_client_can_shift_the_sum_by_its_own_chosen_vector(
    security: SecurityMode,
) -> None:
    """Non-guarantee: the masked input hides x_u, so the server cannot check its range.
    A malicious client adds any e it likes; the honest inputs still enter exactly."""
    rnd = make_round(7, security=security, bits=16)
    e = (np.arange(8, dtype=np.uint32) * 4099 + 17) & np.uint32(0xFFFF)

    def shift(msg: m.MaskedInput) -> m.MaskedInput:
        return dataclasses.replace(msg, vector=(msg.vector + e) & np.uint32(0xFFFF))

    report = rnd.run(client_hook=_as(m.MaskedInput, shift))
    assert not report.aborted and BAD in report.survivors
    want = (rnd.expected_sum(report.survivors) + e) & np.uint32(0xFFFF)
    np.testing.assert_array_equal(report.total, want)


#: Encodings of X25519 points of order 1, 2, 4 and 8 (RFC 7748 §6.1; the list of
#: libsodium's blocklist), canonical and not: every one gives an all-zero shared secret.
LOW_ORDER_KEYS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    (2**255 - 19 + 1).to_bytes(32, "little"),  # p + 1 = 1 (non-canonical)
]


@pytest.mark.parametrize("which", ["c_pk", "s_pk"])
@pytest.mark.parametrize("key", range(len(LOW_ORDER_KEYS)))
@pytest.mark.parametrize("security", MODES)
def test_a7_low_order_public_key_is_refused_in_round_0(
    security: SecurityMode, key: int, which: str
) -> None:
    """A client advertising a low-order X25519 key (validly signed in malicious mode)
    is refused by the server in round 0 and excluded; no honest neighbor aborts.
    (Before v2 the server accepted it and every honest neighbor aborted with
    CryptoError — at n = 8 on the complete graph, the whole round.)"""
    rnd = make_round(8, protocol=ProtocolKind.SECAGG, security=security)

    def low_order(msg: m.AdvertiseKeys) -> m.AdvertiseKeys:
        out = dataclasses.replace(msg, **{which: LOW_ORDER_KEYS[key]})
        if security is SecurityMode.MALICIOUS:  # the malicious client signs its own keys
            sig = rnd.identity_keys[BAD].sign(  # type: ignore[attr-defined]
                cm.advertise_signature_input(
                    session_id=msg.session_id,
                    client=BAD,
                    c_pk=out.c_pk,
                    s_pk=out.s_pk,
                    commitment=out.commitment,
                    seed_commitment=out.seed_commitment,
                )
            )
            out = dataclasses.replace(out, signature=sig)
        return out

    report = rnd.run(client_hook=_as(m.AdvertiseKeys, low_order))
    assert "low-order" in report.server_rejections[BAD]
    assert BAD not in report.sets["U1"]
    assert not report.aborted and not report.client_errors
    assert all(
        report.client_phases[u] == Phase.COMPLETED.value for u in rnd.config.clients if u != BAD
    )
    _exact_or_abort(rnd, report)
