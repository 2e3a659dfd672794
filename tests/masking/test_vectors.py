"""Known-answer vector of one complete round (protocols/vectors/secagg_round.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server
from secagg.phase import Phase

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
DOC: dict[str, Any] = json.loads((VECTORS / "secagg_round.json").read_text())


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_secagg_round", VECTORS / "generate_secagg_round.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_regenerated_round_is_byte_identical() -> None:
    doc = _generator().build()
    assert doc["config"] == DOC["config"]
    assert len(doc["messages"]) == len(DOC["messages"])
    for got, want in zip(doc["messages"], DOC["messages"], strict=True):
        assert got == want
    assert doc["survivors"] == DOC["survivors"] and doc["sum"] == DOC["sum"]


def _config_from_doc() -> RoundConfig:
    p, c = DOC["parameters"], DOC["config"]
    return RoundConfig(
        session_id=bytes.fromhex(c["session_id"]),
        protocol=ProtocolKind(p["protocol"]),
        security=SecurityMode(p["security"]),
        clients=tuple(p["clients"]),
        bits=p["bits"],
        length=p["length"],
        threshold=p["threshold"],
        neighbors=p["neighbors"],
        graph_seed=bytes.fromhex(c["graph_seed"]),
        identity_keys=tuple(
            (int(u), bytes.fromhex(pk)) for u, pk in c["identity_public_keys"].items()
        ),
    )


def test_server_replay_reproduces_its_messages_and_the_sum() -> None:
    """Independent of the client code: feed the recorded client bytes to a fresh server."""
    cfg = _config_from_doc()
    server = Server(config=cfg)
    produced: list[tuple[int, str]] = []
    recorded = [(x["client"], x["hex"]) for x in DOC["messages"] if x["direction"] == "to_client"]
    for x in DOC["messages"]:
        if x["direction"] != "to_server":
            continue
        out = server.receive(x["client"], bytes.fromhex(x["hex"]))
        produced += [(u, m.encode(msg).hex()) for u, msg in out]
        # the dropped client never answers: close the masked-input round by deadline
        if server.phase is Phase.MASKED_INPUT and server.awaiting == frozenset(
            DOC["parameters"]["dropped_before_masked_input"]
        ):
            produced += [(u, m.encode(msg).hex()) for u, msg in server.deadline_passed()]
    assert server.phase is Phase.FINALIZING
    assert produced == recorded
    total = server.finalize()
    assert [str(int(v)) for v in total] == DOC["sum"]
    assert list(server.survivors) == DOC["survivors"]
    inputs = {int(u): [int(v) for v in xs] for u, xs in DOC["inputs"].items()}
    want = sum(np.array(inputs[u], dtype=np.int64) for u in DOC["survivors"]) % (1 << cfg.bits)
    assert [str(int(v)) for v in want] == DOC["sum"]


def test_every_recorded_message_decodes_canonically() -> None:
    sid = bytes.fromhex(DOC["config"]["session_id"])
    for x in DOC["messages"]:
        data = bytes.fromhex(x["hex"])
        msg = m.decode(data)
        assert msg.TYPE.name == x["type"] and msg.session_id == sid
        assert m.encode(msg) == data


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _info(purpose: str, session_id: bytes, fields: list[bytes]) -> bytes:
    """``encode_info`` written from protocols/primitives.md §1 alone (no secagg import)."""
    out = _lp(b"secagg") + _lp(b"secagg/1") + _lp(session_id) + _lp(purpose.encode())
    return out + len(fields).to_bytes(4, "big") + b"".join(_lp(f) for f in fields)


def test_v2_masked_inputs_unpack_and_bind_their_view_independently() -> None:
    """From the spec alone: each recorded MaskedInput is ``header | bits | length |
    view | packed``; the packed bytes read as one little-endian integer give the
    elements; ``view = SHA-256(encode_info("masked-input-view", sid, (u, IDS(S_u))))``
    with ``S_u`` the senders of the MaskedInputRequest that client received; and the
    elements of the survivors, unpacked this way, are what the server summed."""
    import hashlib

    sid = bytes.fromhex(DOC["config"]["session_id"])
    bits, length = DOC["parameters"]["bits"], DOC["parameters"]["length"]
    senders: dict[int, list[int]] = {}
    masked: dict[int, list[int]] = {}
    for rec in DOC["messages"]:
        raw = bytes.fromhex(rec["hex"])
        assert raw[:2] == (2).to_bytes(2, "big")  # wire version 2
        if rec["type"] == "MASKED_INPUT_REQUEST":
            count = int.from_bytes(raw[44:48], "big")
            step = 4 + 102
            senders[rec["client"]] = [
                int.from_bytes(raw[48 + i * step : 52 + i * step], "big") for i in range(count)
            ]
        if rec["type"] == "MASKED_INPUT":
            u = rec["client"]
            assert raw[44] == bits and int.from_bytes(raw[45:53], "big") == length
            view, packed = raw[53:85], raw[85:]
            assert len(packed) == (length * bits + 7) // 8
            big = int.from_bytes(packed, "little")
            masked[u] = [(big >> (i * bits)) & ((1 << bits) - 1) for i in range(length)]
            assert big >> (length * bits) == 0  # padding bits are zero
            ids = b"".join(v.to_bytes(4, "big") for v in sorted(senders[u]))
            want = hashlib.sha256(
                _info("masked-input-view", sid, [u.to_bytes(8, "big"), ids])
            ).digest()
            assert view == want
    survivors = DOC["survivors"]
    assert set(survivors) <= set(masked)
    # the masked inputs are not the inputs, and the server's running sum of exactly
    # these unpacked vectors is what the recorded round unmasked
    srv = Server(config=_config_from_doc())
    for rec in DOC["messages"]:
        if rec["direction"] != "to_server":
            continue
        if rec["type"] not in ("ADVERTISE_KEYS", "SEED_REVEAL", "SHARE_KEYS", "MASKED_INPUT"):
            break
        srv.receive(rec["client"], bytes.fromhex(rec["hex"]))
    assert srv.phase is Phase.MASKED_INPUT and srv._sum is not None  # waits for the dropout
    total = [sum(masked[u][i] for u in survivors) % (1 << bits) for i in range(length)]
    assert [int(x) % (1 << bits) for x in srv._sum] == total


def _hkdf(ikm: bytes, purpose: str, sid: bytes, fields: list[bytes]) -> bytes:
    """``derive`` written from protocols/primitives.md §1 with cryptography alone."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"secagg/1 hkdf salt",
        info=_info(purpose, sid, fields),
    ).derive(ikm)


