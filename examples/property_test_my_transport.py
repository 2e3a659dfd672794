"""Property-test YOUR transport with secagg.testing (needs the ``test`` extra).

Your FL system moves SecAgg messages somehow — sockets, a Flower app, a queue.
Here "my transport" is a tiny length-prefixed message bus over ``queue.Queue``.
Subclass :class:`secagg.testing.SecureSumMachine`, implement ``run_round`` with
your transport, and hypothesis generates rounds within your client policy,
drops clients before every phase, injects malformed frames, and checks: exact sum
or clean abort, never a wrong sum, refused bytes change nothing.

    python examples/property_test_my_transport.py              # passes
    python examples/property_test_my_transport.py --bug        # a framing bug: caught
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import struct
import sys

from hypothesis import HealthCheck, settings
from hypothesis import Phase as HypPhase
from hypothesis.stateful import run_state_machine_as_test

from secagg.errors import SecAggError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.sign import SigningKey
from secagg.testing import Outcome, RoundCase, SecureSumMachine, mutate
from secagg.testing.rounds import reproducible_rng

ASKS = {m.MessageType.SEED_REQUEST: Phase.GRAPH_SEED,
        m.MessageType.KEYS_BROADCAST: Phase.SHARE_KEYS,
        m.MessageType.MASKED_INPUT_REQUEST: Phase.MASKED_INPUT,
        m.MessageType.CONSISTENCY_REQUEST: Phase.CONSISTENCY,
        m.MessageType.UNMASKING_REQUEST: Phase.UNMASKING}
SENDS = {m.MessageType.ADVERTISE_KEYS: Phase.ADVERTISE_KEYS,
         m.MessageType.SEED_REVEAL: Phase.GRAPH_SEED,
         m.MessageType.SHARE_KEYS: Phase.SHARE_KEYS,
         m.MessageType.MASKED_INPUT: Phase.MASKED_INPUT,
         m.MessageType.CONSISTENCY_SIGNATURE: Phase.CONSISTENCY,
         m.MessageType.UNMASKING_RESPONSE: Phase.UNMASKING}


class Bus:
    """My transport: frames are ``u32 length || payload`` on one queue per party."""

    def __init__(self, bug: bool) -> None:
        self.boxes: dict[int, queue.Queue[bytes]] = {}
        self.bug = bug

    def send(self, to: int, sender: int, payload: bytes) -> None:
        if self.bug and len(payload) > 200:
            payload = payload[:-1]  # the bug: an off-by-one in the framing of long frames
        frame = struct.pack(">II", sender, len(payload)) + payload
        self.boxes.setdefault(to, queue.Queue()).put(frame)

    def drain(self, who: int) -> list[tuple[int, bytes]]:
        out = []
        box = self.boxes.setdefault(who, queue.Queue())
        while not box.empty():
            frame = box.get()
            sender, n = struct.unpack(">II", frame[:8])
            out.append((sender, frame[8:8 + n]))
        return out


class MyTransport(SecureSumMachine):
    """The reference parties, talking only through my Bus."""

    policy = ClientPolicy(corrupt_fraction=0.0, dropout_fraction=0.0)
    max_clients = 6
    bug = False

    def run_round(self, case: RoundCase) -> Outcome:
        cfg, sched = case.config, case.schedule
        bus = Bus(self.bug)
        server = Server(config=cfg)
        clients = {
            u: Client(config=cfg, client_id=u, input_vector=case.inputs[u],
                      rng=reproducible_rng(case.seed, f"client/{u}"),
                      identity_key=SigningKey.from_private_bytes(case.identity[u])
                      if u in case.identity else None)
            for u in cfg.clients
        }
        gone = {u for u in cfg.clients if sched.drops_before(u, Phase.ADVERTISE_KEYS)}
        for u, c in clients.items():
            if u not in gone:
                bus.send(0, u, m.encode(c.start()))
        for _ in range(20):
            for sender, data in bus.drain(0):
                try:
                    phase: Phase | None = SENDS[m.decode(data).TYPE]
                except SecAggError:
                    phase = None  # not even decodable: the server refuses it below
                for x in sched.corruptions_of(sender, phase) if phase else []:
                    with contextlib.suppress(SecAggError):  # malformed copies arrive first
                        server.receive(sender, mutate(data, x))
                try:
                    for to, msg in server.receive(sender, data):
                        bus.send(to, 0, m.encode(msg))
                except SecAggError:
                    pass
            if server.phase is Phase.FINALIZING:
                return Outcome(completed=True, total=server.finalize(),
                               survivors=server.survivors)
            if server.phase is Phase.ABORTED:
                return Outcome(completed=False)
            if not any(not bus.boxes.get(u, queue.Queue()).empty() for u in cfg.clients):
                for to, msg in server.deadline_passed():  # everyone left answered
                    bus.send(to, 0, m.encode(msg))
            for u, c in clients.items():
                for _, data in bus.drain(u):
                    try:
                        t = m.decode(data).TYPE
                    except SecAggError:
                        continue
                    if u in gone or (t in ASKS and sched.drops_before(u, ASKS[t])):
                        gone.add(u)
                        continue
                    try:
                        for reply in c.receive(data):
                            bus.send(0, u, m.encode(reply))
                    except SecAggError:
                        pass
        return Outcome(completed=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--bug", action="store_true", help="break the framing of long frames")
    ap.add_argument("--no-shrink", action="store_true", help="report the first failure found")
    args = ap.parse_args()
    MyTransport.bug = args.bug
    try:
        run_state_machine_as_test(MyTransport, settings=settings(
            max_examples=args.examples, stateful_step_count=6, deadline=None,
            suppress_health_check=list(HealthCheck), database=None, derandomize=True,
            phases=[HypPhase.generate] if args.no_shrink else list(HypPhase)))
    except Exception as exc:  # the shrunk failure, or a group of them
        first = getattr(exc, "exceptions", [exc])[0]
        print(f"caught a bug in my transport: {str(first).splitlines()[0][:300]}")
        return 1
    print(f"{args.examples} generated round sequences: exact sum or clean abort, "
          "never a wrong sum, refused bytes changed nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
