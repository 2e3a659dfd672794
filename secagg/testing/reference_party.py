"""Our reference client and server behind the conformance line protocol.

Run as ``python -m secagg.testing.reference_party``: it reads commands on stdin
and answers on stdout as ``protocols/conformance.md`` describes, playing the role
named in the ``hello`` line.  ``secagg conformance --client 'python -m
secagg.testing.reference_party'`` must pass every check; the test suite also wraps
it with deliberate bugs to show the harness catches them.  It is also the worked
example for anyone writing an adapter around their own implementation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO, cast

import numpy as np

from secagg.errors import SecAggError
from secagg.masking.client import Client
from secagg.masking.config import RoundConfig
from secagg.primitives.prg import UIntArray, dtype_for_bits
from secagg.primitives.sign import SigningKey
from secagg.testing.rounds import LocalClient, LocalServer, ServerStep, Step, reproducible_rng

__all__ = ["PROTOCOL", "main", "serve"]

#: The greeting both sides use (``protocols/conformance.md``).
PROTOCOL = "secagg-conformance/1"


def _fields(words: list[str]) -> dict[str, str]:
    out = {}
    for w in words:
        key, sep, value = w.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {w!r}")
        out[key] = value
    return out


def _client_lines(st: Step) -> list[str]:
    lines = [f"send {_hex(x)}" for x in st.messages]
    lines.append(st.status + (f" {_one_line(st.reason)}" if st.status != "ok" else ""))
    return lines


def _server_lines(st: ServerStep) -> list[str]:
    lines = [f"send {r} {_hex(x)}" for r, x in st.messages]
    if st.total is not None:
        lines.append("result " + ",".join(str(v) for v in st.total))
    reason = f" {_one_line(st.reason)}" if st.status in ("refused", "aborted") else ""
    lines.append(st.status + reason)
    return lines


def _hex(data: bytes) -> str:
    """Bytes on a line: lowercase hex, ``-`` for no bytes."""
    return data.hex() or "-"


def _unhex(text: str) -> bytes:
    return b"" if text == "-" else bytes.fromhex(text)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "-"


def make_client(f: dict[str, str]) -> LocalClient:
    """The client a ``round`` line describes (see ``protocols/conformance.md``)."""
    cfg = RoundConfig.from_bytes(bytes.fromhex(f["config"]))
    values = [int(v) for v in f["input"].split(",")] if f.get("input") else []
    x = cast(UIntArray, np.array(values, dtype=dtype_for_bits(cfg.bits)))
    ident = f.get("identity", "-")
    return LocalClient(Client(
        config=cfg,
        client_id=int(f["id"]),
        input_vector=x,
        rng=reproducible_rng(bytes.fromhex(f["seed"]), f.get("label", "root")),
        identity_key=SigningKey.from_private_bytes(bytes.fromhex(ident)) if ident != "-" else None,
    ))


def serve(inp: TextIO, out: TextIO, *,
          client_factory: Callable[[dict[str, str]], LocalClient] = make_client) -> int:
    """Answer commands from ``inp`` on ``out`` until ``quit`` or end of input."""
    role = ""
    client: LocalClient | None = None
    server: LocalServer | None = None

    def say(lines: list[str]) -> None:
        out.write("\n".join(lines) + "\n")
        out.flush()

    for raw in inp:
        words = raw.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "quit":
                return 0
            if cmd == "hello":
                if not args or args[0] != PROTOCOL:
                    say([f"error unsupported protocol {args[:1]}"])
                    continue
                role = _fields(args[1:]).get("role", "")
                say(["ok"] if role in ("client", "server") else ["error unknown role"])
            elif cmd == "round" and role == "client":
                client = client_factory(_fields(args))
                say(["ok"])
            elif cmd == "round" and role == "server":
                server = LocalServer(RoundConfig.from_bytes(bytes.fromhex(_fields(args)["config"])))
                say(["ok"])
            elif cmd == "start" and client is not None:
                say(_client_lines(client.start()))
            elif cmd == "deliver" and client is not None and len(args) == 1:
                say(_client_lines(client.deliver(_unhex(args[0]))))
            elif cmd == "deliver" and server is not None and len(args) == 2:
                say(_server_lines(server.deliver(int(args[0]), _unhex(args[1]))))
            elif cmd == "deadline" and server is not None:
                say(_server_lines(server.deadline()))
            else:
                say([f"error unexpected command {cmd!r} for role {role or '-'}"])
        except (SecAggError, ValueError, KeyError) as exc:
            say([f"error {_one_line(f'{type(exc).__name__}: {exc}')}"])
    return 0


def main() -> int:
    return serve(sys.stdin, sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
