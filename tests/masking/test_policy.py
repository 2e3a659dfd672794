"""ClientPolicy: every refusal is a typed error raised before the client sends anything."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError, PolicyError, RemoteProtocolError
from secagg.masking import messages as m
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.params import choose_parameters
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey

SID = b"s" * 32
SEED = b"g" * 32
_SK = {u: SigningKey.from_private_bytes(u.to_bytes(32, "big")) for u in range(1, 101)}


def _cfg(
    n: int,
    *,
    protocol: ProtocolKind = ProtocolKind.SECAGG_PLUS,
    security: SecurityMode = SecurityMode.SEMI_HONEST,
    k: int | None = None,
    t: int | None = None,
    bits: int = 32,
    length: int = 8,
) -> RoundConfig:
    ids = list(range(1, n + 1))
    return RoundConfig.create(
        session_id=SID, clients=ids, bits=bits, length=length, protocol=protocol,
        security=security, neighbors=k, threshold=t, graph_seed=SEED,
        identity_keys={u: _SK[u].public for u in ids} if security is SecurityMode.MALICIOUS
        else None,
    )


@pytest.mark.parametrize("n", [2, 3, 7, 20, 60, 100])
@pytest.mark.parametrize("protocol", list(ProtocolKind))
@pytest.mark.parametrize("security", list(SecurityMode))
def test_default_parameters_pass_the_default_policy(n, protocol, security) -> None:
    ClientPolicy().check(_cfg(n, protocol=protocol, security=security))


@given(st.integers(5, 3000), st.sampled_from(list(SecurityMode)))
def test_the_finders_choice_passes_and_one_less_t_does_not(n: int, security) -> None:
    pol = ClientPolicy()
    k, t = pol.minimum_parameters(n, security)
    chosen = choose_parameters(n=n, mode=security)
    assert (k, t) == (chosen.k, chosen.t)
    pol_check = pol.check
    ids = tuple(range(1, n + 1))
    keys = tuple((u, b"k" * 32) for u in ids) if security is SecurityMode.MALICIOUS else ()
    base = dict(session_id=SID, protocol=ProtocolKind.SECAGG_PLUS, security=security,
                clients=ids, bits=32, length=1, neighbors=k, graph_seed=SEED, identity_keys=keys)
    pol_check(RoundConfig(threshold=t, **base))
    try:
        lower = RoundConfig(threshold=t - 1, **base)
    except ParameterError:
        return  # the config itself refuses it (t < 2, or 2t <= k in malicious mode)
    if k < n - 1 and t - 1 >= 2:  # the finder's t is the smallest secure one for k
        with pytest.raises(PolicyError, match="threshold t too small"):
            pol_check(lower)


@pytest.mark.parametrize(
    ("policy", "config", "match"),
    [
        (ClientPolicy(protocols=frozenset({ProtocolKind.SECAGG})), _cfg(10), "protocol secagg+"),
        (ClientPolicy(security_modes=frozenset({SecurityMode.MALICIOUS})), _cfg(10),
         "security mode semi-honest"),
        (ClientPolicy(min_bits=20), _cfg(10, bits=16), "bits=16"),
        (ClientPolicy(max_bits=32), _cfg(10, bits=48), "bits=48"),
        (ClientPolicy(min_length=10), _cfg(10, length=9), "length=9"),
        (ClientPolicy(max_length=1000), _cfg(10, length=1001), "length=1001"),
        (ClientPolicy(min_clients=11), _cfg(10), "n=10"),
        (ClientPolicy(max_clients=9), _cfg(10), "n=10"),
        # Harary graph: k = 4 of n = 100 disconnects when 38 random nodes are gone
        (ClientPolicy(), _cfg(100, k=4, t=3), "neighbors k too small"),
        # the finder's k = 72 for n = 1000 needs t >= 24; t = 10 is reachable by corrupt peers
        (ClientPolicy(), _cfg(1000, k=72, t=10), "threshold t too small"),
        (ClientPolicy(), _cfg(100, security=SecurityMode.MALICIOUS, k=72, t=37),
         "threshold t too small"),
        # complete graph with 5 corrupt of 100: t = 5 is not enough
        (ClientPolicy(), _cfg(100, protocol=ProtocolKind.SECAGG, t=5), "needs t > 5"),
        (ClientPolicy(), _cfg(100, protocol=ProtocolKind.SECAGG, security=SecurityMode.MALICIOUS,
                              t=51), "needs 2t > k \\+ 5"),
        # a stricter policy refuses what the default accepts
        (ClientPolicy(corrupt_fraction=0.2), _cfg(100, protocol=ProtocolKind.SECAGG, t=15),
         "needs t > 20"),
    ],
)
def test_each_refusal_is_a_policy_error(policy: ClientPolicy, config: RoundConfig, match) -> None:
    with pytest.raises(PolicyError, match=match) as info:
        policy.check(config)
    assert isinstance(info.value, RemoteProtocolError)  # the server proposed it
    with pytest.raises(PolicyError, match=match):
        Client(config=config, client_id=1, input_vector=np.zeros(config.length, np.uint64
               if config.bits > 32 else np.uint32), policy=policy,
               identity_key=_SK[1] if config.security is SecurityMode.MALICIOUS else None)


def test_policy_rejects_bad_settings() -> None:
    for kwargs in (
        {"protocols": frozenset()},
        {"protocols": frozenset({"secagg"})},
        {"security_modes": frozenset()},
        {"min_bits": 0},
        {"min_bits": 40, "max_bits": 32},
        {"min_length": 0},
        {"min_clients": 1},
        {"corrupt_fraction": -0.1},
        {"corrupt_fraction": 0.6, "dropout_fraction": 0.4},
        {"security_bits": 0},
        {"max_bits": True},
    ):
        with pytest.raises(ParameterError):
            ClientPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        ClientPolicy().check("config")  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        Client(config=_cfg(3), client_id=1, input_vector=np.zeros(8, np.uint32),
               policy="strict")  # type: ignore[arg-type]


def test_a_refusing_client_is_a_dropout_for_the_server() -> None:
    """Client 3 refuses (its policy wants a larger threshold); the others finish the
    round and the server sums exactly their inputs."""
    n = 8
    cfg = _cfg(n, protocol=ProtocolKind.SECAGG, t=3)
    strict = ClientPolicy(corrupt_fraction=0.45, dropout_fraction=0.1)  # 3 corrupt: t > 3
    rng = InsecureDeterministicRandom(5, warn=False)
    inputs = {u: np.arange(8, dtype=np.uint32) * u for u in cfg.clients}
    clients: dict[int, Client] = {}
    for u in cfg.clients:
        try:
            clients[u] = Client(config=cfg, client_id=u, input_vector=inputs[u],
                                rng=rng.child(f"client/{u}"),
                                policy=strict if u == 3 else ClientPolicy())
        except PolicyError:
            assert u == 3
    assert set(clients) == set(cfg.clients) - {3}
    server = Server(config=cfg)
    pending = [r for u, c in clients.items() for r in server.receive(u, m.encode(c.start()))]
    for _ in range(20):
        if not pending:
            if server.phase not in (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS,
                                    Phase.MASKED_INPUT, Phase.CONSISTENCY,
                                    Phase.UNMASKING):
                break
            pending = list(server.deadline_passed())
            continue
        batch = []
        for (u, msg) in pending:
            for reply in clients[u].receive(m.encode(msg)):
                batch += server.receive(u, m.encode(reply))
        pending = batch
    assert server.phase is Phase.FINALIZING
    total = server.finalize()
    assert 3 not in server.survivors and len(server.survivors) == n - 1
    want = sum(inputs[u].astype(np.int64) for u in server.survivors) % (1 << 32)
    assert np.array_equal(total.astype(np.int64), want)
