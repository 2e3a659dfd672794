"""Fuzzed LightSecAgg messages: typed errors only, and a server that rejects a
message is left exactly as it was (a client that cannot decode one, too)."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import DecodeError, SecAggError
from secagg.lightsecagg import Phase
from secagg.lightsecagg import messages as m
from tests.lightsecagg.harness import make_round


def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(("flip", "truncate", "extend", "replace", "random")))
    b = bytearray(data)
    if kind == "flip" and b:
        i = draw(st.integers(0, len(b) - 1))
        b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        b = b[: draw(st.integers(0, max(0, len(b) - 1)))]
    elif kind == "extend":
        b += draw(st.binary(min_size=1, max_size=8))
    elif kind == "replace" and b:
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.integers(0, 255))
    else:
        b = bytearray(draw(st.binary(max_size=64)))
    return bytes(b)


def _prepared(phase_index: int):
    """A server waiting in phase ``phase_index`` with client 1's valid message for it
    held back, and every client's state after the previous phase."""
    cfg, _xs, clients, server = make_round(4, 6, privacy=1, target=3, seed=9)
    held: bytes | None = None
    out: list[tuple[int, m.Message]] = []
    frames = {u: m.encode(c.start()) for u, c in clients.items()}
    for step in range(phase_index + 1):
        if step == phase_index:
            held = frames[1]
            for u, f in frames.items():
                if u != 1:
                    out += server.receive(u, f)
            return cfg, clients, server, held, out
        for u, f in frames.items():
            out += server.receive(u, f)
        frames = {}
        for u, msg in out:
            (r,) = clients[u].receive(m.encode(msg))
            frames[u] = m.encode(r)
        out = []
    raise AssertionError


def _snapshot(server):
    d = {k: copy.deepcopy(v) for k, v in vars(server).items() if not isinstance(v, np.ndarray)
         and k != "config"} if hasattr(server, "__dict__") else {}
    return server.phase, server.sets(), d, (None if server._sum is None else server._sum.copy())


@given(st.integers(0, 3), st.data())
def test_server_rejects_fuzzed_client_messages_without_changing_state(phase_index, data):
    _cfg, _clients, server, held, _ = _prepared(phase_index)
    bad = _mutate(held, data.draw)
    before = _snapshot(server)
    try:
        server.receive(1, bad)
    except SecAggError:
        after = _snapshot(server)
        assert after[0] is before[0] and after[1] == before[1]
        assert str(after[2]) == str(before[2])
        assert (before[3] is None and after[3] is None) or np.array_equal(before[3], after[3])
    except Exception as exc:
        raise AssertionError(f"untyped {type(exc).__name__}: {exc}") from exc


@given(st.integers(0, 3), st.data())
def test_server_rejects_a_message_in_the_wrong_name(phase_index, data):
    _cfg, _clients, server, held, _ = _prepared(phase_index)
    sender = data.draw(st.sampled_from((2, 3, 4, 99)))  # header says 1
    before = _snapshot(server)
    try:
        server.receive(sender, held)
    except SecAggError:
        pass
    else:
        raise AssertionError("a frame under another sender's name was accepted")
    assert _snapshot(server)[1] == before[1]


@given(st.integers(0, 2), st.data())
def test_client_rejects_fuzzed_server_messages_with_typed_errors(phase_index, data):
    _cfg, clients, server, held, out = _prepared(phase_index)
    # the server message client 2 is waiting for in this phase
    out = server.receive(1, held)  # close the phase: the server's next messages
    msgs = dict(out)
    assert 2 in msgs
    good = m.encode(msgs[2])
    c = clients[2]
    phase0 = c.phase
    bad = _mutate(good, data.draw)
    try:
        c.receive(bad)
    except DecodeError:
        assert c.phase is phase0  # undecodable: nothing changed
    except SecAggError:
        assert c.phase is Phase.ABORTED
    except Exception as exc:
        raise AssertionError(f"untyped {type(exc).__name__}: {exc}") from exc


def test_duplicate_and_out_of_phase_messages_are_refused():
    _cfg, _clients, server, held, _ = _prepared(2)
    server.receive(1, held)
    assert server.phase is Phase.UNMASKING
    try:
        server.receive(1, held)
    except SecAggError:
        pass
    else:
        raise AssertionError("a masked input outside its phase was accepted")


def test_server_refuses_a_low_order_key_so_no_honest_peer_aborts():
    _cfg, _clients, server, held, _ = _prepared(0)
    adv = m.decode(held)
    for bad in (bytes(32), bytes([1]) + bytes(31)):  # order-1/2 points
        forged = m.encode(m.AdvertiseKey(session_id=adv.session_id, sender=1, recipient=0,
                                         public_key=bad))
        try:
            server.receive(1, forged)
        except SecAggError:
            pass
        else:
            raise AssertionError("a low-order key was accepted")
    assert server.sets()["U1"] == (2, 3, 4)
    server.receive(1, held)  # the real key is still welcome
    assert server.phase is Phase.SHARE_KEYS
