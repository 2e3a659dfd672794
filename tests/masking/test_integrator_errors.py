"""What an integrator sees when they hold the API wrong (issue 18, items 6-8).

A wrong input type says what it received and where encoded inputs come from; a
message object handed to ``Server.receive`` is the caller's bug
(:class:`LocalProtocolError`), not the peer's; the documented defaults hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.encoding.quantize import QuantizationSpec, bits_for_sum
from secagg.errors import LocalProtocolError, ParameterError, RemoteProtocolError
from secagg.masking.client import Client
from secagg.masking.config import ProtocolKind, RoundConfig

from .masking_harness import Harness


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (np.zeros(6, dtype=np.float64), "got a 1-D float64 array"),
        (np.zeros(6, dtype=np.int64), "got a 1-D int64 array"),
        (np.zeros((2, 3), dtype=np.uint32), "got a 2-D uint32 array"),
        ([0] * 6, "got a list"),
        ((0,) * 6, "got a tuple"),
    ],
)
def test_client_input_error_names_what_it_got_and_the_way_to_encode(value, got):
    h = Harness.make(n=3, bits=16)
    with pytest.raises(ParameterError) as exc:
        Client(config=h.config, client_id=1, input_vector=value)
    msg = str(exc.value)
    assert got in msg and "uint32" in msg and "QuantizationSpec.quantize" in msg


def test_client_input_error_names_a_foreign_tensor_type():
    class Tensor:  # stands in for torch.Tensor without importing torch
        pass

    h = Harness.make(n=3, bits=16)
    with pytest.raises(ParameterError, match=r"got a .*Tensor"):
        Client(config=h.config, client_id=1, input_vector=Tensor())


def test_server_receive_of_a_message_object_is_a_local_error():
    h = Harness.make(n=3)
    msg = h.clients[1].start()
    with pytest.raises(LocalProtocolError, match="handle") as exc:
        h.server.receive(1, msg)  # type: ignore[arg-type]
    assert not isinstance(exc.value, RemoteProtocolError)
    # nothing changed: the same message as bytes is still accepted once
    from secagg.masking import messages as m

    h.server.receive(1, m.encode(msg))
    with pytest.raises(RemoteProtocolError):
        h.server.receive(1, m.encode(msg))


def test_quantization_spec_bits_default_picks_the_minimum():
    spec = QuantizationSpec(clip=1.0, value_bits=8, max_clients=100)
    assert spec.bits == bits_for_sum(8, 100)
    assert QuantizationSpec(clip=1.0, value_bits=8, max_clients=100, bits=0).bits == spec.bits


def test_round_config_create_secagg_plus_needs_the_graph_seed():
    ids = list(range(1, 6))
    with pytest.raises(ParameterError, match="graph_seed"):
        RoundConfig.create(session_id=bytes(32), clients=ids, bits=16, length=4,
                           protocol=ProtocolKind.SECAGG_PLUS)
    cfg = RoundConfig.create(session_id=bytes(32), clients=ids, bits=16, length=4,
                             protocol=ProtocolKind.SECAGG_PLUS, graph_seed=bytes(range(32)))
    assert cfg.neighbors is not None and cfg.threshold >= 2
