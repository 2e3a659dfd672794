"""Fuzz child process: mutated TenSEAL payloads through ``HEContext.load``.

Run as ``python _payload_fuzz_child.py EXAMPLES SEED`` (SEED ``-`` = hypothesis'
derandomized mode).  Run in a subprocess by ``test_he_payload_fuzz.py`` so a
segfault inside TenSEAL is a failed test, not a dead pytest.  Every mutant must
either load (a body mutation that SEAL still accepts) or raise ``DecodeError``;
any other exception exits 2, a crash kills the process (rc < 0).  Prints
``examples=<n> accepted=<a> rejected=<r> reached_tenseal=<t>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from secagg.errors import DecodeError
from secagg.he import ContextKind, HEContext, Preset, generate_keys
from secagg.he import payload as payload_mod

EXAMPLES = int(sys.argv[1])
SEED = sys.argv[2] if len(sys.argv) > 2 else "-"

CTXS = {}
VALID: list[tuple[str, int, bytes]] = []
for preset in (Preset.CKKS_4096, Preset.BFV_4096):
    keys = generate_keys(preset.params, n_threads=1)
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC, n_threads=1)
    CTXS[preset.value] = ctx
    dtype = np.float64 if preset is Preset.CKKS_4096 else np.int64
    for k in (1, 2):
        block = (np.arange(preset.params.slots * k) % 7).reshape(preset.params.slots, k)
        t = ctx.encrypt_columns(block.astype(dtype))
        VALID.append((preset.value, k, HEContext.serialize(t)))
        if k == 2:  # a homomorphic sum serializes like a fresh tensor
            VALID.append((preset.value, k, HEContext.serialize(HEContext.add(t, t))))

STATS = {"examples": 0, "accepted": 0, "rejected": 0, "reached_tenseal": 0}

_real_validate = payload_mod.validate_tensor_payload


@st.composite
def mutants(draw: st.DrawFn) -> tuple[str, int, bytes]:
    name, k, data = draw(st.sampled_from(VALID))
    buf = bytearray(data)
    n_ops = draw(st.integers(1, 3))
    for _ in range(n_ops):
        if not buf:
            break
        hot = draw(st.booleans())
        if hot:
            head = draw(st.integers(0, min(63, len(buf) - 1)))
            tail = len(buf) - 1 - draw(st.integers(0, min(31, len(buf) - 1)))
            pos = draw(st.sampled_from([head, tail]))
        else:
            pos = draw(st.integers(0, len(buf) - 1))
        op = draw(st.sampled_from(["flip", "byte", "truncate", "splice", "insert", "delete"]))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            buf[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del buf[pos:]
        elif op == "splice":
            _, _, other = draw(st.sampled_from(VALID))
            cut = draw(st.integers(0, len(other)))
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del buf[pos : pos + draw(st.integers(1, 8))]
    return name, k, bytes(buf)


@settings(
    max_examples=EXAMPLES,
    database=None,
    deadline=None,
    derandomize=SEED == "-",
    suppress_health_check=list(HealthCheck),
)
@given(mutants())
def fuzz(case: tuple[str, int, bytes]) -> None:
    name, k, data = case
    STATS["examples"] += 1
    params = Preset(name).params
    try:
        _real_validate(data, params, ciphertexts=k, parms_id=CTXS[name].parms_id)
    except DecodeError:
        STATS["rejected"] += 1
        structural = True
    else:
        structural = False
    try:
        CTXS[name].load(data, ciphertexts=k)
    except DecodeError:
        if structural:
            return
        STATS["reached_tenseal"] += 1
        STATS["rejected"] += 1
        return
    except BaseException as exc:  # anything but DecodeError is a bug
        print(f"UNTYPED {type(exc).__name__}: {exc!r} on {name} k={k} len={len(data)}")
        sys.stdout.flush()
        raise SystemExit(2) from None
    assert not structural, "load accepted bytes the validator refused"
    STATS["reached_tenseal"] += 1
    STATS["accepted"] += 1


if __name__ == "__main__":
    for _name, k, data in VALID:  # the genuine payloads pass
        _real_validate(data, Preset(_name).params, ciphertexts=k, parms_id=CTXS[_name].parms_id)
    if SEED != "-":
        fuzz = seed(int(SEED))(fuzz)
    fuzz()
    print(" ".join(f"{key}={v}" for key, v in STATS.items()))
