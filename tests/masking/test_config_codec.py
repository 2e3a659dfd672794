"""RoundConfig wire form: known answers, an independent parser, round trips, mutations."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import DecodeError
from secagg.masking import config as config_mod
from secagg.masking import messages as m
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.primitives.sign import SigningKey

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
DOC: dict[str, Any] = json.loads((VECTORS / "secagg_round_config.json").read_text())


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "generate_round_config", VECTORS / "generate_round_config.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _from_fields(f: dict[str, Any]) -> RoundConfig:
    return RoundConfig(
        session_id=bytes.fromhex(f["session_id"]),
        protocol=ProtocolKind(f["protocol"]),
        security=SecurityMode(f["security"]),
        clients=tuple(f["clients"]),
        bits=f["bits"],
        length=f["length"],
        threshold=f["threshold"],
        neighbors=f["neighbors"],
        graph_seed=bytes.fromhex(f["graph_seed"]),
        identity_keys=tuple((int(u), bytes.fromhex(k)) for u, k in f["identity_keys"].items()),
    )


def _independent_parse(data: bytes) -> dict[str, Any]:
    """The layout of protocols/wire/secagg.md (RoundConfig), with struct only."""
    assert data[:4] == b"SACF"
    (version,) = struct.unpack_from(">H", data, 4)
    assert version == m.WIRE_VERSION
    pos, values = 6, {}
    while pos < len(data):
        tag, n = struct.unpack_from(">HI", data, pos)
        values[tag] = data[pos + 6 : pos + 6 + n]
        pos += 6 + n
    assert pos == len(data) and sorted(values) == list(range(1, 11))

    def ids(v: bytes) -> list[int]:
        (count,) = struct.unpack_from(">I", v)
        assert len(v) == 4 + 4 * count
        return list(struct.unpack_from(f">{count}I", v, 4))

    (count,) = struct.unpack_from(">I", values[10])
    assert len(values[10]) == 4 + 36 * count
    keys = {
        str(struct.unpack_from(">I", values[10], 4 + 36 * i)[0]):
            values[10][8 + 36 * i : 40 + 36 * i].hex()
        for i in range(count)
    }
    return {
        "session_id": values[1].hex(),
        "protocol": {1: "secagg", 2: "secagg+"}[values[2][0]],
        "security": {1: "semi-honest", 2: "malicious"}[values[3][0]],
        "clients": ids(values[4]),
        "bits": values[5][0],
        "length": struct.unpack(">Q", values[6])[0],
        "threshold": struct.unpack(">I", values[7])[0],
        "neighbors": struct.unpack(">I", values[8])[0],
        "graph_seed": values[9].hex(),
        "identity_keys": keys,
    }


def test_vector_file_is_what_the_generator_writes() -> None:
    assert _generator().main(["--check"]) == 0  # a fresh generation equals the file
    assert DOC["protocol_version"] and DOC["wire_version"] == m.WIRE_VERSION


@pytest.mark.parametrize("case", DOC["cases"], ids=lambda c: c["what"])
def test_known_answer(case: dict[str, Any]) -> None:
    cfg = _from_fields(case["fields"])
    data = bytes.fromhex(case["hex"])
    assert cfg.to_bytes() == data
    assert RoundConfig.from_bytes(data) == cfg
    assert _independent_parse(data) == case["fields"]


def test_vectors_cover_identity_keys_in_malicious_mode() -> None:
    mal = [c for c in DOC["cases"] if c["fields"]["security"] == "malicious"]
    assert mal
    assert all(len(c["fields"]["identity_keys"]) == len(c["fields"]["clients"]) for c in mal)


@pytest.mark.parametrize("case", DOC["rejects"], ids=lambda c: c["what"])
def test_every_recorded_reject_is_a_decode_error(case: dict[str, str]) -> None:
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(bytes.fromhex(case["hex"]))


def test_codec_has_one_row_per_field_in_order() -> None:
    """Adding a RoundConfig field without a codec row (or a spec line) fails here."""
    rows = config_mod._FIELDS
    assert [f.name for f in rows] == [f.name for f in dataclasses.fields(RoundConfig)]
    assert [f.tag for f in rows] == list(range(1, len(rows) + 1))
    spec = (Path(__file__).resolve().parents[2] / "protocols/wire/secagg.md").read_text()
    for f in rows:
        assert f"| {f.tag} | `{f.name}` |" in spec, f.name
    assert set(config_mod._PROTOCOL_CODES) == set(ProtocolKind)
    assert set(config_mod._SECURITY_CODES) == set(SecurityMode)


def test_non_bytes_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes("SACF")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        RoundConfig.from_bytes(bytes.fromhex(DOC["cases"][0]["hex"])[:6])


_KEYS = {u: SigningKey.from_private_bytes(bytes([u]) * 32).public for u in range(1, 41)}


@st.composite
def configs(draw: st.DrawFn) -> RoundConfig:
    ids = draw(st.lists(st.integers(1, 40), min_size=2, max_size=12, unique=True))
    n = len(ids)
    protocol = draw(st.sampled_from(ProtocolKind))
    security = draw(st.sampled_from(SecurityMode))
    k_min = 2 if n > 2 else 1  # t >= 2 when n > 2, and t <= k
    k = n - 1 if protocol is ProtocolKind.SECAGG else draw(st.integers(k_min, n - 1))
    lo = max(k // 2 + 1 if security is SecurityMode.MALICIOUS else 1, k_min)
    t = draw(st.integers(lo, k))
    return RoundConfig(
        session_id=draw(st.binary(min_size=32, max_size=32)),
        protocol=protocol,
        security=security,
        clients=tuple(ids),
        bits=draw(st.integers(1, 64)),
        length=draw(st.integers(1, 2**64 - 1)),
        threshold=t,
        neighbors=k,
        graph_seed=draw(st.binary(min_size=32, max_size=32)),
        identity_keys=tuple((u, _KEYS[u]) for u in ids)
        if security is SecurityMode.MALICIOUS or draw(st.booleans())
        else (),
    )


@given(configs())
def test_round_trip_is_exact_and_canonical(cfg: RoundConfig) -> None:
    data = cfg.to_bytes()
    back = RoundConfig.from_bytes(data)
    assert back == cfg and back.to_bytes() == data


@given(configs(), st.data())
def test_any_mutation_is_refused_or_is_another_canonical_config(
    cfg: RoundConfig, data: st.DataObject
) -> None:
    """Flip, drop, insert or truncate bytes: a typed DecodeError, or (when the change
    happens to hit a free value, e.g. a seed byte) a *different* config whose
    canonical bytes are exactly the mutated bytes.  Never a config that re-encodes
    differently, never another exception."""
    good = cfg.to_bytes()
    kind = data.draw(st.sampled_from(["flip", "drop", "insert", "truncate"]))
    i = data.draw(st.integers(0, len(good) - 1))
    if kind == "flip":
        bad = good[:i] + bytes([good[i] ^ data.draw(st.integers(1, 255))]) + good[i + 1 :]
    elif kind == "drop":
        bad = good[:i] + good[i + 1 :]
    elif kind == "insert":
        bad = good[:i] + bytes([data.draw(st.integers(0, 255))]) + good[i:]
    else:
        bad = good[:i]
    try:
        got = RoundConfig.from_bytes(bad)
    except DecodeError:
        return
    assert got != cfg and got.to_bytes() == bad
