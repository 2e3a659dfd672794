"""The five-line answer to "how do I use this in my FL system": securely average float
vectors (numpy) with SecAgg+, while some clients drop out mid-round.

    python examples/secure_sum_numpy.py [--clients 20] [--length 10000] [--drop 3]

The core is the five lines under "secure sum".  ``secure_sum_floats`` clips and
quantizes every vector, runs the real SecAgg+ client and server state machines
in-process through the wire codec, and returns only the sum over the survivors.
Randomness for masks and keys comes from the OS CSPRNG.
"""

from __future__ import annotations

import argparse

import numpy as np

from secagg.encoding.quantize import QuantizationSpec
from secagg.sim import Phase, secure_sum_floats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--length", type=int, default=10_000)
    ap.add_argument("--drop", type=int, default=3, help="clients that drop before masked input")
    args = ap.parse_args(argv)

    # Example data (not secret, so numpy's RNG is fine here): one update per client.
    data_rng = np.random.default_rng(0)
    updates = {cid: data_rng.normal(0.0, 0.01, args.length) for cid in range(1, args.clients + 1)}
    dropped = list(range(2, 2 + args.drop))

    # --- secure sum -------------------------------------------------------------------
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(updates))
    res = secure_sum_floats(updates, spec=spec, dropouts={Phase.MASKED_INPUT: dropped})
    if res.mean is None:
        raise SystemExit(f"round aborted: {res.result.abort_reason}")
    mean = res.mean
    # -----------------------------------------------------------------------------------

    survivors = res.result.survivors
    exact = np.mean([updates[c] for c in survivors], axis=0)
    print(f"{len(survivors)} of {len(updates)} clients survived (dropped: {dropped})")
    print(f"mean of {args.length} coordinates, max |secure − plaintext| = "
          f"{np.abs(mean - exact).max():.2e} (quantization step {spec.step:.2e})")
    print(f"each client uploaded {res.result.bytes_per_client_upload:,.0f} bytes "
          f"(mod 2^{spec.bits} words + keys and shares)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
