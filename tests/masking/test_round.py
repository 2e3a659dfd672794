"""End-to-end rounds through the state machines (both graphs, both modes, dropouts)."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding.bitpack import pack
from secagg.errors import ParameterError
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, SecurityMode
from secagg.phase import Phase

from .masking_harness import Harness


@pytest.mark.parametrize("protocol", list(ProtocolKind))
@pytest.mark.parametrize("security", list(SecurityMode))
@pytest.mark.parametrize("drop_round", [None, 1, 2, 3, 4])
def test_round_sums_survivors(
    protocol: ProtocolKind, security: SecurityMode, drop_round: int | None
) -> None:
    h = Harness.make(8, protocol=protocol, security=security, neighbors=6, threshold=4)
    drops = {3: drop_round} if drop_round is not None else {}
    h.drive(drops=drops)
    assert h.server.phase is Phase.COMPLETED
    survivors = h.server.survivors
    if drop_round in (1, 2):
        assert 3 not in survivors
    else:
        assert 3 in survivors
    assert len(survivors) == 8 - (drop_round in (1, 2))
    np.testing.assert_array_equal(h.server.result, h.expected_sum(survivors))


def test_dropped_client_masks_are_rebuilt_from_shares() -> None:
    h = Harness.make(10, protocol=ProtocolKind.SECAGG_PLUS, neighbors=4, threshold=2, seed=3)
    h.drive(drops={2: 2, 7: 2})
    assert h.server.survivors == (1, 3, 4, 5, 6, 8, 9, 10)
    # some survivor masked with a dropped client, so s-shares were needed
    kinds = {
        kind
        for u in h.server.survivors
        for msg in h.sent[u]
        if isinstance(msg, m.UnmaskingResponse)
        for _, kind, _ in msg.shares
    }
    assert kinds == {m.ShareKind.SELF_MASK, m.ShareKind.MASK_KEY}
    np.testing.assert_array_equal(h.server.result, h.expected_sum(h.server.survivors))


def test_abort_when_threshold_cannot_be_met_reveals_nothing() -> None:
    h = Harness.make(6, threshold=4)
    h.drive(drops={1: 2, 2: 2, 3: 2})  # 3 masked inputs < t + 1
    assert h.server.phase is Phase.ABORTED
    assert h.server.result is None
    for u in h.config.clients:
        assert m.MessageType.UNMASKING_RESPONSE not in h.sent_types(u)
    for u in (4, 5, 6):
        assert h.clients[u].phase is Phase.ABORTED


def test_abort_after_unmasking_dropouts_outputs_nothing() -> None:
    h = Harness.make(6, threshold=4)
    h.drive(drops={1: 4, 2: 4, 3: 4})  # only 3 holders answer; 4 shares needed
    assert h.server.phase is Phase.ABORTED
    assert h.server.result is None


def test_64_bit_inputs() -> None:
    h = Harness.make(5, bits=48, length=5)
    h.drive(drops={5: 2})
    np.testing.assert_array_equal(h.server.result, h.expected_sum(h.server.survivors))
    assert h.server.result.dtype == np.uint64


def test_masked_input_chunks_equal_message() -> None:
    h = Harness.make(4, length=37)
    h.drive(stop=Phase.MASKED_INPUT, hold=2)
    c = h.clients[2]
    full = next(x for x in h.sent[2] if isinstance(x, m.MaskedInput)).vector
    chunks = list(c.masked_input_chunks(8))
    assert [len(x) for x in chunks] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(chunks), full)
    sent = next(x for x in h.sent[2] if isinstance(x, m.MaskedInput))
    assert isinstance(sent, m.MaskedInput)
    prefix = m.masked_input_prefix(
        session_id=h.config.session_id, sender=2, bits=h.config.bits, length=37, view=sent.view
    )
    streamed = prefix + b"".join(pack(x, h.config.bits) for x in c.masked_input_chunks(16))
    assert streamed == m.encode(sent)
    assert b"".join(c.masked_input_stream(16)) == m.encode(sent)
    with pytest.raises(ParameterError):  # chunks must start on a byte boundary
        list(c.masked_input_chunks(12))
    # y differs from x (it is masked)
    assert not np.array_equal(full, h.inputs[2])
