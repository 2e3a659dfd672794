"""The masking package's small modules, exactly (issue 20, mutation triage, seed 26).

The first sample of ``config``, ``params``, ``params_cli`` and ``policy`` (the
``masking-small`` target) found refusals whose text no test read, a bound checked
with ``or`` that would still hold with ``and``, a float ``k`` let through, duplicate
client ids in a config, and the ``secagg params`` options' help and JSON keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import struct

import pytest

from secagg.cli import main as cli_main
from secagg.errors import DecodeError, ParameterError
from secagg.masking import params, params_cli
from secagg.masking.config import ProtocolKind, RoundConfig, SecurityMode
from secagg.masking.params import (
    GraphParameters,
    ThreatModel,
    choose_parameters,
    log2_disconnection_probability,
    log2_hypergeom_sf,
)
from secagg.masking.policy import ClientPolicy

SH = ThreatModel.SEMI_HONEST


def _config(n: int = 5) -> RoundConfig:
    return RoundConfig(
        session_id=bytes(range(32)),
        clients=tuple(range(1, n + 1)),
        threshold=3,
        bits=16,
        length=4,
        protocol=ProtocolKind.SECAGG,
        security=SecurityMode.SEMI_HONEST,
    )


def test_graph_parameters_name_the_complete_flag_rule() -> None:
    good = dict(n=10, k=4, t=2, mode=SH, log2_security_failure=-50.0,
                log2_correctness_failure=-30.0, complete=False, max_corrupt=0, max_dropouts=3)
    GraphParameters(**good)  # type: ignore[arg-type]
    for change in ({"complete": True}, {"k": 9}):
        rule = r"^complete must be True exactly when k == n - 1$"
        with pytest.raises(ParameterError, match=rule):
            GraphParameters(**{**good, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(("population", "marked", "sampled"), [(10, 11, 5), (10, 5, 11)])
def test_a_hypergeometric_draw_larger_than_its_population_is_refused(
    population: int, marked: int, sampled: int
) -> None:
    # either one alone is enough
    with pytest.raises(ParameterError, match=r"^marked and sampled must not exceed population$"):
        log2_hypergeom_sf(population, marked, sampled, 1)


@pytest.mark.parametrize("k", [4.0, True])
def test_the_disconnection_bound_takes_only_an_int_k(k: object) -> None:
    with pytest.raises(ParameterError, match=r"^k must be even with 2 <= k <= n - 2"):
        log2_disconnection_probability(10, k, 2)  # type: ignore[arg-type]


def test_the_complete_graph_of_a_tiny_round_has_k_n_minus_1_whatever_the_cache() -> None:
    # choose_parameters is cached (an earlier test, or a parent process that forked
    # this one, may hold the answer): clear it so this call builds the answer
    params._choose.cache_clear()
    p = choose_parameters(n=4, corrupt_fraction=0.0, dropout_fraction=0.25)
    assert (p.n, p.k, p.t, p.complete, p.max_dropouts) == (4, 3, 2, True, 1)


def test_too_many_bad_clients_are_refused_with_their_sum() -> None:
    with pytest.raises(ParameterError) as info:
        choose_parameters(n=100, corrupt_fraction=0.4, dropout_fraction=0.51)
    assert str(info.value) == (
        "corrupt_fraction + dropout_fraction = 0.91 > 0.9: too few honest survivors for a "
        "sparse graph (and >= 1 leaves none at all)"
    )


def test_a_config_refuses_a_short_session_id_in_words() -> None:
    with pytest.raises(ParameterError, match=r"^session_id must be 32 bytes$"):
        dataclasses.replace(_config(), session_id=bytes(31))


def test_a_secagg_plus_config_without_a_graph_seed_is_refused_in_words() -> None:
    plus = dict(protocol=ProtocolKind.SECAGG_PLUS, neighbors=4)
    for seed in (b"", bytes(31), "x" * 32):
        with pytest.raises(ParameterError, match=r"^SecAgg\+ needs a 32-byte graph_seed$"):
            dataclasses.replace(_config(), graph_seed=seed, **plus)  # type: ignore[arg-type]


def test_bytes_without_the_config_magic_are_refused_in_words() -> None:
    data = _config().to_bytes()
    with pytest.raises(DecodeError, match=r"^not a RoundConfig \(bad magic\)$"):
        RoundConfig.from_bytes(b"XXXX" + data[4:])


def test_config_bytes_with_a_repeated_client_id_are_refused() -> None:
    data = _config(5).to_bytes()
    ids = struct.pack(">6I", 5, 1, 2, 3, 4, 5)  # the count, then the ids
    assert data.count(ids) == 1
    dup = data.replace(ids, struct.pack(">6I", 5, 1, 2, 2, 4, 5))
    with pytest.raises(DecodeError, match=r"^client ids must be >= 1 and strictly ascending$"):
        RoundConfig.from_bytes(dup)


def test_config_bytes_with_a_tag_out_of_place_name_the_four_ways_that_happens() -> None:
    data = _config().to_bytes()
    first_tag = data[6:8]  # after the magic and the wire version
    bad = data[:6] + struct.pack(">H", struct.unpack(">H", first_tag)[0] + 100) + data[8:]
    with pytest.raises(DecodeError) as info:
        RoundConfig.from_bytes(bad)
    assert str(info.value).endswith(
        "was expected (unknown, repeated, missing or out of order)"
    )


def test_a_policy_refuses_what_is_not_a_round_config_in_words() -> None:
    with pytest.raises(ParameterError, match=r"^config must be a RoundConfig$"):
        ClientPolicy().check("a config")  # type: ignore[arg-type]


def test_params_cli_names_a_bad_client_count() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"^not a number of clients: ' x'$"):
        params_cli._client_counts("100, x")


def test_params_cli_options_say_what_they_are() -> None:
    parser = argparse.ArgumentParser()
    params_cli.add_arguments(parser)
    seen = {
        a.dest: (a.help, a.metavar, a.default) for a in parser._actions if a.dest != "help"
    }
    choices = {a.dest: a.choices for a in parser._actions if a.choices is not None}
    assert choices == {"mode": ["semi-honest", "malicious"]}
    assert seen == {
        "clients": (
            "number of clients n (repeatable or comma list; 1e6 accepted); "
            "default 100,1000,10000,100000,1000000",
            "N[,N...]",
            None,
        ),
        "corrupt": ("fraction of corrupt clients (alpha)", None, 0.05),
        "dropout": ("fraction of clients that drop (delta)", None, 0.33),
        "security_bits": ("sigma: P[leak] <= 2^-sigma", None, 40.0),
        "correctness_bits": ("eta: P[round fails] <= 2^-eta", None, 20.0),
        "mode": ("threat model (default semi-honest)", None, "semi-honest"),
        "json": ("also write the results as JSON (- = stdout)", "PATH", None),
    }


def test_params_cli_refuses_an_unknown_threat_model_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_main(["params", "--mode", "curious"]) == 2
    assert "invalid choice: 'curious'" in capsys.readouterr().err


def test_params_cli_json_names_its_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["params", "--clients", "1000", "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {k: v for k, v in data.items() if k != "results"} == {
        "corrupt_fraction": 0.05,
        "dropout_fraction": 0.33,
        "security_bits": 40.0,
        "correctness_bits": 20.0,
        "mode": "semi-honest",
    }


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_secagg_plus_neighbors_beyond_n_minus_1_become_n_minus_1(extra: int) -> None:
    n = 6
    cfg = dataclasses.replace(
        _config(n), protocol=ProtocolKind.SECAGG_PLUS, neighbors=n + extra, graph_seed=bytes(32)
    )
    assert cfg.neighbors == n - 1 == cfg.degree


def test_a_malicious_config_with_t_at_most_half_of_k_is_refused_in_words() -> None:
    from secagg.primitives.sign import SigningKey

    keys = tuple((u, SigningKey.from_private_bytes(bytes([u]) * 32).public) for u in range(1, 6))
    # k = 4: t must exceed 2 (t = 1 is refused earlier, in any mode)
    with pytest.raises(ParameterError, match=r"^malicious mode needs t > k/2$"):
        dataclasses.replace(
            _config(), security=SecurityMode.MALICIOUS, identity_keys=keys, threshold=2
        )
    cfg = dataclasses.replace(
        _config(), security=SecurityMode.MALICIOUS, identity_keys=keys, threshold=3
    )
    assert (cfg.degree, cfg.threshold) == (4, 3)


# -- seed 29 (the fourth sample of the small modules) --------------------------------


def test_params_cli_takes_digit_groups_and_prints_its_table_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert params_cli._client_counts("10_000, 1_000, 1_0e2") == [10_000, 1_000, 1_000]
    for typo in ("1__000", "_100", "100_"):  # an underscore that is no digit group
        with pytest.raises(argparse.ArgumentTypeError) as exc:
            params_cli._client_counts(typo)
        assert str(exc.value) == f"not a number of clients: {typo!r}"
    assert cli_main(["params", "--clients", "1_000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("         n       k       t   P[security fails]  P[round fails]  graph")
    assert lines[2].split()[:3] == ["1000", "72", "24"]


def test_params_cli_json_results_carry_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["params", "--clients", "1000", "--mode", "malicious", "--json", "-"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert set(result) == {
        "n",
        "k",
        "t",
        "mode",
        "complete",
        "max_corrupt",
        "max_dropouts",
        "log2_security_failure",
        "log2_correctness_failure",
    }
    assert (result["n"], result["mode"], result["complete"]) == (1000, "malicious", False)


def test_a_complete_graph_takes_the_smallest_threshold_of_its_mode() -> None:
    """``protocols/secagg_params.md``: ``t = A + 1`` (semi-honest) or
    ``floor((A + n - 1)/2) + 1`` (malicious), raised to 2."""
    p = choose_parameters(n=5, corrupt_fraction=0.4, dropout_fraction=0.0, mode=SH)
    assert (p.complete, p.k, p.max_corrupt, p.t) == (True, 4, 2, 3)
    q = choose_parameters(
        n=5, corrupt_fraction=0.4, dropout_fraction=0.0, mode=ThreatModel.MALICIOUS
    )
    assert (q.complete, q.k, q.max_corrupt, q.t) == (True, 4, 2, 4)


def test_a_mode_that_is_not_a_threat_model_is_refused_in_words() -> None:
    with pytest.raises(ParameterError) as exc:
        choose_parameters(n=100, mode="semi-honest")  # type: ignore[arg-type]
    assert str(exc.value) == "mode must be a ThreatModel"
    with pytest.raises(ParameterError) as exc:
        dataclasses.replace(_config(), protocol="secagg")  # type: ignore[arg-type]
    assert str(exc.value) == "protocol must be a ProtocolKind"


@pytest.mark.parametrize(("tag", "what"), [(2, "protocol"), (3, "security mode")])
def test_a_config_with_an_unknown_enum_code_names_it(tag: int, what: str) -> None:
    data = bytearray(_config().to_bytes())
    pos = 6  # magic, version: then u16 tag, u32 len, value per field
    while struct.unpack_from(">H", data, pos)[0] != tag:
        pos += 6 + struct.unpack_from(">I", data, pos + 2)[0]
    data[pos + 6] = 9
    with pytest.raises(DecodeError) as exc:
        RoundConfig.from_bytes(bytes(data))
    assert str(exc.value) == f"unknown {what} code 9"
