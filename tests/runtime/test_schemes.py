"""The client and server halves of every scheme: round trips as a deployment runs
them, one abort signal for every backend, and typed errors on bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.dp.accounting import Mechanism
from secagg.dp.distributed import DDPRound, plan
from secagg.encoding.quantize import QuantizationSpec
from secagg.errors import AbortedError, DecodeError, ParameterError, PolicyError
from secagg.masking import messages as m
from secagg.masking.config import RoundConfig, SecurityMode
from secagg.masking.policy import ClientPolicy
from secagg.masking.server import Server
from secagg.phase import Phase
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.primitives.sign import SigningKey
from secagg.runtime.schemes import (
    DPMaskedClientHalf,
    DPMaskedServerHalf,
    FloatAggregate,
    HEClientHalf,
    HEServerHalf,
    MaskedClientHalf,
    MaskedServerHalf,
    PlainClientHalf,
    PlainServerHalf,
    SchemeKind,
    ServerHalf,
    SumOutcome,
)
from secagg.sim.runtime import secure_sum

IDS = (3, 5, 8, 13, 21, 34)
LENGTH = 64
MASKED = [SchemeKind.SECAGG, SchemeKind.SECAGG_PLUS]


def _rng(seed: int) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed, warn=False)


def _updates(n: int = LENGTH, scale: float = 0.03) -> dict[int, np.ndarray]:
    rng = _rng(1)
    out = {}
    for u in IDS:
        x = np.frombuffer(rng.random_bytes(8 * n), dtype="<u8") / 2.0**64
        out[u] = (x - 0.5) * 2 * scale
    return out


def _mean(ups: dict[int, np.ndarray], ids) -> np.ndarray:
    return np.mean([ups[u] for u in ids], axis=0)


_COLLECTING = (
    Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS, Phase.MASKED_INPUT,
    Phase.CONSISTENCY, Phase.UNMASKING,
)


def _drive(server: Server, parties: dict, silent_from_masked: frozenset[int] = frozenset()) -> None:
    """A minimal in-process transport: every message through the codec; clients in
    ``silent_from_masked`` stop replying once asked for their masked input; a
    phase that waits for a missing client closes by deadline."""
    pending = [r for u, p in parties.items() for r in server.receive(u, m.encode(p.start()))]
    for _ in range(30):
        if not pending:
            if server.phase not in _COLLECTING:
                break
            pending = list(server.deadline_passed())
            continue
        batch = []
        for u, msg in pending:
            if u not in parties or (
                u in silent_from_masked and msg.TYPE is m.MessageType.MASKED_INPUT_REQUEST
            ):
                parties.pop(u, None)
                continue
            for reply in parties[u].receive(m.encode(msg)):
                batch += server.receive(u, m.encode(reply))
        pending = batch
    if server.phase is Phase.FINALIZING:
        server.finalize()


# --------------------------------------------------------------------------- masked


@pytest.mark.parametrize("kind", MASKED)
@pytest.mark.parametrize("security", list(SecurityMode))
def test_masked_halves_as_deployed(kind: SchemeKind, security: SecurityMode) -> None:
    """Server half makes the config; it travels as bytes; each client decodes it,
    checks its policy, encodes its update and runs its party; one client drops
    before its masked input; the server half decodes the survivors' mean."""
    ups = _updates()
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(IDS))
    server_half = MaskedServerHalf(kind=kind, spec=spec, length=LENGTH)
    keys = {u: SigningKey.generate(_rng(100 + u)) for u in IDS}
    config = server_half.round_config(
        clients=IDS, rng=_rng(2), security=security,
        identity_keys={u: k.public for u, k in keys.items()}
        if security is SecurityMode.MALICIOUS else None,
    )
    wire = config.to_bytes()
    server = server_half.party(config)
    parties = {}
    for u in IDS:  # on each device
        cfg = RoundConfig.from_bytes(wire)
        client_half = MaskedClientHalf(kind=kind, spec=spec, length=LENGTH)
        encoded = client_half.encode(ups[u], _rng(10 + u))
        parties[u] = client_half.party(
            cfg, client_id=u, encoded=encoded, rng=_rng(20 + u), policy=ClientPolicy(),
            identity_key=keys[u] if security is SecurityMode.MALICIOUS else None,
        )
    _drive(server, parties, silent_from_masked=frozenset({8}))
    agg = server_half.decode(SumOutcome.of_masking_server(server))
    assert agg.survivors == tuple(u for u in IDS if u != 8) and agg.count == 5
    assert np.abs(agg.mean - _mean(ups, agg.survivors)).max() < spec.step


