"""Generate the known-answer vectors of the RoundConfig wire form.

Run from the repository root::

    python protocols/vectors/generate_round_config.py          # rewrite secagg_round_config.json
    python protocols/vectors/generate_round_config.py --check  # exit 1 if it would change

Every input is fixed here: session ids and graph seeds are SHA-256 of a readable
label, identity keys are Ed25519 keys whose 32-byte private seeds are SHA-256 of
``"identity/<id>"``.  ``cases`` lists valid configs (their fields, readable, and
their canonical bytes); ``rejects`` lists byte strings every decoder must refuse,
each derived from a valid case by one named change.  The layout is
``protocols/wire/secagg.md`` ("RoundConfig").  ``tests/masking/test_config_codec.py``
checks the file against ``RoundConfig`` and against an independent parser written
with ``struct`` only.

Conventions: bytes as lowercase hex.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import struct
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:  # the sibling _files helper, also when loaded by tests
    sys.path.insert(0, str(HERE))

from _files import write_or_check  # noqa: E402

from secagg import __version__  # noqa: E402
from secagg.masking import messages as m  # noqa: E402
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode  # noqa: E402
from secagg.primitives.kdf import PROTOCOL_VERSION  # noqa: E402
from secagg.primitives.sign import SigningKey  # noqa: E402

OUT = HERE / "secagg_round_config.json"


def h(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _identity_public(u: int) -> bytes:
    return SigningKey.from_private_bytes(h(f"identity/{u}")).public


def _configs() -> list[tuple[str, RoundConfig]]:
    ids6 = (1, 2, 3, 4, 5, 6)
    return [
        (
            "secagg, semi-honest, 3 clients",
            RoundConfig(
                session_id=h("session/secagg"),
                protocol=ProtocolKind.SECAGG,
                security=SecurityMode.SEMI_HONEST,
                clients=(7, 9, 1000),
                bits=32,
                length=1000,
                threshold=2,
            ),
        ),
        (
            "secagg+, semi-honest, 6 clients, k=4",
            RoundConfig(
                session_id=h("session/secagg+"),
                protocol=ProtocolKind.SECAGG_PLUS,
                security=SecurityMode.SEMI_HONEST,
                clients=ids6,
                bits=16,
                length=8,
                threshold=3,
                neighbors=4,
                graph_seed=h("graph-seed/secagg+"),
            ),
        ),
        (
            "secagg+, malicious, 6 clients, k=4, identity keys",
            RoundConfig(
                session_id=h("session/secagg+/malicious"),
                protocol=ProtocolKind.SECAGG_PLUS,
                security=SecurityMode.MALICIOUS,
                clients=ids6,
                bits=64,
                length=2**40,
                threshold=3,
                neighbors=4,
                graph_seed=h("graph-seed/secagg+/malicious"),
                identity_keys=tuple((u, _identity_public(u)) for u in ids6),
            ),
        ),
    ]


def _fields(cfg: RoundConfig) -> dict[str, Any]:
    return {
        "session_id": cfg.session_id.hex(),
        "protocol": cfg.protocol.value,
        "security": cfg.security.value,
        "clients": list(cfg.clients),
        "bits": cfg.bits,
        "length": cfg.length,
        "threshold": cfg.threshold,
        "neighbors": cfg.degree,
        "graph_seed": cfg.graph_seed.hex(),
        "identity_keys": {str(u): pk.hex() for u, pk in cfg.identity_keys},
    }


def _records(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, value) records after the 6-byte header (valid input only)."""
    out, pos = [], 6
    while pos < len(data):
        tag, n = struct.unpack_from(">HI", data, pos)
        out.append((tag, data[pos + 6 : pos + 6 + n]))
        pos += 6 + n
    return out


def _join(records: list[tuple[int, bytes]], header: bytes) -> bytes:
    return header + b"".join(struct.pack(">HI", t, len(v)) + v for t, v in records)


def _rejects(cases: list[bytes]) -> list[dict[str, str]]:
    plus, mal = cases[1], cases[2]
    hdr = plus[:6]
    recs = _records(plus)
    by_tag = dict(recs)

    def replaced(tag: int, value: bytes) -> bytes:
        return _join([(t, value if t == tag else v) for t, v in recs], hdr)

    swapped = list(recs)
    swapped[6], swapped[7] = swapped[7], swapped[6]
    clients = by_tag[4]
    unsorted_ids = clients[:4] + clients[8:12] + clients[4:8] + clients[12:]
    out = {
        "empty input": b"",
        "bad magic": b"SACG" + plus[4:],
        "wire version 1": plus[:4] + b"\x00\x01" + plus[6:],
        "truncated (last byte missing)": plus[:-1],
        "one trailing byte": plus + b"\x00",
        "a field missing (identity_keys)": _join(recs[:-1], hdr),
        "a field repeated (bits twice)": _join([*recs[:5], recs[4], *recs[5:]], hdr),
        "tags out of order (neighbors before threshold)": _join(swapped, hdr),
        "unknown tag 11 appended": _join([*recs, (11, b"")], hdr),
        "record length beyond the input": plus[:6] + struct.pack(">HI", 1, 1 << 20) + plus[12:],
        "session_id of 31 bytes": replaced(1, by_tag[1][:31]),
        "unknown protocol code 3": replaced(2, b"\x03"),
        "unknown security code 0": replaced(3, b"\x00"),
        "client ids not ascending": replaced(4, unsorted_ids),
        "client id 0": replaced(4, clients[:4] + b"\x00\x00\x00\x00" + clients[8:]),
        "bits = 0": replaced(5, b"\x00"),
        "bits = 65": replaced(5, b"\x41"),
        "bits field of 2 bytes": replaced(5, b"\x00\x10"),
        "length = 0": replaced(6, bytes(8)),
        "threshold = 1 with n = 6": replaced(7, struct.pack(">I", 1)),
        "threshold above k": replaced(7, struct.pack(">I", 5)),
        "neighbors above n - 1 (not canonical)": replaced(8, struct.pack(">I", 9)),
        "secagg+ without graph_seed": replaced(9, b""),
        "malicious config with a key missing": _join(
            [(t, v if t != 10 else struct.pack(">I", 5) + v[4 + 36 :]) for t, v in _records(mal)],
            hdr,
        ),
        "secagg (complete graph) with a graph_seed (not canonical)": _join(
            [(t, v if t != 9 else h("x")) for t, v in _records(cases[0])], hdr
        ),
    }
    return [{"what": what, "hex": data.hex()} for what, data in out.items()]


def build() -> dict[str, Any]:
    configs = _configs()
    encoded = [cfg.to_bytes() for _, cfg in configs]
    return {
        "description": (
            "RoundConfig wire form: valid configs with their canonical bytes, and byte "
            "strings every decoder must refuse (each one change away from a valid case)."
        ),
        "generator": "protocols/vectors/generate_round_config.py",
        "spec": ["protocols/wire/secagg.md", "protocols/secagg.md"],
        "protocol_version": PROTOCOL_VERSION,
        "wire_version": m.WIRE_VERSION,
        "library_versions": {"secagg": __version__},
        "date": datetime.date.today().isoformat(),
        "identity_keys": "Ed25519 public keys of private seeds SHA-256('identity/<id>')",
        "cases": [
            {"what": what, "fields": _fields(cfg), "hex": data.hex()}
            for (what, cfg), data in zip(configs, encoded, strict=True)
        ],
        "rejects": _rejects(encoded),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    args = ap.parse_args(argv)
    return write_or_check({OUT: build()}, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
