"""The mod parses a round's setup once per process: equal bytes, one RoundSetup;
bytes that do not decode are refused every time and never cached."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("flwr")

from secagg.errors import DecodeError
from secagg.integrations.flower import SecAggPlusWorkflow
from secagg.integrations.flower import mod as flower_mod
from secagg.integrations.flower._wire import decode_setup, encode_setup


def _setup_bytes(nodes: tuple[int, ...]) -> bytes:
    wf = SecAggPlusWorkflow(None, None, clipping_range=4.0)
    return encode_setup(wf._setup(nodes, [np.zeros(5, dtype=np.float32)]))


def test_equal_setup_bytes_share_one_parse_and_the_cache_is_bounded() -> None:
    data = _setup_bytes((11, 12, 13, 14))
    first = flower_mod._setup_of(data)
    assert first == decode_setup(data)
    assert flower_mod._setup_of(bytes(bytearray(data))) is first  # equal bytes, same object
    others = [_setup_bytes((21 + i, 31 + i, 41 + i)) for i in range(flower_mod._SETUP_CACHE_SIZE)]
    for o in others:
        assert flower_mod._setup_of(o) == decode_setup(o)
    assert len(flower_mod._SETUP_CACHE) <= flower_mod._SETUP_CACHE_SIZE
    assert data not in flower_mod._SETUP_CACHE  # the oldest went first
    assert flower_mod._setup_of(data) == first  # parsed again, same content


def test_undecodable_setup_is_refused_every_time_and_not_cached() -> None:
    bad = b'{"v": 1, "protocol": "nope"'
    for _ in range(2):
        with pytest.raises(DecodeError):
            flower_mod._setup_of(bad)
    assert bad not in flower_mod._SETUP_CACHE
