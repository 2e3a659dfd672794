"""SecAgg+ as a deployment wires it: the server half, the client half, the round
configuration on the wire, and each client's policy.

    python examples/deploy_secagg_halves.py [--clients 12] [--length 1000] [--drop 2]

* server: ``MaskedServerHalf`` chooses the round (fresh session id and graph seed)
  and ships ``config.to_bytes()`` with the task;
* each device: ``RoundConfig.from_bytes`` (strict), ``MaskedClientHalf.encode``
  (clip + unbiased stochastic rounding), ``party(..., policy=ClientPolicy(...))``:
  a client whose policy refuses the round raises ``PolicyError`` and sends nothing;
* the transport (here a loop in this file; in production your RPC layer or
  Flower) only moves bytes and turns a timeout into ``server.deadline_passed()``;
* server: ``server_half.decode(SumOutcome.of_masking_server(server))`` — the mean
  over the survivors, or ``AbortedError`` and nothing.

Randomness for masks, keys and rounding comes from the OS CSPRNG.
"""

from __future__ import annotations

import argparse

import numpy as np

from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, PolicyError
from secagg.masking import Client, ClientPolicy, MessageType, RoundConfig, SecurityMode, Server
from secagg.phase import Phase
from secagg.runtime.schemes import MaskedClientHalf, MaskedServerHalf, SchemeKind, SumOutcome

KIND = SchemeKind.SECAGG_PLUS


def transport(server: Server, parties: dict[int, Client], silent: set[int]) -> None:
    """Deliver every message as bytes (bytes in, message objects out: each message
    knows its ``recipient`` and its ``to_bytes()``); ``silent`` clients vanish after
    sharing their keys (before their masked input); a phase waiting for them ends by
    deadline."""
    pending = [r for u, p in parties.items() for r in server.receive(u, p.start().to_bytes())]
    done = (Phase.FINALIZING, Phase.COMPLETED, Phase.ABORTED)
    while pending or server.phase not in done:
        if not pending:  # nobody else will answer: the phase deadline passes
            pending = server.deadline_passed()
            continue
        replies = []
        for cid, msg in pending:
            gone = cid in silent and msg.TYPE is MessageType.MASKED_INPUT_REQUEST
            if cid not in parties or gone:
                continue
            for reply in parties[cid].receive(msg.to_bytes()):
                replies += server.receive(cid, reply.to_bytes())
        pending = replies
    if server.phase is Phase.FINALIZING:
        server.finalize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=12)
    ap.add_argument("--length", type=int, default=1000)
    ap.add_argument("--drop", type=int, default=2,
                    help="clients that vanish mid-round (with the refusing one, at most a "
                    "third of the clients: the parameters are chosen for that)")
    args = ap.parse_args(argv)
    ids = list(range(1, args.clients + 1))
    data_rng = np.random.default_rng(0)  # example data only; never for secrets
    updates = {c: data_rng.normal(0.0, 0.01, args.length) for c in ids}
    silent = set(ids[1 : 1 + args.drop])
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(ids))

    # --- server: choose the round, ship its configuration ---------------------------
    server_half = MaskedServerHalf(kind=KIND, spec=spec, length=args.length)
    config = server_half.round_config(clients=ids)
    task = config.to_bytes()
    server = server_half.party(config)
    print(f"round config: {len(task)} bytes on the wire ({KIND.value}, n={config.n}, "
          f"k={config.degree}, t={config.threshold}, mod 2^{config.bits})")

    # --- each device: decode, check the policy, encode, build its party ---------------
    parties: dict[int, Client] = {}
    for cid in ids:
        cfg = RoundConfig.from_bytes(task)
        # the last client accepts only rounds that defend against a lying server
        policy = ClientPolicy(security_modes=frozenset({SecurityMode.MALICIOUS})) \
            if cid == ids[-1] else ClientPolicy()
        client_half = MaskedClientHalf(kind=KIND, spec=spec, length=args.length)
        try:
            parties[cid] = client_half.party(
                cfg, client_id=cid, encoded=client_half.encode(updates[cid]), policy=policy
            )
        except PolicyError as exc:
            print(f"client {cid} refused the round: {exc}")

    # --- the transport moves bytes; the server half releases the mean -----------------
    transport(server, parties, silent)
    try:
        agg = server_half.decode(SumOutcome.of_masking_server(server))
    except AbortedError as exc:  # more dropped than the threshold allows: nothing released
        print(f"round aborted: {exc}")
        return 1
    exact = np.mean([updates[c] for c in agg.survivors], axis=0)
    print(f"{agg.count} of {len(ids)} clients survived (vanished: {sorted(silent)})")
    print(f"max |secure − plaintext| = {np.abs(agg.mean - exact).max():.2e} "
          f"(quantization step {spec.step:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
