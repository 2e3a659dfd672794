"""Loading helpers for ``protocols/vectors/*.json``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "vectors"
FILES = (
    "prg.json",
    "kdf.json",
    "x25519.json",
    "shamir.json",
    "aead.json",
    "ed25519.json",
    "rand.json",
)


@cache
def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return doc


def field_value(f: dict[str, str]) -> bytes | str | int:
    (kind, value), = f.items()
    if kind == "int":
        return int(value)
    if kind == "str":
        return value
    if kind == "bytes":
        return bytes.fromhex(value)
    raise AssertionError(f"unknown field tag {kind}")
