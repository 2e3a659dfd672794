"""The reference party with one deliberate bug, for the conformance self-test.

``python tests/testing/_broken_party.py BUG`` with BUG one of:

* ``kdf-label`` — the pairwise-mask seeds use a wrong HKDF label;
* ``mask-sign`` — the pairwise masks are applied with the opposite sign;
* ``both-shares`` — answers an UnmaskingRequest that names a survivor as dropped
  too, revealing that survivor's mask-key share.

Each must fail the conformance checks that cover it (tests/testing/test_conformance.py).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from secagg.masking import _common, _plane
from secagg.masking import client as client_mod
from secagg.masking import messages as m
from secagg.primitives.kdf import info_prefix
from secagg.testing import reference_party


def wrong_kdf_label() -> None:
    real = _plane.labels

    def labels(session_id: bytes) -> _plane.RoundLabels:
        lab = real(session_id)
        return dataclasses.replace(
            lab, pairwise_seed=info_prefix("pairwise-mask-seed-v0", bytes(session_id), 2))

    _plane.labels = labels  # type: ignore[assignment]


def wrong_mask_sign() -> None:
    real = _common.mask_sign
    _common.mask_sign = lambda u, v: -real(u, v)  # type: ignore[assignment]


def accept_both_shares() -> None:
    real = client_mod.Client._on_unmasking

    def on_unmasking(self: client_mod.Client, msg: m.Message) -> list[m.Message]:
        assert isinstance(msg, m.UnmaskingRequest)
        both = set(msg.survivors) & set(msg.dropped)
        held = dict(self._held)
        honest = dataclasses.replace(
            msg, dropped=tuple(v for v in msg.dropped if v not in both))
        out = real(self, honest)
        reply = out[0]
        assert isinstance(reply, m.UnmaskingResponse)
        shares = tuple(
            (o, m.ShareKind.MASK_KEY, held[o][1]) if o in both else (o, k, y)
            for o, k, y in reply.shares
        )
        return [dataclasses.replace(reply, shares=shares)]

    client_mod.Client._on_unmasking = on_unmasking  # type: ignore[method-assign]


BUGS = {"kdf-label": wrong_kdf_label, "mask-sign": wrong_mask_sign,
        "both-shares": accept_both_shares}

if __name__ == "__main__":
    BUGS[sys.argv[1]]()
    sys.exit(reference_party.main())
