"""Known-answer vector of one complete round (protocols/vectors/secagg_round.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.server import Server, ServerPhase

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
        if server.phase is ServerPhase.COLLECT_MASKED and server.expected == frozenset(
            DOC["parameters"]["dropped_before_masked_input"]
        ):
            produced += [(u, m.encode(msg).hex()) for u, msg in server.deadline_passed()]
    assert server.phase is ServerPhase.FINALIZING
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
