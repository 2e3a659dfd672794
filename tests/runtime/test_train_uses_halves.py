"""The training loop's aggregators run exactly the scheme halves (no private path),
and importing the halves loads no optional dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from secagg.encoding.quantize import QuantizationSpec
from secagg.primitives.rand import InsecureDeterministicRandom
from secagg.runtime.schemes import MaskedClientHalf, MaskedServerHalf, SchemeKind, SumOutcome
from secagg.sim.runtime import Phase, secure_sum
from secagg.train.aggregators import AggregatorKind, make_aggregator


def _rng(seed: int) -> InsecureDeterministicRandom:
    return InsecureDeterministicRandom(seed, warn=False)


@pytest.mark.parametrize("kind", [SchemeKind.SECAGG, SchemeKind.SECAGG_PLUS])
def test_masked_aggregator_is_client_halves_protocol_server_half(kind: SchemeKind) -> None:
    ups = {u: np.linspace(-0.08, 0.08, 50) * u for u in (2, 4, 6, 9, 11)}
    agg = make_aggregator(kind, max_clients=5, clip=0.05, value_bits=12, rng=_rng(7))
    got = agg.aggregate(ups, dropped=[6])
    # the same round by hand, from the documented randomness labels
    rng = _rng(7).child("aggregation/1")
    spec = QuantizationSpec(clip=0.05, value_bits=12, max_clients=5)
    client = MaskedClientHalf(kind=kind, spec=spec, length=50)
    server = MaskedServerHalf(kind=kind, spec=spec, length=50)
    enc = {u: client.encode(x, rng.child(f"quantize/{u}")) for u, x in ups.items()}
    res = secure_sum(enc, bits=spec.bits, protocol=kind.protocol, rng=rng.child("secure-sum"),
                     dropouts={Phase.MASKED_INPUT: [6]})
    want = server.decode(SumOutcome(total=res.total, survivors=res.survivors))
    assert got.survivors == want.survivors == (2, 4, 9, 11)
    assert np.array_equal(got.mean, want.mean)
    assert got.clipped_fraction == pytest.approx(
        np.mean([client.clipped_fraction(x) for x in ups.values()])
    ) and got.clipped_fraction > 0


def test_aggregator_kind_is_the_scheme_vocabulary() -> None:
    assert AggregatorKind is SchemeKind
    assert [k.value for k in SchemeKind] == ["plain", "secagg", "secagg+", "he-ckks", "he-bfv",
                                         "lightsecagg"]


def test_importing_the_halves_loads_no_optional_dependency() -> None:
    code = (
        "import sys, json, secagg.runtime.schemes; "
        "print(json.dumps([m for m in ('tenseal', 'torch', 'scipy', 'opacus', 'secagg.sim', "
        "'secagg.train') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout) == []
