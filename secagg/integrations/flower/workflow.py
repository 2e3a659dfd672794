"""``SecAggPlusWorkflow``: a drop-in for Flower's server workflow, backed by secagg.

Use it exactly where Flower's is used::

    from secagg.integrations.flower import SecAggPlusWorkflow
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=..., ...))

Rules of this file:

* The round is the sans-IO :class:`secagg.masking.Server`; this class only moves
  its frames through ``grid.send_and_receive`` (one call per protocol phase, with
  ``timeout`` as the phase deadline) and feeds the replies back.  A node that does
  not answer, answers with an error, answers with bytes that do not decode or do not
  fit the phase, answers twice, or was never asked is a dropout of that phase: the
  server state does not change (``last_round.faults`` says why).  The round aborts
  only when a threshold can no longer be met, and then releases nothing.
* The server keeps one running sum; the masked inputs are added as they are read.
* The sampled nodes' FedAvg weights travel inside the masked vector (one extra
  coordinate), so the strategy receives the weighted mean and never a single
  client's update or weight.
* A reply from Flower's own ``secaggplus_mod`` (or another protocol version) is a
  dropout that ``last_round.mismatches`` names; when no node at all speaks our
  protocol, the setup phase raises :class:`ProtocolMismatchError` naming both sides
  (one hostile node cannot abort a round by claiming to run something else).

Parameters carried over from Flower's ``SecAggPlusWorkflow`` keep Flower's meaning:
``num_shares`` counts the shares of each secret *including the one a client keeps*,
so a client has ``num_shares - 1`` neighbors; ``reconstruction_threshold`` is the
number of shares that reconstruct it.  A float is a fraction (of the sampled nodes,
resp. of ``num_shares``), as in Flower.  ``None`` for both picks secagg's parameter
finder (Bell et al.; 2^-40 security, 2^-20 failure at 5% corrupt, 33% dropout).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from secagg.dp import DDPParams, DDPRound, Mechanism, plan
from secagg.encoding.modular import bits_for_sum
from secagg.errors import (
    AbortedError,
    CryptoError,
    DecodeError,
    ParameterError,
    RemoteProtocolError,
)
from secagg.integrations.flower import _flwr
from secagg.integrations.flower._scheme import decode_aggregate, decode_dp_mean_delta, split
from secagg.integrations.flower._wire import (
    FLOWER_RECORD,
    MISMATCH_MARKER,
    PROTOCOL,
    RECORD,
    REPLY_OF,
    STAGE_OF,
    ProtocolMismatchError,
    RoundSetup,
    Stage,
    UpdateEncoding,
    encode_setup,
    mismatch,
)
from secagg.masking import ProtocolKind, RoundConfig, SecurityMode, Server
from secagg.masking import messages as m
from secagg.phase import Phase
from secagg.primitives.rand import RandomSource, SystemRandom

__all__ = ["DistributedDP", "RoundReport", "SecAggPlusWorkflow"]

_LOG = logging.getLogger("secagg.flower")
#: Server phases that wait for nobody (no deadline to pass).
_SETTLED = (Phase.FINALIZING, Phase.COMPLETED, Phase.ABORTED)
_LOCAL = f"secagg's SecAggPlusWorkflow ({PROTOCOL})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedDP:
    """User-level distributed DP for the workflow (``protocols/dp.md``).

    Each client sends its model delta (new parameters minus the round's global
    ones) rotated, L2-clipped to ``l2_clip``, scaled, rounded and with its share of
    discrete noise (``mechanism``: ``"ddgauss"`` or ``"skellam"``); the server
    decodes the noisy mean delta and adds it to the global model.  The mean is
    unweighted (``num_examples`` would change the sensitivity).  The noise is
    calibrated so that ``rounds`` rounds give ``(epsilon, delta)`` per client with
    at least ``min_survivors`` survivors (an int, or a fraction of the sampled
    nodes); a round with fewer aborts and releases nothing, and the workflow refuses
    to run more than ``rounds`` rounds.  No amplification by subsampling is claimed.

    Raises
    ------
    ParameterError
        On out-of-range values.
    """

    epsilon: float
    delta: float = 1e-5
    l2_clip: float = 1.0
    rounds: int = 1
    mechanism: str = "ddgauss"
    bits: int = 20
    min_survivors: int | float = 0.8

    def __post_init__(self) -> None:
        try:
            Mechanism(self.mechanism)
        except ValueError:
            raise ParameterError("mechanism must be 'ddgauss' or 'skellam'") from None
        for name in ("epsilon", "l2_clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ParameterError(f"{name} must be a positive finite number")
        if not (isinstance(self.delta, float) and 0 < self.delta < 0.5):
            raise ParameterError("delta must be in (0, 0.5)")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ParameterError("rounds must be a positive integer")
        s = self.min_survivors
        if isinstance(s, bool) or not isinstance(s, int | float) or s <= 0 or (
            isinstance(s, float) and s > 1
        ):
            raise ParameterError("min_survivors must be a positive int or a fraction in (0, 1]")

    def survivors_for(self, n: int) -> int:
        s = self.min_survivors
        return max(1, min(n, math.ceil(s * n) if isinstance(s, float) else int(s)))


@dataclass(slots=True)
class RoundReport:
    """What one call of the workflow did (``SecAggPlusWorkflow.last_round``)."""

    round: int
    sampled: tuple[int, ...]  #: Flower node ids, in client-id order
    neighbors: int = 0
    threshold: int = 0
    bits: int = 0
    survivors: tuple[int, ...] = ()  #: node ids whose masked input is in the sum (U3)
    aborted: bool = False
    abort_reason: str | None = None
    total: np.ndarray | None = field(default=None, repr=False)  #: exact sum, mod 2^bits
    faults: list[str] = field(default_factory=list)  #: ignored replies, with the reason
    mismatches: list[str] = field(default_factory=list)  #: replies from another SecAgg+


def _check_count(name: str, v: object, *, allow_none: bool = True) -> None:
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ParameterError(f"{name} must be an int, a float or None")
    if isinstance(v, float) and not (math.isfinite(v) and 0 < v <= 1):
        raise ParameterError(f"{name} as a fraction must be in (0, 1]")


class SecAggPlusWorkflow:
    """Flower fit workflow whose aggregate is computed with secagg's SecAgg+.

    Parameters
    ----------
    num_shares:
        Shares per secret including the client's own (``k = num_shares - 1``
        neighbors); an int >= 3, a fraction of the sampled nodes, or ``None``
        (secagg's parameter finder).
    reconstruction_threshold:
        Shares that reconstruct a secret (``t``): an int, a fraction of
        ``num_shares``, or ``None``.
    max_weight:
        Largest ``num_examples`` a client may report (its FedAvg weight is
        ``num_examples / max_weight``); a larger one makes that client's reply an
        error (a dropout), never a wrapped sum.
    clipping_range:
        Parameters are clipped to ``[-clipping_range, clipping_range]``.
    quantization_range:
        Quantization levels per value, a power of two (``2^22``: 22 value bits).
    modulus_range:
        ``None`` (default): the smallest power of two that holds the sum of the
        sampled nodes' vectors without wrapping.  A given power of two must be at
        least that, else :class:`ParameterError`.
    timeout:
        Seconds each phase waits for replies (the phase deadline); ``None`` waits
        for every reply.
    security:
        ``"semi-honest"`` or ``"malicious"`` (signed keys and a consistency round;
        needs ``identity_keys`` and clients built with ``SecAggPlusMod(identity_key=...)``).
    identity_keys:
        Malicious mode: Flower node id -> 32-byte Ed25519 public identity key.
    dp:
        :class:`DistributedDP` to add user-level distributed DP (clients send noisy
        clipped deltas; the strategy receives global + noisy mean delta).
    rng:
        Source of the session id, graph seed and rotation seed (default: the OS
        CSPRNG).

    Raises
    ------
    ParameterError
        On a value that is out of range or insecure.
    """

    def __init__(
        self,
        num_shares: int | float | None,
        reconstruction_threshold: int | float | None,
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 1 << 22,
        modulus_range: int | None = None,
        timeout: float | None = None,
        security: SecurityMode | str = SecurityMode.SEMI_HONEST,
        identity_keys: Mapping[int, bytes] | None = None,
        dp: DistributedDP | None = None,
        rng: RandomSource | None = None,
    ) -> None:
        if dp is not None and not isinstance(dp, DistributedDP):
            raise ParameterError("dp must be a DistributedDP")
        _check_count("num_shares", num_shares)
        _check_count("reconstruction_threshold", reconstruction_threshold)
        if isinstance(num_shares, int) and num_shares < 3:
            raise ParameterError("num_shares as an integer must be at least 3")
        if isinstance(reconstruction_threshold, int) and reconstruction_threshold < 2:
            raise ParameterError("reconstruction_threshold as an integer must be at least 2")
        if (
            isinstance(num_shares, int)
            and isinstance(reconstruction_threshold, int)
            and reconstruction_threshold >= num_shares
        ):
            raise ParameterError("reconstruction_threshold must be less than num_shares")
        if (num_shares is None) != (reconstruction_threshold is None):
            raise ParameterError("give both num_shares and reconstruction_threshold, or neither")
        for name, v in (("max_weight", max_weight), ("clipping_range", clipping_range)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ParameterError(f"{name} must be a positive finite number")
        q = quantization_range
        if isinstance(q, bool) or not isinstance(q, int) or q < 2 or q & (q - 1):
            raise ParameterError("quantization_range must be a power of two >= 2")
        value_bits = q.bit_length() - 1
        if value_bits > 52:
            raise ParameterError("quantization_range must be at most 2^52")
        if modulus_range is not None:
            r = modulus_range
            if isinstance(r, bool) or not isinstance(r, int) or r < 2 or r & (r - 1):
                raise ParameterError("modulus_range must be a power of two")
            if r.bit_length() - 1 > 64:
                raise ParameterError("modulus_range must be at most 2^64")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ParameterError("timeout must be a positive number or None")
        try:
            mode = SecurityMode(security)
        except ValueError:
            modes = [s.value for s in SecurityMode]
            raise ParameterError(f"security must be one of {modes}") from None
        if mode is SecurityMode.MALICIOUS and not identity_keys:
            raise ParameterError("malicious mode needs identity_keys (node id -> public key)")
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.max_weight = float(max_weight)
        self.clipping_range = float(clipping_range)
        self.quantization_range = q
        self.value_bits = value_bits
        self.modulus_range = modulus_range
        self.timeout = timeout
        self.security = mode
        self.identity_keys = dict(identity_keys or {})
        self.dp = dp
        self._dp_plans: dict[tuple[int, int], DDPParams] = {}
        self.dp_rounds_used = 0
        self._rng: RandomSource = rng if rng is not None else SystemRandom()
        self.last_round: RoundReport | None = None

    # -- parameters of one round -----------------------------------------------------------

    def round_parameters(self, n: int) -> tuple[int | None, int | None]:
        """``(k, t)`` for ``n`` sampled nodes (``None``: the parameter finder decides)."""
        if self.num_shares is None or self.reconstruction_threshold is None:
            return None, None
        shares = self.num_shares
        if isinstance(shares, float):  # Flower's rule for a fraction
            s = round(shares * n)
            if s < n and s % 2 == 0:
                s += 1
            shares = n if s <= 2 else s
        k = min(int(shares) - 1, n - 1)
        t_in = self.reconstruction_threshold
        t = max(round(t_in * shares), 2) if isinstance(t_in, float) else int(t_in)
        return k, min(t, k)

    def _bits(self, n: int) -> int:
        need = bits_for_sum(self.value_bits, n)
        if self.modulus_range is None:
            return need
        have = self.modulus_range.bit_length() - 1
        if have < need:
            raise ParameterError(
                f"modulus_range 2^{have} cannot hold the sum of {n} values of "
                f"{self.value_bits} bits (need 2^{need}); leave it None"
            )
        return have

    # -- Flower's Workflow signature -------------------------------------------------------

    def __call__(self, grid: Any, context: Any) -> None:
        """Run one SecAgg+ fit round (Flower's ``(grid, context)`` call).

        Raises
        ------
        TypeError
            ``context`` is not a ``LegacyContext`` (as Flower's workflow).
        ProtocolMismatchError
            No sampled node runs our mod (Flower's own mod, or another version).
        """
        if not isinstance(context, _flwr.LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        cfg = context.state.config_records[_flwr.MAIN_CONFIGS_RECORD]
        current_round = cast(int, cfg[_flwr.WorkflowKey.CURRENT_ROUND])
        arr_record = context.state.array_records[_flwr.MAIN_PARAMS_RECORD]
        parameters = _flwr.arrayrecord_to_parameters(arr_record, keep_input=True)
        instructions = context.strategy.configure_fit(
            current_round, parameters, context.client_manager
        )
        if not instructions:
            _LOG.info("configure_fit: no clients selected, cancel")
            return
        fitins = {p.node_id: _flwr.fitins_to_recorddict(f, True) for p, f in instructions}
        proxies = {p.node_id: p for p, _ in instructions}
        nodes = tuple(sorted(fitins))
        report = RoundReport(round=current_round, sampled=nodes)
        self.last_round = report
        if len(nodes) < 2:
            report.aborted, report.abort_reason = True, "fewer than 2 sampled nodes"
            _LOG.error("SecAgg+: %s", report.abort_reason)
            return
        global_arrays = _flwr.parameters_to_ndarrays(parameters)
        if self.dp is not None and self.dp_rounds_used >= self.dp.rounds:
            raise ParameterError(
                f"the DP budget covers {self.dp.rounds} rounds; round {self.dp_rounds_used + 1} "
                "would exceed it"
            )
        setup = self._setup(nodes, global_arrays)
        if self.dp is not None:
            self.dp_rounds_used += 1
        report.neighbors = setup.config.degree
        report.threshold = setup.config.threshold
        report.bits = setup.config.bits
        server = Server(config=setup.config)
        node_of = dict(enumerate(nodes, start=1))
        cid_of = {v: k for k, v in node_of.items()}
        fitres: dict[int, Any] = {}
        failures: list[Any] = []

        outgoing: dict[int, bytes] = {cid: encode_setup(setup) for cid in node_of}
        stage = Stage.SETUP
        group = str(current_round)
        while True:
            msgs = []
            for cid, payload in outgoing.items():
                nid = node_of[cid]
                content = fitins[nid] if stage is Stage.MASKED_INPUT else _flwr.RecordDict()
                content.config_records[RECORD] = _flwr.ConfigRecord(
                    {"protocol": PROTOCOL, "stage": stage.value, "payload": payload}
                )
                # A node running Flower's own mod reads this record and fails with our
                # explanation as the "stage" it did not expect.
                content.config_records[FLOWER_RECORD] = _flwr.ConfigRecord(
                    {"stage": str(mismatch(_LOCAL, "Flower's secaggplus_mod"))}
                )
                msgs.append(
                    _flwr.Message(
                        content=content, dst_node_id=nid,
                        message_type=_flwr.MessageType.TRAIN, group_id=group,
                    )
                )
            asked = {node_of[c] for c in outgoing}
            del outgoing
            phase = server.phase
            out: list[tuple[int, m.Message]] = []
            replies = grid.send_and_receive(msgs, timeout=self.timeout)
            del msgs
            for reply in replies:
                got = self._take(reply, stage, asked, cid_of, server, report, failures)
                if got is None:
                    continue
                cid, more, res = got
                out.extend(more)
                if res is not None:
                    fitres[cid] = res
                asked.discard(node_of[cid])
            del replies
            if stage is Stage.SETUP and report.mismatches and len(asked) == len(nodes):
                # nobody speaks our protocol: a misconfigured deployment, not dropouts
                raise ProtocolMismatchError(report.mismatches[0])
            if report.mismatches and stage is Stage.SETUP:
                _LOG.warning("SecAgg+: %d nodes run another SecAgg+ implementation and drop "
                             "out: %s", len(report.mismatches), report.mismatches[0])
            if server.phase is phase and phase not in _SETTLED:  # some did not answer
                out.extend(server.deadline_passed())
            if server.aborted:
                report.aborted, report.abort_reason = True, server.abort_reason
                report.survivors = tuple(node_of[c] for c in server.survivors)
                _LOG.error("SecAgg+ round aborted: %s", server.abort_reason)
                return
            if server.phase is Phase.FINALIZING:
                break
            outgoing = {
                cid: m.encode(msg) for cid, msg in out if not isinstance(msg, m.Abort)
            }
            kinds = {STAGE_OF.get(msg.TYPE) for _, msg in out}
            if len(kinds) != 1 or None in kinds:  # pragma: no cover - the server's contract
                raise AssertionError("server emitted messages of more than one phase")
            stage = kinds.pop()  # type: ignore[assignment]

        total = server.finalize()
        survivors = server.survivors
        report.survivors = tuple(node_of[c] for c in survivors)
        report.total = total
        dtypes = [a.dtype for a in global_arrays]
        try:
            if setup.dp is not None:
                delta = decode_dp_mean_delta(setup.encoding, setup.dp, total, len(survivors))
                flat = np.concatenate([a.astype(np.float64).ravel() for a in global_arrays])
                mean = split(setup.encoding, flat + delta, dtypes)
            else:
                mean = decode_aggregate(setup.encoding, total, survivors, dtypes)
        except AbortedError as exc:
            report.aborted, report.abort_reason = True, str(exc)
            _LOG.error("SecAgg+ round aborted: %s", exc)
            return
        aggregated = _flwr.ndarrays_to_parameters(mean)
        results = []
        for cid in survivors:
            res = fitres[cid]
            res.parameters = aggregated
            results.append((proxies[node_of[cid]], res))
        _LOG.info(
            "aggregate_fit: %s survivors, %s failures, %s ignored replies",
            len(results), len(failures), len(report.faults),
        )
        agg_params, agg_metrics = context.strategy.aggregate_fit(
            current_round, results, failures
        )
        if agg_params:
            context.state.array_records[_flwr.MAIN_PARAMS_RECORD] = (
                _flwr.parameters_to_arrayrecord(agg_params, True)
            )
            context.history.add_metrics_distributed_fit(
                server_round=current_round, metrics=agg_metrics
            )

    # -- helpers ------------------------------------------------------------------------------

    def _setup(self, nodes: tuple[int, ...], arrays: list[Any]) -> RoundSetup:
        n = len(nodes)
        bits = self._bits(n)
        enc = UpdateEncoding(
            clip=self.clipping_range, value_bits=self.value_bits, max_weight=self.max_weight,
            max_clients=n, bits=bits, shapes=tuple(tuple(a.shape) for a in arrays),
        )
        k, t = self.round_parameters(n)
        dp_round = None
        length = enc.length
        if self.dp is not None:
            key = (enc.length - 1, n)
            if key not in self._dp_plans:
                d = self.dp
                self._dp_plans[key] = plan(
                    mechanism=Mechanism(d.mechanism), epsilon=d.epsilon, delta=d.delta,
                    dim=enc.length - 1, l2_clip=d.l2_clip, bits=d.bits,
                    min_survivors=d.survivors_for(n), max_clients=n, rounds=d.rounds,
                    sampling_rate=1.0,
                )
            params = self._dp_plans[key]
            dp_round = DDPRound(params=params, rotation_seed=self._rng.random_bytes(32))
            bits, length = params.bits, params.padded_dim
        keys: dict[int, bytes] | None = None
        if self.security is SecurityMode.MALICIOUS:
            missing = [v for v in nodes if v not in self.identity_keys]
            if missing:
                raise ParameterError(f"no identity key for sampled nodes {missing[:5]}")
            keys = {i: self.identity_keys[v] for i, v in enumerate(nodes, start=1)}
        config = RoundConfig.create(
            session_id=self._rng.random_bytes(32),
            clients=list(range(1, n + 1)),
            bits=bits,
            length=length,
            protocol=ProtocolKind.SECAGG_PLUS,
            security=self.security,
            neighbors=k,
            threshold=t,
            graph_seed=self._rng.random_bytes(32),
            identity_keys=keys,
        )
        return RoundSetup(config=config, nodes=nodes, encoding=enc, dp=dp_round)

    @staticmethod
    def _take(
        reply: Any,
        stage: Stage,
        asked: set[int],
        cid_of: Mapping[int, int],
        server: Server,
        report: RoundReport,
        failures: list[Any],
    ) -> tuple[int, list[tuple[int, m.Message]], Any] | None:
        """Feed one reply to the server; ``None`` when it is ignored (a dropout).

        Everything is checked before the server sees the frame (a masked input in
        the sum must come with a usable ``FitRes``); the third item is that ``FitRes``
        in the masked-input stage, else ``None``.
        """
        nid = reply.metadata.src_node_id
        if nid not in asked:
            report.faults.append(f"{stage.value}: reply from node {nid}, which was not asked")
            return None
        if reply.has_error():
            reason = str(reply.error.reason or "")
            if MISMATCH_MARKER in reason:
                exc = mismatch(
                    _LOCAL,
                    f"another SecAgg+ client mod on node {nid} (Flower's secaggplus_mod, or "
                    "another version of ours), which rejected the setup",
                )
                report.mismatches.append(str(exc))
                report.faults.append(f"{stage.value}: node {nid}: {exc}")
                return None
            failures.append(RemoteProtocolError(f"node {nid}: {reason}"))
            report.faults.append(f"{stage.value}: node {nid} replied with an error: {reason}")
            return None
        records = reply.content.config_records
        other = None
        if RECORD not in records:
            if FLOWER_RECORD not in records:
                report.faults.append(f"{stage.value}: node {nid} replied without our record")
                return None
            other = f"Flower's secaggplus_mod (node {nid})"
        elif records[RECORD].get("protocol") != PROTOCOL:
            other = f"node {nid} speaking {records[RECORD].get('protocol')!r}"
        if other is not None:
            exc = mismatch(_LOCAL, other)
            report.mismatches.append(str(exc))
            report.faults.append(f"{stage.value}: node {nid}: {exc}")
            return None
        rec = records[RECORD]
        payload = rec.get("payload")
        if rec.get("stage") != stage.value or not isinstance(payload, bytes):
            report.faults.append(f"{stage.value}: node {nid} sent a malformed SecAgg+ record")
            return None
        if len(payload) < 3 or payload[2] != int(REPLY_OF[stage]):
            report.faults.append(f"{stage.value}: node {nid} sent the wrong message type")
            return None
        res = None
        if stage is Stage.MASKED_INPUT:
            try:
                res = _flwr.recorddict_to_fitres(reply.content, True)
            except Exception as exc:  # any malformed FitRes record: this node drops out
                report.faults.append(f"{stage.value}: node {nid}: unusable FitRes: {exc!r}")
                return None
        cid = cid_of[nid]
        try:
            out = server.receive(cid, payload)
        except (DecodeError, RemoteProtocolError, CryptoError) as exc:
            report.faults.append(f"{stage.value}: node {nid}: {type(exc).__name__}: {exc}")
            return None
        return cid, out, res
