"""Subprocess worker: hostile TenSEAL *context* bytes reach TenSEAL's parser.

The TenSEAL blob inside a PUBLIC context envelope is mutated and the envelope's
``key_id`` recomputed (as whoever supplies a context could), so the mutation gets
past the key-id check and TenSEAL itself parses it.  Run in a child process: a
crash must fail the test, not kill the runner.

Usage: ``python _context_worker.py {ckks|bfv} SEED COUNT`` — prints one JSON line
``{"outcomes": {name: count}, "inputs": n}``; an untyped exception exits non-zero.
"""

from __future__ import annotations

import json
import random
import sys
import warnings

warnings.simplefilter("ignore")


def main() -> int:
    from secagg.encoding.codec import Reader, Writer
    from secagg.errors import DecodeError, LocalProtocolError
    from secagg.he import ContextKind, HEContext, Preset, generate_keys
    from secagg.he.keys import key_id_for

    scheme, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = generate_keys(Preset.BFV_4096.params if scheme == "bfv" else Preset.CKKS_4096.params)
    r = Reader(keys.public_context)
    magic, version, kind = r.raw(4), r.u8(), r.u8()
    params, _, public = r.blob(), r.raw(16), r.blob()
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for _ in range(count):
        b = bytearray(public)
        for _ in range(rng.randint(1, 3)):
            n = len(b)
            p = rng.randrange(n) if rng.random() < 0.5 else rng.randrange(min(n, 64))
            op = rng.randrange(4)
            if op == 0:
                b[p] ^= 1 << rng.randrange(8)
            elif op == 1:
                b[p] = rng.randrange(256)
            elif op == 2:
                del b[max(1, p) :]
            else:
                b[p : p + 4] = rng.choice([0, 1, 255, 2**31, 2**32 - 1]).to_bytes(4, "big")
        blob = bytes(b)
        env = (
            Writer()
            .raw(magic)
            .u8(version)
            .u8(kind)
            .blob(params)
            .raw(key_id_for(blob))
            .blob(blob)
            .getvalue()
        )
        try:
            ctx = HEContext.from_bytes(env, kind=ContextKind.PUBLIC)
            assert not ctx.can_decrypt  # whatever loads is a public context
            name = "loaded"
        except (DecodeError, LocalProtocolError) as exc:
            name = type(exc).__name__
        outcomes[name] = outcomes.get(name, 0) + 1
    print(json.dumps({"outcomes": outcomes, "inputs": count}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