def test_a_client_whose_policy_refuses_builds_nothing_and_is_a_dropout() -> None:
    ups = _updates()
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(IDS))
    kind = SchemeKind.SECAGG
    server_half = MaskedServerHalf(kind=kind, spec=spec, length=LENGTH)
    config = server_half.round_config(clients=IDS, rng=_rng(3), threshold=3)
    server = server_half.party(config)
    client_half = MaskedClientHalf(kind=kind, spec=spec, length=LENGTH)
    strict = ClientPolicy(security_modes=frozenset({SecurityMode.MALICIOUS}))
    parties = {}
    for u in IDS:
        policy = strict if u == 13 else ClientPolicy()
        try:
            parties[u] = client_half.party(
                config, client_id=u, encoded=client_half.encode(ups[u], _rng(u)),
                rng=_rng(30 + u), policy=policy,
            )
        except PolicyError:
            assert u == 13
    _drive(server, parties)
    agg = server_half.decode(SumOutcome.of_masking_server(server))
    assert 13 not in agg.survivors and agg.count == len(IDS) - 1


def test_masked_party_refuses_a_config_for_another_scheme() -> None:
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(IDS))
    plus = MaskedClientHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=LENGTH)
    other = MaskedServerHalf(kind=SchemeKind.SECAGG, spec=spec, length=LENGTH)
    x = plus.encode(np.zeros(LENGTH))
    with pytest.raises(ParameterError, match="runs secagg"):
        plus.party(other.round_config(clients=IDS, rng=_rng(4)), client_id=3, encoded=x)
    wrong_len = MaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=LENGTH + 1)
    with pytest.raises(ParameterError, match="sends 64 values"):
        plus.party(wrong_len.round_config(clients=IDS, rng=_rng(4)), client_id=3, encoded=x)
    with pytest.raises(ParameterError):
        MaskedServerHalf(kind=SchemeKind.SECAGG, spec=spec, length=LENGTH).party(
            wrong_len.round_config(clients=IDS, rng=_rng(4))
        )
    with pytest.raises(ParameterError):
        plus.party(plus, client_id=3, encoded=x)  # type: ignore[arg-type]


def test_masked_decode_refuses_impossible_sums() -> None:
    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=4)
    half = MaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=3)
    ok = half.decode(SumOutcome(total=np.array([0, 255, 510], np.uint32), survivors=(1, 2)))
    assert np.allclose(ok.sum, [-2.0, 0.0, 2.0])
    # two survivors cannot add up to more than 2 * 255: a contribution was out of range
    with pytest.raises(AbortedError, match="not a sum of valid encodings"):
        half.decode(SumOutcome(total=np.array([0, 0, 511], np.uint32), survivors=(1, 2)))
    with pytest.raises(AbortedError, match="max_clients"):
        half.decode(SumOutcome(total=np.zeros(3, np.uint32), survivors=(1, 2, 3, 4, 5)))
    with pytest.raises(ParameterError, match="length 3"):
        half.decode(SumOutcome(total=np.zeros(4, np.uint32), survivors=(1, 2)))
    with pytest.raises(ParameterError):
        half.decode(SumOutcome(total=np.array([0, 0, 1 << spec.bits], np.uint32),
                               survivors=(1, 2)))


def test_secure_sum_floats_goes_through_the_halves_and_reports_a_refused_sum() -> None:
    """A client that bypasses its client half and sends a word outside the
    quantization range, pushing the sum beyond what ``count`` valid encodings can
    reach, gets the sum refused (not a shifted mean).  (A contribution that stays
    within reach, e.g. one that wraps, is not detectable: input validation of masked
    values is out of scope — see SECURITY.md.)"""
    from secagg.sim.runtime import secure_sum_floats

    ups = _updates()
    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=len(IDS))
    res = secure_sum_floats(ups, spec=spec, rng=_rng(5))
    assert res.count == len(IDS) and np.abs(res.mean - _mean(ups, IDS)).max() < spec.step
    client = MaskedClientHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=LENGTH)
    server = MaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=LENGTH)
    enc = {u: client.encode(x, _rng(u)) for u, x in ups.items()}
    top = len(IDS) * ((1 << spec.value_bits) - 1)
    others = sum(int(enc[u][0]) for u in IDS if u != 3)
    enc[3] = enc[3].copy()
    enc[3][0] = top + 1 - others  # >= 2^16: outside the range of a valid encoding
    assert enc[3][0] >= 1 << spec.value_bits
    out = secure_sum(enc, bits=spec.bits, rng=_rng(6))
    assert not out.aborted  # the masking protocol cannot see it ...
    with pytest.raises(AbortedError):  # ... the server half can
        server.decode(SumOutcome(total=out.total, survivors=out.survivors))


