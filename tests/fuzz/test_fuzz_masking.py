"""Fuzzing the masking wire codec and both state machines with hostile bytes.

Properties (DESIGN rule 4, ``protocols/secagg.md`` §5):

* :func:`messages.decode` returns a message whose re-encoding is byte-identical
  (no second encoding of one message is accepted) or raises ``DecodeError``;
* a client in any phase that receives the bytes either raises ``DecodeError`` and is
  unchanged, or raises ``RemoteProtocolError``/``CryptoError`` and is ABORTED having
  sent nothing, or accepts a well-formed message (e.g. an unauthenticated key in
  semi-honest mode); never another exception;
* the server in any collecting phase raises a typed error and is unchanged, or
  accepts; never another exception, never a half-applied update.

CI runs the default hypothesis profile; ``-m long`` runs the >= 10^5-input job.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from secagg.errors import CryptoError, DecodeError, RemoteProtocolError, SecAggError
from secagg.masking import messages as m
from secagg.phase import Phase
from secagg.primitives.field import ELEMENT_BYTES, P, decode_element
from secagg.sim import ProtocolKind, SecurityMode

from ._count import count
from ._masking_corpus import client_snapshot, server_snapshot, trace
from ._mutate import fuzz_input

LONG = settings(max_examples=15_000, deadline=None, suppress_health_check=list(HealthCheck))
MAL = trace(SecurityMode.MALICIOUS)
SEMI = trace(SecurityMode.SEMI_HONEST, ProtocolKind.SECAGG_PLUS)
ALL = MAL.all_bytes() + SEMI.all_bytes()
HEADERS = sorted({d[:44] for d in ALL})  # version|type|round|session|sender|recipient


def check_decode(data: bytes) -> None:
    count()
    try:
        head: m.MessageType | None = m.peek_type(data)
    except DecodeError:
        head = None
    try:
        packed: m.MaskedInputView | None = m.decode_masked_input(data)
    except DecodeError:
        packed = None
    try:
        msg = m.decode(data)
    except DecodeError:
        assert packed is None  # the packed path accepts exactly what decode accepts
        return
    assert m.encode(msg) == data
    assert head is msg.TYPE
    if isinstance(msg, m.MaskedInput):
        assert packed is not None and packed.view == msg.view
        assert np.array_equal(packed.to_message().vector, msg.vector)
    else:
        assert packed is None


CODEC_INPUT = fuzz_input(ALL, HEADERS)


@given(CODEC_INPUT)
def test_fuzz_decode(data: bytes) -> None:
    check_decode(data)


@pytest.mark.long
@LONG
@given(CODEC_INPUT)
def test_fuzz_decode_long(data: bytes) -> None:
    check_decode(data)


def check_share_plaintext(data: bytes) -> None:
    count()
    try:
        owner, holder, b, s = m.decode_share_plaintext(data)
    except DecodeError:
        return
    assert m.encode_share_plaintext(owner, holder, b, s) == data
    assert 0 <= b < P and 0 <= s < P
    assert decode_element(data[8 : 8 + ELEMENT_BYTES]) == b


PLAIN = [m.encode_share_plaintext(3, 4, 5, 2**256 + 296), m.encode_share_plaintext(1, 2, 0, 7)]


@given(fuzz_input(PLAIN))
def test_fuzz_share_plaintext(data: bytes) -> None:
    check_share_plaintext(data)


@pytest.mark.long
@LONG
@given(fuzz_input(PLAIN))
def test_fuzz_share_plaintext_long(data: bytes) -> None:
    check_share_plaintext(data)


class _ClientBench:
    """One live client per (trace, id, stage), rebuilt only after it changed."""

    def __init__(self) -> None:
        self.live: dict[tuple[int, int, int], object] = {}

    def get(self, tr, u: int, fed: int):  # type: ignore[no-untyped-def]
        key = (id(tr), u, fed)
        c = self.live.get(key)
        if c is None:
            c = self.live[key] = tr.client_at(u, fed)
        return c

    def drop(self, tr, u: int, fed: int) -> None:  # type: ignore[no-untyped-def]
        self.live.pop((id(tr), u, fed), None)


BENCH = _ClientBench()


def _stages(tr):  # type: ignore[no-untyped-def]
    return [(u, fed) for u in tr.round.config.clients[:2] for fed in range(len(tr.to_client(u)))]


CLIENT_CASES = [(tr, u, fed) for tr in (MAL, SEMI) for u, fed in _stages(tr)]


def check_client(case: int, data: bytes) -> None:
    count()
    tr, u, fed = CLIENT_CASES[case % len(CLIENT_CASES)]
    c = BENCH.get(tr, u, fed)
    before = client_snapshot(c)
    try:
        replies = c.receive(data)
    except DecodeError:
        assert client_snapshot(c) == before
        return
    except (RemoteProtocolError, CryptoError):
        BENCH.drop(tr, u, fed)
        if before[0] in (Phase.COMPLETED, Phase.ABORTED):
            assert client_snapshot(c) == before  # terminal: refused, unchanged
        else:
            assert c.phase is Phase.ABORTED
            assert c._held == {} and c._b is None  # secrets wiped
        return
    except SecAggError as exc:  # pragma: no cover - the property failing
        raise AssertionError(f"untyped outcome {type(exc).__name__}: {exc}") from exc
    BENCH.drop(tr, u, fed)
    assert len(replies) <= 1
    for r in replies:
        m.encode(r)  # what it would send is a valid message


def _client_input():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    samples = [
        d for tr in (MAL, SEMI) for u in tr.round.config.clients[:2] for d in tr.to_client(u)
    ]
    return st.tuples(st.integers(0, 10**6), fuzz_input(samples, HEADERS))


CLIENT_INPUT = _client_input()


@given(CLIENT_INPUT)
def test_fuzz_client_every_phase(args: tuple[int, bytes]) -> None:
    check_client(*args)


@pytest.mark.long
@LONG
@given(CLIENT_INPUT)
def test_fuzz_client_every_phase_long(args: tuple[int, bytes]) -> None:
    check_client(*args)


def _server_cases(tr):  # type: ignore[no-untyped-def]
    msgs = tr.to_server()
    out = []
    for i in range(len(msgs)):
        nxt = m.decode(msgs[i][1])
        last_of_phase = i + 1 == len(msgs) or m.decode(msgs[i + 1][1]).TYPE is not nxt.TYPE
        if last_of_phase or i % 3 == 0:
            out.append((tr, i, msgs[i][0]))
    return out


SERVER_CASES = _server_cases(MAL) + _server_cases(SEMI)
SERVERS: dict[tuple[int, int], object] = {}


def check_server(case: int, sender_shift: int, data: bytes) -> None:
    count()
    tr, fed, sender = SERVER_CASES[case % len(SERVER_CASES)]
    if sender_shift % 4 == 0:  # sometimes present the bytes as another client's
        sender = tr.round.config.clients[sender_shift % len(tr.round.config.clients)]
    key = (id(tr), fed)
    s = SERVERS.get(key)
    if s is None:
        s = SERVERS[key] = tr.server_at(fed)
    before = server_snapshot(s)
    try:
        s.receive(sender, data)
    except (DecodeError, RemoteProtocolError, CryptoError):
        assert server_snapshot(s) == before
        return
    except SecAggError as exc:  # pragma: no cover
        raise AssertionError(f"untyped outcome {type(exc).__name__}: {exc}") from exc
    SERVERS.pop(key, None)  # accepted: the server moved on; rebuild next time


def _server_input():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    samples = [d for tr in (MAL, SEMI) for _, d in tr.to_server()]
    return st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), fuzz_input(samples, HEADERS))


SERVER_INPUT = _server_input()


@given(SERVER_INPUT)
def test_fuzz_server_every_phase(args: tuple[int, int, bytes]) -> None:
    check_server(*args)


@pytest.mark.long
@LONG
@given(SERVER_INPUT)
def test_fuzz_server_every_phase_long(args: tuple[int, int, bytes]) -> None:
    check_server(*args)
