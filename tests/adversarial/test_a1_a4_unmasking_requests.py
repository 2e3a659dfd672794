"""Attacks 1 and 4: a malicious server asks for more than the protocol allows in
the unmasking round.

1. both the self-mask share and the mask-key share of one client (in one request,
   or by asking twice);
4. fewer than ``t`` survivors, or a survivor set ``U3`` that shrinks/changes between
   the consistency round and the unmasking round.

Outcome asserted each time: the honest clients refuse (move to ABORTED with a
typed error), send no UnmaskingResponse, and the recorded wire traffic holds no
share that the protocol did not allow (``assert_nothing_secret_left``).
"""

from __future__ import annotations

import dataclasses

import pytest

from secagg.errors import RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.abort import AbortReason
from secagg.phase import Phase
from secagg.sim import SecurityMode

from ._harness import Manual, assert_nothing_secret_left, make_round

MODES = [SecurityMode.SEMI_HONEST, SecurityMode.MALICIOUS]


def _unmask_rewrite(fn):  # type: ignore[no-untyped-def]
    def hook(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.UnmaskingRequest):
            return fn(u, msg)
        return msg

    return hook


@pytest.mark.parametrize("security", MODES)
def test_a1_target_listed_as_survivor_and_dropped_gets_nothing(security: SecurityMode) -> None:
    rnd = make_round(7, security=security)
    target = 3

    def both(u: int, msg: m.UnmaskingRequest) -> m.UnmaskingRequest:
        return dataclasses.replace(msg, dropped=tuple(sorted({*msg.dropped, target})))

    report = rnd.run(server_hook=_unmask_rewrite(both))
    assert report.aborted and report.total is None
    others = [u for u in rnd.config.clients if u != target]
    for u in others:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []
        assert report.client_phases[u] == Phase.ABORTED.value
        assert "both as survivor and as dropped" in report.client_errors[u]
    assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=rnd.t)


@pytest.mark.parametrize("security", MODES)
def test_a1_second_request_flipping_target_to_dropped_is_refused(security: SecurityMode) -> None:
    rnd = make_round(6, security=security)
    run = Manual(rnd)
    run.start()
    while not any(isinstance(m.decode(d), m.UnmaskingRequest) for _, d in run.outbox):
        run.deliver()
    requests = dict(run.outbox)
    holder, target = 1, 4
    first = m.decode(requests[holder])
    assert isinstance(first, m.UnmaskingRequest) and target in first.survivors
    (reply,) = run.to_client(holder, requests[holder])
    answer = m.decode(reply)
    assert isinstance(answer, m.UnmaskingResponse)
    assert (target, m.ShareKind.SELF_MASK) in [(o, k) for o, k, _ in answer.shares]
    second = dataclasses.replace(
        first,
        survivors=tuple(v for v in first.survivors if v != target),
        dropped=tuple(sorted({*first.dropped, target})),
    )
    assert run.to_client(holder, m.encode(second)) == []
    assert isinstance(run.client_errors[holder], RemoteProtocolError)
    assert run.clients[holder].phase is Phase.COMPLETED
    assert_nothing_secret_left(rnd.recorder, [holder], t=rnd.t)


@pytest.mark.parametrize("security", MODES)
def test_a4_fewer_than_t_survivors_claimed_gets_nothing(security: SecurityMode) -> None:
    rnd = make_round(7, security=security)
    t = rnd.t

    def shrink(u: int, msg: m.UnmaskingRequest) -> m.UnmaskingRequest:
        keep = tuple(sorted({u, *[v for v in msg.survivors if v != u][: t - 2]}))
        assert len(keep) == t - 1
        gone = tuple(sorted(set(msg.survivors) - set(keep) | set(msg.dropped)))
        return dataclasses.replace(msg, survivors=keep, dropped=gone, signatures=())

    report = rnd.run(server_hook=_unmask_rewrite(shrink))
    assert report.aborted
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []
        assert report.client_phases[u] == Phase.ABORTED.value
    assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=t)


def test_a4_honest_server_aborts_before_unmasking_when_u3_below_t_plus_1() -> None:
    rnd = make_round(7)
    t = rnd.t
    dropped = list(rnd.config.clients)[: 7 - t]  # |U3| = t < t + 1
    report = rnd.run(dropouts={Phase.MASKED_INPUT: dropped})
    assert report.aborted and report.total is None
    assert rnd.recorder.abort_codes() == {AbortReason.TOO_FEW_MASKED_INPUTS}
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []


def test_a4_u3_that_shrinks_after_the_consistency_check_is_refused() -> None:
    rnd = make_round(7, security=SecurityMode.MALICIOUS)
    target = 5

    def shrink(u: int, msg: m.UnmaskingRequest) -> m.UnmaskingRequest:
        return dataclasses.replace(
            msg,
            survivors=tuple(v for v in msg.survivors if v != target),
            dropped=tuple(sorted({*msg.dropped, target})),
        )

    report = rnd.run(server_hook=_unmask_rewrite(shrink))
    assert report.aborted
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []
        if u != target:
            assert "differs from the one I signed" in report.client_errors[u]
    assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=rnd.t)


def test_a4_u3_that_grows_after_the_consistency_check_is_refused() -> None:
    rnd = make_round(7, security=SecurityMode.MALICIOUS)
    late = 6  # dropped before the masked input; the server later claims it survived

    def grow(u: int, msg: m.UnmaskingRequest) -> m.UnmaskingRequest:
        return dataclasses.replace(
            msg,
            survivors=tuple(sorted({*msg.survivors, late})),
            dropped=tuple(v for v in msg.dropped if v != late),
        )

    report = rnd.run(server_hook=_unmask_rewrite(grow), dropouts={Phase.MASKED_INPUT: [late]})
    assert report.aborted
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []
    assert_nothing_secret_left(rnd.recorder, rnd.config.clients, t=rnd.t)


def test_a4_consistency_request_below_t_is_not_signed() -> None:
    rnd = make_round(7, security=SecurityMode.MALICIOUS)
    t = rnd.t

    def small(u: int, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ConsistencyRequest):
            keep = tuple(sorted({u, *[v for v in msg.survivors if v != u][: t - 2]}))
            return dataclasses.replace(msg, survivors=keep)
        return msg

    report = rnd.run(server_hook=small)
    assert report.aborted
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.ConsistencySignature) == []
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []


def test_a4_forged_or_missing_consistency_signatures_are_refused() -> None:
    rnd = make_round(7, security=SecurityMode.MALICIOUS)

    def strip(u: int, msg: m.UnmaskingRequest) -> m.UnmaskingRequest:
        # keep t_sig - 1 genuine signatures and forge one
        sigs = list(msg.signatures)[: rnd.config.signature_threshold - 1]
        forged = [(v, bytes(64)) for v in msg.survivors if v not in dict(sigs)][:1]
        return dataclasses.replace(msg, signatures=tuple(sorted(sigs + forged)))

    report = rnd.run(server_hook=_unmask_rewrite(strip))
    assert report.aborted
    for u in rnd.config.clients:
        assert rnd.recorder.of_type(u, m.UnmaskingResponse) == []
        assert "CryptoError" in report.client_errors[u]