# --------------------------------------------------------------------------- plain


def test_plain_halves_round_trip_and_bad_payloads() -> None:
    ups = _updates()
    client, server = PlainClientHalf(length=LENGTH), PlainServerHalf(length=LENGTH)
    payloads = {u: client.payload(client.encode(x)) for u, x in ups.items() if u != 5}
    assert all(len(p) == 4 * LENGTH for p in payloads.values())
    agg = server.decode(server.sum_payloads(payloads))
    want = np.mean([ups[u].astype(np.float32) for u in payloads], axis=0)
    assert agg.survivors == tuple(sorted(payloads)) and np.allclose(agg.mean, want, atol=1e-7)
    with pytest.raises(DecodeError):
        server.sum_payloads({1: b"\x00" * (4 * LENGTH - 1)})
    with pytest.raises(DecodeError):
        server.sum_payloads({1: np.full(LENGTH, np.nan, "<f4").tobytes()})
    with pytest.raises(DecodeError):
        server.sum_payloads({1: "text"})  # type: ignore[dict-item]
    with pytest.raises(AbortedError):
        server.decode(server.sum_payloads({}))
    with pytest.raises(ParameterError):
        client.payload(np.zeros(LENGTH))  # float64 is not what encode produced


# --------------------------------------------------------------------------- DP


def _ddp_round(n_min: int = 4) -> DDPRound:
    params = plan(mechanism=Mechanism.DDGAUSS, epsilon=20.0, delta=1e-5, dim=LENGTH,
                  l2_clip=1.0, bits=20, min_survivors=n_min, max_clients=len(IDS))
    return DDPRound(params=params, rotation_seed=b"r" * 32)


@pytest.mark.parametrize("kind", MASKED)
def test_dp_halves_round_trip_and_abort_below_n_min(kind: SchemeKind) -> None:
    ups = {u: np.full(LENGTH, 0.02) for u in IDS}
    rnd = _ddp_round()
    client = DPMaskedClientHalf(kind=kind, ddp_round=rnd)
    server = DPMaskedServerHalf(kind=kind, ddp_round=rnd)
    enc = {u: client.encode(x, _rng(40 + u)) for u, x in ups.items()}
    assert all(e.shape == (rnd.params.padded_dim,) for e in enc.values())
    out = secure_sum(enc, bits=client.bits, protocol=kind.protocol, rng=_rng(7))
    agg = server.decode(SumOutcome(total=out.total, survivors=out.survivors))
    assert agg.count == len(IDS) and abs(float(np.mean(agg.mean)) - 0.02) < 0.05
    with pytest.raises(AbortedError, match="minimum 4"):
        server.decode(SumOutcome(total=out.total, survivors=IDS[:3]))
    with pytest.raises(ParameterError):
        client.encode(np.zeros(LENGTH + 1))
    cfg = server.round_config(clients=IDS, rng=_rng(8))
    assert (cfg.bits, cfg.length) == (20, rnd.params.padded_dim)


# --------------------------------------------------------------------------- HE


