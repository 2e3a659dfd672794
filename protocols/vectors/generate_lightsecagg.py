"""Generate the LightSecAgg known-answer vectors.

Run from the repository root::

    python protocols/vectors/generate_lightsecagg.py          # rewrite both files
    python protocols/vectors/generate_lightsecagg.py --check  # exit 1 if either would change

* ``lightsecagg.json``: GF(2^31 - 1) elements from the PRG (``prg_elements``), the
  mask / padding seed derivations, Lagrange encoding and decoding matrices at the
  protocol's points, and one encode -> decode example.
* ``lightsecagg_round.json``: one complete round (N = 6, T = 2, U = 3, D = 3, m = 7,
  b = 12; client 2 drops before CodedShares, client 5 before MaskedInput, client 6
  before UnmaskResponse): every wire message in delivery order (hex), U1..U4 and
  the sum.  ``tests/lightsecagg/test_vectors.py`` regenerates both and compares every
  byte, replays the recorded client messages into a fresh server, and re-derives
  the PRG elements with ``cryptography`` alone.

Randomness: ``InsecureDeterministicRandom(SEED)``; the session id from
``child("server")``; client ``u`` draws its X25519 key, then its round secret, then
the AEAD nonces from ``child("client/<u>")``.  Elements are decimal strings.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:  # the sibling _files helper, also when loaded by tests
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _files import write_or_check  # noqa: E402

from secagg.errors import InsecureConfigurationWarning  # noqa: E402
from secagg.lightsecagg import Client, LightSecAggConfig, Server  # noqa: E402
from secagg.lightsecagg import _derive as dv  # noqa: E402
from secagg.lightsecagg import messages as m  # noqa: E402
from secagg.lightsecagg.field import P, lagrange_matrix, matmul, prg_elements  # noqa: E402
from secagg.primitives.kdf import PROTOCOL_VERSION  # noqa: E402
from secagg.primitives.rand import InsecureDeterministicRandom  # noqa: E402

OUT = HERE / "lightsecagg.json"
OUT_ROUND = HERE / "lightsecagg_round.json"
SEED = 2109_14236  # arXiv 2109.14236
N, T, U, D, M, BITS = 6, 2, 3, 3, 7, 12
#: client -> first phase it misses (1 shares, 2 masked input, 3 unmask response)
DROPS = {2: 1, 5: 2, 6: 3}
INPUTS = {u: [(u * 311 + 17 * i) % (1 << BITS) for i in range(M)] for u in range(1, N + 1)}


def _rng(label: str = "root") -> InsecureDeterministicRandom:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        return InsecureDeterministicRandom(SEED, label)


def _s(a: Any) -> Any:
    return [_s(x) for x in a] if isinstance(a, (list, tuple)) else str(int(a))


def build_primitives() -> dict[str, Any]:
    seeds = [bytes(range(16)), bytes(range(32)), bytes([0xA5]) * 64]
    prg = [{"seed": s.hex(), "count": 12, "elements": _s(prg_elements(s, 12).tolist())}
           for s in seeds]
    secret = bytes(range(100, 132))
    sid = bytes(range(32))
    derivations = {
        "secret": secret.hex(), "session_id": sid.hex(), "client": 7,
        "mask_seed": dv.mask_seed(secret, session_id=sid, client=7).hex(),
        "padding_seed": dv.padding_seed(secret, session_id=sid, client=7).hex(),
        "mask_elements": _s(dv.mask_elements(secret, session_id=sid, client=7, count=6).tolist()),
        "padding_elements": _s(dv.padding_elements(secret, session_id=sid, client=7,
                                                   count=6).tolist()),
    }
    alphas = [U + i + 1 for i in range(N)]
    enc = lagrange_matrix(range(1, U + 1), alphas)
    responders = [alphas[0], alphas[3], alphas[5]]
    dec = lagrange_matrix(responders, range(1, U - T + 1))
    coeffs = prg_elements(bytes(range(1, 33)), U * 2).reshape(U, 2)
    coded = matmul(enc, coeffs)
    back = matmul(dec, coded[[0, 3, 5]])
    assert back.tolist() == coeffs[: U - T].tolist()
    return {
        "description": "LightSecAgg field elements from the PRG, seed derivations and "
                       "Lagrange code matrices (protocols/lightsecagg.md sections 2-4)",
        "generator": "protocols/vectors/generate_lightsecagg.py",
        "spec": ["protocols/lightsecagg.md", "protocols/primitives.md"],
        "protocol_version": PROTOCOL_VERSION,
        "prime": str(P),
        "date": datetime.date.today().isoformat(),
        "prg_elements": prg,
        "derivations": derivations,
        "code": {
            "N": N, "T": T, "U": U,
            "betas": list(range(1, U + 1)), "alphas": alphas,
            "encoding_matrix": _s(enc.tolist()),
            "decoding_points": responders,
            "decoding_matrix": _s(dec.tolist()),
            "coefficients": _s(coeffs.tolist()),
            "coded": _s(coded.tolist()),
        },
    }


def build_round() -> dict[str, Any]:
    srv_rng = _rng().child("server")
    ids = list(range(1, N + 1))
    cfg = LightSecAggConfig(session_id=srv_rng.random_bytes(32), clients=tuple(ids), bits=BITS,
                            length=M, privacy=T, target=U, dropout=D)
    root = _rng()
    clients = {u: Client(config=cfg, client_id=u, input_vector=np.array(INPUTS[u], np.uint32),
                         rng=root.child(f"client/{u}")) for u in ids}
    server = Server(config=cfg)
    log: list[dict[str, Any]] = []

    def note(direction: str, u: int, data: bytes) -> None:
        log.append({"direction": direction, "client": u,
                    "type": m.MessageType(data[1]).name, "hex": data.hex()})

    out: list[tuple[int, m.Message]] = []
    for u in ids:
        data = m.encode(clients[u].start())
        note("to_server", u, data)
        out += server.receive(u, data)
    stage = 1
    while out or server.collecting is not None:
        if not out:
            out = server.deadline_passed()
            continue
        nxt: list[tuple[int, m.Message]] = []
        for u, msg in out:
            data = m.encode(msg)
            note("to_client", u, data)
            if DROPS.get(u, 99) <= stage:
                continue
            for r in clients[u].receive(data):
                rd = m.encode(r)
                note("to_server", u, rd)
                nxt += server.receive(u, rd)
        if not nxt and server.collecting is not None:
            nxt = server.deadline_passed()
        out = nxt
        stage += 1
    total = server.finalize()
    assert total is not None, server.abort_reason
    want = sum(np.array(INPUTS[u], np.uint64) for u in server.survivors) % (1 << BITS)
    assert np.array_equal(total, want)
    return {
        "description": (
            "One complete LightSecAgg round: client 2 drops before CodedShares, 5 before "
            "MaskedInput, 6 before UnmaskResponse; every wire message in delivery order, "
            "the sets U1..U4 and the sum."),
        "generator": "protocols/vectors/generate_lightsecagg.py",
        "spec": ["protocols/lightsecagg.md"],
        "protocol_version": PROTOCOL_VERSION,
        "wire_version": m.WIRE_VERSION,
        "date": datetime.date.today().isoformat(),
        "randomness": (
            "InsecureDeterministicRandom(seed); session_id = child('server') first 32 bytes; "
            "client u: child('client/u') draws X25519 key, round secret, AEAD nonces"),
        "parameters": {"seed": SEED, "clients": ids, "privacy": T, "target": U, "dropout": D,
                       "length": M, "bits": BITS,
                       "drops": {str(u): s for u, s in DROPS.items()}},
        "session_id": cfg.session_id.hex(),
        "inputs": {str(u): _s(v) for u, v in INPUTS.items()},
        "messages": log,
        "sets": {k: list(v) for k, v in server.sets().items()},
        "survivors": list(server.survivors),
        "sum": _s(total.tolist()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    args = ap.parse_args(argv)
    return write_or_check({OUT: build_primitives(), OUT_ROUND: build_round()}, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
