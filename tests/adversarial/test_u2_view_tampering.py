"""Known issue: a tampered U2 view in the MaskedInputRequest gives a wrong sum.

If the share boxes forwarded to one client are truncated in transit (keeping at
least ``t`` of them), that client masks only with the neighbours whose boxes it got,
while the server believes the client masked with its whole U2 neighbourhood.  The
pairwise masks then do not cancel and the server outputs a wrong sum without
noticing — in both security modes, because server->client messages are not
authenticated by the protocol (deployments run it over TLS, so only the server
itself could do this, and a malicious server can always corrupt its own output).
Found by ``tests/properties/test_stateful_malicious_server.py`` under a
derandomized run.  The fix needs a protocol change (the client reports a digest of
the U2 view it masked with in ``MaskedInput`` and the server excludes a mismatch),
so it is pinned here with a strict xfail that flips when fixed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.masking import messages as m
from secagg.masking.server import ServerPhase
from secagg.sim import ProtocolKind, SecurityMode

from ._harness import Manual, make_round


@pytest.mark.xfail(
    strict=True,
    reason="BUG (known issue, SECURITY.md): a truncated MaskedInputRequest gives a silently "
    "wrong sum; needs the client's U2 digest in MaskedInput",
)
@pytest.mark.parametrize("security", list(SecurityMode))
def test_truncated_share_boxes_never_give_a_wrong_sum(security: SecurityMode) -> None:
    rnd = make_round(
        7, protocol=ProtocolKind.SECAGG_PLUS, neighbors=5, security=security, length=2, seed=0
    )
    run = Manual(rnd)
    run.start()
    victim = 3

    def truncate(u: int, msg: m.Message) -> m.Message:
        if u == victim and isinstance(msg, m.MaskedInputRequest):
            return dataclasses.replace(msg, boxes=msg.boxes[:3])  # still >= t neighbours
        return msg

    for _ in range(12):
        if not run.outbox:
            break
        run.deliver(rewrite=truncate)
    server = run.server
    if server.phase is ServerPhase.FINALIZING:
        server.finalize()
    if server.phase is ServerPhase.COMPLETED:
        np.testing.assert_array_equal(server.result, rnd.expected_sum(server.survivors))
    else:
        assert server.phase is ServerPhase.ABORTED