def _he_round(kind: SchemeKind, ups: dict[int, np.ndarray], drop: set[int]):
    """The HE parties, built by the halves, as a deployment wires them."""
    from secagg.he import (
        ContextKind,
        EncryptionMode,
        HEContext,
        HEDecryptor,
        HESession,
        KeyCustody,
        Preset,
        generate_keys,
    )

    preset = Preset.CKKS_4096 if kind is SchemeKind.HE_CKKS else Preset.BFV_4096
    params = dataclasses.replace(preset.params, max_clients=len(IDS), clip=0.05)
    keys = generate_keys(params)
    ids_keys = {u: SigningKey.generate(_rng(50 + u)) for u in IDS}
    server_key = SigningKey.generate(_rng(49))
    session = HESession(
        params=params, key_id=keys.key_id, custody=KeyCustody.SEPARATE_DECRYPTOR,
        session_id=b"h" * 16, round=1, vector_length=LENGTH,
        client_keys={u: k.public for u, k in ids_keys.items()}, server_key=server_key.public,
    )
    server_half = HEServerHalf(kind=kind, params=params, length=LENGTH)
    server = server_half.party(session, public_context=keys.public_context,
                               signing_key=server_key)
    ctx = HEContext.from_bytes(keys.public_context, kind=ContextKind.PUBLIC,
                               encryption=EncryptionMode.PUBLIC_KEY)
    client_half = HEClientHalf(kind=kind, params=params, length=LENGTH)
    for u in IDS:
        if u in drop:
            continue
        party = client_half.party(session, client_id=u, context=ctx, signing_key=ids_keys[u])
        for envelope in party.encrypt(client_half.encode(ups[u], _rng(60 + u))):
            assert envelope.recipient == 0  # the server
            server.receive(envelope.to_bytes())
    aggregate = server.finalize()  # AbortedError below the session's minimum
    decryptor = HEDecryptor(session=session, secret_context=keys.secret_context)
    for a in aggregate:
        decryptor.receive(a.to_bytes())
    return server_half, decryptor.result()


@pytest.mark.parametrize("kind", [SchemeKind.HE_CKKS, SchemeKind.HE_BFV])
def test_he_halves_as_deployed(kind: SchemeKind) -> None:
    pytest.importorskip("tenseal")
    ups = _updates(scale=0.08)  # some coordinates beyond the clip: the client half clips them
    server_half, result = _he_round(kind, ups, drop={21})
    agg = server_half.decode(HEServerHalf.outcome_of(result))
    alive = tuple(u for u in IDS if u != 21)
    assert agg.survivors == alive
    clipped = {u: np.clip(ups[u], -0.05, 0.05) for u in alive}
    assert np.abs(agg.mean - _mean(clipped, alive)).max() < 2e-6
    half = HEClientHalf(kind=kind, params=server_half.params, length=LENGTH)
    assert half.clipped_fraction(ups[3]) > 0


@pytest.mark.parametrize("kind", [SchemeKind.HE_CKKS, SchemeKind.HE_BFV])
def test_he_decode_refuses_impossible_sums(kind: SchemeKind) -> None:
    from secagg.he import Preset

    preset = Preset.CKKS_4096 if kind is SchemeKind.HE_CKKS else Preset.BFV_4096
    params = dataclasses.replace(preset.params, max_clients=4, clip=0.05)
    half = HEServerHalf(kind=kind, params=params, length=3)
    big = np.array([0.0, 0.0, 1.0]) if kind is SchemeKind.HE_CKKS else np.array([0, 0, -1])
    with pytest.raises(AbortedError):
        half.decode(SumOutcome(total=big, survivors=(1, 2)))
    with pytest.raises(AbortedError, match="minimum 2"):
        half.decode(SumOutcome(total=np.zeros(3, np.int64), survivors=(1,)))
    with pytest.raises(ParameterError):
        HEServerHalf(kind=SchemeKind.HE_BFV if kind is SchemeKind.HE_CKKS else SchemeKind.HE_CKKS,
                     params=params, length=3)


# --------------------------------------------------------------------------- every backend


def _server_halves() -> list[ServerHalf]:
    from secagg.he import Preset

    spec = QuantizationSpec(clip=0.05, value_bits=16, max_clients=8)
    return [
        PlainServerHalf(length=LENGTH),
        MaskedServerHalf(kind=SchemeKind.SECAGG, spec=spec, length=LENGTH),
        MaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, spec=spec, length=LENGTH),
        DPMaskedServerHalf(kind=SchemeKind.SECAGG_PLUS, ddp_round=_ddp_round()),
        HEServerHalf(kind=SchemeKind.HE_CKKS, params=Preset.CKKS_4096.params, length=LENGTH),
        HEServerHalf(kind=SchemeKind.HE_BFV, params=Preset.BFV_4096.params, length=LENGTH),
    ]