def test_v2_graph_seed_step_checks_out_from_the_spec_alone() -> None:
    """The recorded SeedRequest lists U1 with every commitment ``g_v``; the reveals in
    each KeysBroadcast open them (``g_v = HKDF(r_v, "graph-seed-commitment", (v,))``),
    every client got the same reveals and the same view, and the graph key
    ``HKDF(R(U1), "graph-seed", (graph_seed, D1))`` gives, through the Harary
    permutation, the neighborhoods whose keys the KeysBroadcasts carry."""
    import hashlib

    from secagg.masking.graph import all_neighbors

    sid = bytes.fromhex(DOC["config"]["session_id"])
    graph_seed = bytes.fromhex(DOC["config"]["graph_seed"])
    views, reveal_sets, entries = set(), set(), {}
    for rec in DOC["messages"]:
        raw = bytes.fromhex(rec["hex"])
        if rec["type"] == "SEED_REQUEST":
            count = int.from_bytes(raw[44:48], "big")
            view = tuple(
                (
                    int.from_bytes(raw[48 + 36 * i : 52 + 36 * i], "big"),
                    raw[52 + 36 * i : 84 + 36 * i],
                )
                for i in range(count)
            )
            views.add(view)
        if rec["type"] == "KEYS_BROADCAST":
            off, rcount = 48, int.from_bytes(raw[44:48], "big")
            reveals = []
            for _ in range(rcount):
                owner, r, flag = (
                    int.from_bytes(raw[off : off + 4], "big"),
                    raw[off + 4 : off + 36],
                    raw[off + 36],
                )
                off += 37 + 64 * flag
                reveals.append((owner, r))
            reveal_sets.add(tuple(reveals))
            count = int.from_bytes(raw[off : off + 4], "big")
            off += 4
            owners = []
            for _ in range(count):
                owners.append(int.from_bytes(raw[off : off + 4], "big"))
                off += 4 + 4 * 32
                off += 1 + 64 * raw[off]
            entries[rec["client"]] = set(owners)
    assert len(views) == 1 and len(reveal_sets) == 1  # one view, one set of reveals
    (view,), (reveals,) = views, reveal_sets
    assert [v for v, _ in view] == [v for v, _ in reveals]
    for (v, g), (_, r) in zip(view, reveals, strict=True):
        assert _hkdf(r, "graph-seed-commitment", sid, [v.to_bytes(8, "big")]) == g
    ids = b"".join(v.to_bytes(4, "big") for v, _ in view)
    d1 = hashlib.sha256(_info("graph-seed-view", sid, [ids, b"".join(g for _, g in view)])).digest()
    key = _hkdf(b"".join(r for _, r in reveals), "graph-seed", sid, [graph_seed, d1])
    graph = all_neighbors(_config_from_doc(), seed=key)
    u1 = {v for v, _ in view}
    for u, owners in entries.items():
        assert owners == graph[u] & u1
