"""One I/O convention for every party (issue #18 item 5): bytes in, message
objects out.

Each party takes the bytes that arrived and returns the messages it sends; every
message carries its routing (``sender``, ``recipient``; the server is party 0) and
its wire form (``to_bytes()``, byte-identical to the package's ``encode``, which
is re-exported next to ``decode``).  The rounds below are driven by one generic
transport loop that only ever calls ``to_bytes()`` and reads ``recipient`` — the
loop a user writes around their own transport.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import secagg.lightsecagg as lsa
import secagg.masking as sm
from secagg.lightsecagg import messages as lm
from secagg.masking import messages as mm
from secagg.phase import Phase
from tests.lightsecagg.harness import expected, make_round
from tests.masking.masking_harness import Harness


def _route(server: Any, clients: dict[int, Any], check: Callable[[Any, bytes], None]) -> None:
    """Move bytes until no party has anything to send; close a silent phase by its
    deadline.  ``check(message, wire)`` sees every message on the wire."""
    pending: list[tuple[int, Any]] = []
    for u, c in clients.items():
        msg = c.start()
        assert (msg.sender, msg.recipient) == (u, 0)
        check(msg, msg.to_bytes())
        pending += server.receive(u, msg.to_bytes())
    while pending or server.collecting is not None:
        if not pending:
            pending = list(server.deadline_passed())
            continue
        replies: list[tuple[int, Any]] = []
        for u, msg in pending:
            assert msg.recipient == u and msg.sender == 0  # the pair repeats the routing
            data = msg.to_bytes()
            check(msg, data)
            for reply in clients[u].receive(data):
                assert (reply.sender, reply.recipient) == (u, 0)
                check(reply, reply.to_bytes())
                replies += server.receive(u, reply.to_bytes())
        pending = replies


def test_the_codecs_are_public_and_to_bytes_is_encode() -> None:
    assert (sm.encode, sm.decode, sm.peek_type) == (mm.encode, mm.decode, mm.peek_type)
    assert (sm.Message, sm.MessageType) == (mm.Message, mm.MessageType)
    assert (lsa.encode, lsa.decode, lsa.MessageType) == (lm.encode, lm.decode, lm.MessageType)


def test_masking_round_through_the_generic_loop() -> None:
    h = Harness.make(5, threshold=3)
    seen: set[sm.MessageType] = set()

    def check(msg: sm.Message, wire: bytes) -> None:
        assert wire == sm.encode(msg)
        assert sm.peek_type(wire) is msg.TYPE
        assert sm.decode(wire).to_bytes() == wire
        seen.add(msg.TYPE)

    _route(h.server, h.clients, check)
    assert h.server.phase is Phase.FINALIZING
    total = h.server.finalize()
    np.testing.assert_array_equal(total, h.expected_sum(h.server.survivors))
    assert sm.MessageType.MASKED_INPUT in seen and sm.MessageType.UNMASKING_RESPONSE in seen


def test_lightsecagg_round_through_the_generic_loop() -> None:
    cfg, xs, clients, server = make_round(5, 12, privacy=1, target=3, seed=4)
    seen: set[lsa.MessageType] = set()

    def check(msg: Any, wire: bytes) -> None:
        assert wire == lsa.encode(msg)
        assert lsa.encode(lsa.decode(wire)) == wire
        seen.add(msg.TYPE)

    _route(server, clients, check)
    assert server.phase is Phase.FINALIZING
    server.finalize()
    assert server.phase is Phase.COMPLETED
    assert np.array_equal(server.result, expected(xs, server.survivors, cfg.bits))
    assert lsa.MessageType.UNMASK_RESPONSE in seen
