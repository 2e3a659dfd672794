"""Subprocess worker: a registered client signs hostile TenSEAL payloads and the HE
server receives them.  Run in a child process because a crash inside TenSEAL/SEAL
(a segfault) would take the test runner down with it.

Usage: ``python _payload_worker.py {ckks|bfv} SEED COUNT`` — prints one JSON line
``{"outcomes": {name: count}, "inputs": n}``; any untyped exception or assertion
failure exits non-zero, a segfault exits with -11.
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.simplefilter("ignore")


def _wire(envelopes):
    """The wire bytes of the envelopes a party returned (bytes in, messages out)."""
    return [e.to_bytes() for e in envelopes]


def mutations(payload: bytes, rng: random.Random, count: int):  # type: ignore[no-untyped-def]
    # deterministic first: the top-level protobuf tag of the first field rewritten
    for tag in (0x1A, 0x22, 0x2A):
        yield bytes([tag]) + payload[1:]
    for _ in range(count - 3):
        b = bytearray(payload)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(7)
            n = len(b)
            if n == 0:
                b = bytearray(payload[:1])
                n = 1
            p = rng.randrange(n) if rng.random() < 0.5 else rng.randrange(min(n, 64))
            if op == 0:
                b[p] ^= 1 << rng.randrange(8)
            elif op == 1:
                b[p] = rng.randrange(256)
            elif op == 2:
                del b[max(1, p) :]
            elif op == 3:
                b[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op == 4:
                del b[p : p + rng.randint(1, 32)]
            elif op == 5:
                b[p:p] = b[p : p + rng.randint(1, 32)]
            else:
                b[p : p + 4] = rng.choice([0, 1, 255, 2**31, 2**32 - 1]).to_bytes(4, "big")
        if b:
            yield bytes(b)


def main() -> int:
    import numpy as np
    from adversarial.test_a8_he import _resign, _round, _x

    from secagg.errors import DecodeError
    from secagg.he import HEServer, Preset, decode_envelope, generate_keys

    scheme, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = generate_keys(Preset.BFV_4096.params if scheme == "bfv" else Preset.CKKS_4096.params)
    rnd = _round(keys)
    x = np.arange(100) % 5 if scheme == "bfv" else _x(1)
    (env,) = _wire(rnd.clients[1].encrypt(x))
    payload = decode_envelope(env).payload

    def fresh() -> HEServer:
        return HEServer(
            session=rnd.session, public_context=keys.public_context, signing_key=rnd.server_key
        )

    server = fresh()
    outcomes: dict[str, int] = {}
    n = 0
    for data in mutations(payload, random.Random(seed), count):
        n += 1
        before = server.state_digest()
        try:
            server.receive(_resign(env, rnd.signing[1], payload=data))
            name = "accepted"  # a parsable ciphertext: the client's own garbage
            server = fresh()
        except DecodeError:
            assert server.state_digest() == before
            name = "DecodeError"
        outcomes[name] = outcomes.get(name, 0) + 1
    print(json.dumps({"outcomes": outcomes, "inputs": n}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
