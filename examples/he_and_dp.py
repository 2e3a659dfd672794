"""The other two families on the same numpy updates: homomorphic summation (TenSEAL
CKKS and BFV) and user-level distributed DP over SecAgg+.

    python examples/he_and_dp.py [--clients 20] [--length 4096] [--drop 2] [--epsilon 3]

* HE: every client encrypts under one public key, the server adds ciphertexts, and a
  separate decryptor (the only secret-key holder) decrypts only the aggregate.
* DP: each client rotates, L2-clips, scales, rounds and adds discrete Gaussian noise
  calibrated so the *sum* over at least ``n_min`` survivors is (ε, δ)-DP; SecAgg+
  hides the individual noisy vectors; the server decodes a noisy mean.

Both are written with the scheme halves of ``secagg.runtime.schemes``: what each
device runs (``client.encode``), the protocol (run in process here), and what the
server runs (``server.decode``), which raises ``AbortedError`` instead of releasing
a sum it must not.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from secagg.dp import DDPRound, Mechanism, plan
from secagg.he import Scheme, resolve_params
from secagg.runtime import he_sum, secure_sum
from secagg.runtime.schemes import (
    DPMaskedClientHalf,
    DPMaskedServerHalf,
    HEClientHalf,
    HEServerHalf,
    SchemeKind,
    SumOutcome,
)
from secagg.sim import Phase


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--length", type=int, default=4096)
    ap.add_argument("--drop", type=int, default=2)
    ap.add_argument("--epsilon", type=float, default=3.0)
    args = ap.parse_args(argv)

    data_rng = np.random.default_rng(0)  # example data only; never for secrets
    updates = {c: np.clip(data_rng.normal(0, 0.3, args.length), -1, 1)
               for c in range(1, args.clients + 1)}
    dropped = list(range(2, 2 + args.drop))
    alive = [c for c in updates if c not in dropped]
    exact = np.mean([updates[c] for c in alive], axis=0)

    for kind, scheme in ((SchemeKind.HE_CKKS, Scheme.CKKS), (SchemeKind.HE_BFV, Scheme.BFV)):
        params = resolve_params(scheme, None)  # the scheme's default preset
        client = HEClientHalf(kind=kind, params=params, length=args.length)  # each device
        server = HEServerHalf(kind=kind, params=params, length=args.length)  # the server
        encoded = {c: client.encode(x) for c, x in updates.items()}
        # encrypt, add ciphertexts, decrypt only the aggregate (in process here)
        res = he_sum(encoded, scheme=scheme, preset=params, dropouts=dropped)
        agg = server.decode(server.outcome_of_he_sum(res))  # AbortedError: nothing released
        print(f"HE {scheme.name}: {agg.count} contributors, max |error| "
              f"{np.abs(agg.mean - exact).max():.2e}, "
              f"{res.bytes_per_client_upload / args.length:.1f} bytes/parameter uploaded")

    n_min = len(alive)
    params = plan(mechanism=Mechanism.DDGAUSS, epsilon=args.epsilon, delta=1e-5,
                  dim=args.length, l2_clip=float(np.sqrt(args.length) * 0.3), bits=20,
                  min_survivors=n_min, max_clients=args.clients)
    rnd = DDPRound(params=params, rotation_seed=os.urandom(32))  # public, fresh per round
    dp_client = DPMaskedClientHalf(kind=SchemeKind.SECAGG_PLUS, ddp_round=rnd)
    dp_server = DPMaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, ddp_round=rnd)
    noisy = {c: dp_client.encode(x) for c, x in updates.items()}  # noise from os.urandom
    out = secure_sum(noisy, bits=dp_client.bits, dropouts={Phase.MASKED_INPUT: dropped})
    agg = dp_server.decode(
        SumOutcome.abort(out.abort_reason or "aborted") if out.aborted
        else SumOutcome(total=out.total, survivors=out.survivors)
    )
    rmse = float(np.sqrt(np.mean((agg.mean - exact) ** 2)))
    print(f"DP (distributed discrete Gaussian, ε={args.epsilon}, δ=1e-5 for this round, "
          f"n_min={n_min}): {agg.count} survivors, RMSE of the noisy mean {rmse:.3f} "
          f"(signal RMS {float(np.sqrt(np.mean(exact ** 2))):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
