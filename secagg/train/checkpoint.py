"""Checkpoints of a training run, written after every round, for ``--resume DIR``.

``DIR/checkpoint/<run>/`` holds ``state.json`` (format version, the run's
fingerprint, the round counter, every round record, the DP accountants' state) and
``weights.npy`` (the global trainable vector, float32 — the precision the model
keeps).  Both are written to temporary names and renamed, ``weights.npy`` first and
``state.json`` last, so a run killed mid-write leaves the previous round's pair.

What a resume restores: the global weights, the round counter, the client/dropout
sampling stream (replayed), the aggregators' per-round secret derivation counter,
the user-level accountant (its rounds' survivor counts) and every client's DP-SGD
accountant.  Local optimizers start fresh every round, so there is no optimizer
state to keep.  Secrets are fresh unless the run is seeded (then they repeat
exactly, and a resumed run equals the uninterrupted one).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg.errors import ParameterError

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "check_compatible", "load", "save"]

CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """One saved round of one run."""

    round: int
    fingerprint: dict[str, Any]
    records: list[dict[str, Any]]
    vector: npt.NDArray[np.float64]
    dpsgd_state: dict[str, list[list[float]]] | None
    user_dp_survivors: list[int]


def save(folder: Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` into ``folder`` atomically (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, ckpt.vector.astype(np.float32))
    os.replace(tmp, folder / "weights.npy")
    state = {
        "version": CHECKPOINT_VERSION,
        "round": ckpt.round,
        "fingerprint": ckpt.fingerprint,
        "records": ckpt.records,
        "dpsgd_state": ckpt.dpsgd_state,
        "user_dp_survivors": ckpt.user_dp_survivors,
        "weights_size": int(ckpt.vector.size),
    }
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / "state.json")


def load(folder: Path) -> Checkpoint:
    """Read a checkpoint.

    Raises
    ------
    ParameterError
        No checkpoint there, another format version, or files that do not match.
    """
    sp, wp = folder / "state.json", folder / "weights.npy"
    if not sp.is_file() or not wp.is_file():
        raise ParameterError(f"--resume: no checkpoint in {folder}")
    try:
        state = json.loads(sp.read_text(encoding="utf-8"))
        vec = np.load(wp, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParameterError(f"--resume: unreadable checkpoint in {folder}: {exc}") from exc
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ParameterError(f"--resume: {folder} holds a checkpoint of another format")
    if vec.ndim != 1 or vec.size != state.get("weights_size"):
        raise ParameterError(f"--resume: weights in {folder} do not match its state")
    return Checkpoint(
        round=int(state["round"]),
        fingerprint=dict(state["fingerprint"]),
        records=list(state["records"]),
        vector=vec.astype(np.float64),
        dpsgd_state=state.get("dpsgd_state"),
        user_dp_survivors=[int(x) for x in state.get("user_dp_survivors") or []],
    )


def check_compatible(
    saved: dict[str, Any], current: dict[str, Any], *, done: int, rounds: int,
    budget_over_rounds: bool,
) -> None:
    """Refuse to resume a run with another configuration.

    Everything in the fingerprint must match except ``rounds``, which may grow —
    unless a privacy budget was spread over the planned rounds (``budget_over_rounds``).

    Raises
    ------
    ParameterError
        One line naming the settings that differ.
    """
    keys = sorted((set(saved) | set(current)) - {"rounds"})
    diff = [k for k in keys if saved.get(k) != current.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} → {current.get(k)!r}" for k in diff[:4])
        more = f" (+{len(diff) - 4} more)" if len(diff) > 4 else ""
        raise ParameterError(
            f"--resume: the checkpoint is from another configuration ({shown}{more})"
        )
    if rounds < done:
        raise ParameterError(f"--resume: the checkpoint is at round {done} > --rounds {rounds}")
    if budget_over_rounds and rounds != saved.get("rounds"):
        raise ParameterError(
            f"--resume: the DP budget was planned over {saved.get('rounds')} rounds; "
            f"--rounds must stay {saved.get('rounds')}"
        )