@pytest.mark.parametrize(
    "half", _server_halves(), ids=lambda h: f"{h.kind.value}-{type(h).__name__}"
)
def test_every_backend_signals_an_abort_the_same_way(half: ServerHalf) -> None:
    with pytest.raises(AbortedError, match="masked inputs: too few"):
        half.decode(SumOutcome.abort("masked inputs: too few"))
    with pytest.raises(AbortedError, match="survivors < the minimum"):
        half.decode(SumOutcome(total=np.zeros(1, np.uint32), survivors=()))
    with pytest.raises(ParameterError):
        half.decode("aborted")  # type: ignore[arg-type]
    assert isinstance(half, ServerHalf) and half.kind.secure == (half.kind is not SchemeKind.PLAIN)


def test_outcomes_and_aggregates_are_checked() -> None:
    with pytest.raises(ParameterError):
        SumOutcome(total=None, survivors=())  # an abort needs a reason
    with pytest.raises(ParameterError):
        SumOutcome(total=np.zeros(2), survivors=(2, 1))
    with pytest.raises(ParameterError):
        SumOutcome(total=np.zeros(2), survivors=(0,))
    with pytest.raises(ParameterError):
        SumOutcome(total=np.zeros((2, 2)), survivors=(1,))
    with pytest.raises(ParameterError):
        SumOutcome(total=np.zeros(2), survivors=(1,), abort_reason="both")
    with pytest.raises(ParameterError):
        FloatAggregate(sum=np.zeros(2), count=2, survivors=(1,))
    cfg_server = Server(config=MaskedServerHalf(
        kind=SchemeKind.SECAGG, spec=QuantizationSpec(clip=1.0, value_bits=8, max_clients=6),
        length=4).round_config(clients=IDS, rng=_rng(9)))
    with pytest.raises(ParameterError, match="not finished"):
        SumOutcome.of_masking_server(cfg_server)
    with pytest.raises(ParameterError):
        SchemeKind.HE_BFV.protocol


def _client_halves() -> list:
    from secagg.he import Preset

    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=3)
    rnd = plan(mechanism=Mechanism.DDGAUSS, epsilon=20.0, delta=1e-5, dim=4, l2_clip=1.0,
               bits=20, min_survivors=2, max_clients=3)
    return [
        PlainClientHalf(length=4),
        MaskedClientHalf(kind=SchemeKind.SECAGG, length=4, spec=spec),
        DPMaskedClientHalf(kind=SchemeKind.SECAGG_PLUS,
                           ddp_round=DDPRound(params=rnd, rotation_seed=b"r" * 32)),
        HEClientHalf(kind=SchemeKind.HE_CKKS, params=Preset.CKKS_4096.params, length=4),
        HEClientHalf(kind=SchemeKind.HE_BFV, params=Preset.BFV_4096.params, length=4),
    ]


@pytest.mark.parametrize("client", _client_halves(), ids=lambda c: type(c).__name__)
def test_client_halves_refuse_bad_updates(client) -> None:
    for bad in (np.zeros(3), np.zeros((2, 2)), np.array([0.0, np.nan, 0, 0]),
                np.array([0.0, np.inf, 0, 0]), np.array(["a", "b", "c", "d"])):
        with pytest.raises(ParameterError):
            client.encode(bad)
    assert client.encode(np.array([0.5, -0.5, 0.0, 0.25])).shape[0] >= 4


def test_halves_refuse_bad_construction() -> None:
    from secagg.he import Preset

    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=3)
    for make in (
        lambda: PlainClientHalf(length=0),
        lambda: PlainServerHalf(length=4, min_survivors=0),
        lambda: MaskedClientHalf(kind=SchemeKind.HE_CKKS, length=4, spec=spec),
        lambda: MaskedClientHalf(kind=SchemeKind.SECAGG, length=4, spec=None),
        lambda: MaskedServerHalf(kind=SchemeKind.PLAIN, length=4, spec=spec),
        lambda: DPMaskedClientHalf(kind=SchemeKind.SECAGG, ddp_round=None),
        lambda: HEClientHalf(kind=SchemeKind.HE_BFV, params=Preset.CKKS_4096.params, length=4),
        lambda: HEServerHalf(kind=SchemeKind.SECAGG, params=Preset.CKKS_4096.params, length=4),
    ):
        with pytest.raises(ParameterError):
            make()
