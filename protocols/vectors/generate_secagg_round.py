"""Generate the known-answer vector of one complete SecAgg+ round.

Run from the repository root::

    python protocols/vectors/generate_secagg_round.py          # rewrite secagg_round.json
    python protocols/vectors/generate_secagg_round.py --check  # exit 1 if it would change

Every input is fixed here: the seed of the (insecure, reproducible)
``InsecureDeterministicRandom`` from which the server draws the session id and
graph seed (``child("server")``), each client its identity key
(``child("identity/<id>")``) and all its round randomness (``child("client/<id>")``:
c key pair, s key pair, b_u, the graph-seed contribution r_u, Shamir coefficients,
AEAD nonces — in that order of use; ``protocols/secagg.md`` §3); the inputs; who
drops.  Protocol version 2: the round includes the SecAgg+ graph-seed step
(SeedRequest / SeedReveal) and packed masked inputs.  The output lists every wire
message of the round in delivery order (hex), the survivors and the sum.
``tests/masking/test_vectors.py`` regenerates the round and compares every byte,
and independently replays the recorded client messages into a fresh server.

Conventions: bytes as lowercase hex; Z_{2^b} elements as decimal strings.
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
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
if str(HERE) not in sys.path:  # the sibling _files helper, also when loaded by tests
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _files import write_or_check  # noqa: E402

from secagg import __version__  # noqa: E402
from secagg.errors import InsecureConfigurationWarning  # noqa: E402
from secagg.masking import messages as m  # noqa: E402
from secagg.masking.config import ProtocolKind, SecurityMode  # noqa: E402
from secagg.primitives.kdf import PROTOCOL_VERSION  # noqa: E402
from secagg.primitives.rand import InsecureDeterministicRandom  # noqa: E402
from secagg.sim.runtime import Phase, build_config, plaintext_sum, run_round  # noqa: E402

OUT = HERE / "secagg_round.json"

SEED = 20170  # Bonawitz et al., CCS 2017
N = 6
NEIGHBORS = 4
THRESHOLD = 3
BITS = 16
LENGTH = 8
DROPPED_BEFORE_MASKED_INPUT = (4,)
INPUTS = {u: [(u * 1000 + 7 * i) % (1 << BITS) for i in range(LENGTH)] for u in range(1, N + 1)}


def build() -> dict[str, Any]:
    """Run the round and return the vector document."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureConfigurationWarning)
        rng = InsecureDeterministicRandom(SEED)
    ids = list(range(1, N + 1))
    cfg, idkeys = build_config(
        ids,
        bits=BITS,
        length=LENGTH,
        protocol=ProtocolKind.SECAGG_PLUS,
        security=SecurityMode.MALICIOUS,
        neighbors=NEIGHBORS,
        threshold=THRESHOLD,
        rng=rng,
    )
    inputs = {u: np.array(v, dtype=np.uint32) for u, v in INPUTS.items()}
    log: list[dict[str, Any]] = []

    def observe(direction: str, client: int, data: bytes) -> None:
        log.append(
            {
                "direction": direction,
                "client": client,
                "type": m.MessageType(data[2]).name,
                "hex": data.hex(),
            }
        )

    report = run_round(
        inputs,
        config=cfg,
        rng=rng,
        identity_keys=idkeys,
        dropouts={Phase.MASKED_INPUT: set(DROPPED_BEFORE_MASKED_INPUT)},
        observer=observe,
    )
    assert report.total is not None, report.abort_reason
    want = plaintext_sum(inputs, report.survivors, BITS)
    assert np.array_equal(report.total, want)
    return {
        "description": (
            "One complete SecAgg+ round (malicious mode, Harary graph, one client dropped "
            "before MaskedInputCollection so its pairwise masks are rebuilt from s-shares): "
            "every wire message in delivery order, the survivors and the sum."
        ),
        "generator": "protocols/vectors/generate_secagg_round.py",
        "spec": ["protocols/secagg.md", "protocols/wire/secagg.md"],
        "protocol_version": PROTOCOL_VERSION,
        "wire_version": m.WIRE_VERSION,
        "library_versions": {"secagg": __version__},
        "date": datetime.date.today().isoformat(),
        "randomness": (
            "InsecureDeterministicRandom(seed) (seed as a 32-byte big-endian int); server: "
            "child('server') draws session_id then graph_seed; client u: identity key = the "
            "first 32 bytes of child('identity/u'), round randomness from child('client/u') "
            "in the order c, s, b_u, r_u, Shamir coefficients, AEAD nonces"
        ),
        "parameters": {
            "seed": SEED,
            "protocol": "secagg+",
            "security": "malicious",
            "clients": ids,
            "neighbors": NEIGHBORS,
            "threshold": THRESHOLD,
            "bits": BITS,
            "length": LENGTH,
            "dropped_before_masked_input": list(DROPPED_BEFORE_MASKED_INPUT),
        },
        "config": {
            "session_id": cfg.session_id.hex(),
            "graph_seed": cfg.graph_seed.hex(),
            "identity_public_keys": {str(u): pk.hex() for u, pk in cfg.identity_keys},
            "signature_threshold": cfg.signature_threshold,
        },
        "inputs": {str(u): [str(x) for x in v] for u, v in INPUTS.items()},
        "messages": log,
        "survivors": list(report.survivors),
        "sum": [str(int(x)) for x in report.total],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a file would change")
    args = ap.parse_args(argv)
    return write_or_check({OUT: build()}, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
