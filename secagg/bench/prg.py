"""``secagg bench prg``: our masked add against the raw AES-CTR + numpy limit.

What is measured, for an ``n``-element uint32 vector (``n = 10^7``, ``10^6`` with
``--quick``) and ``masks`` seeds (b = 32):

* **ours** — :func:`secagg.primitives.prg.apply_masks` with ``masks`` seeds, signs
  alternating ``+1/-1``.  Included in its time: HKDF key derivation per seed,
  input validation, cipher set-up.
* **raw** — the fastest hand-written equivalent we could make directly on
  ``cryptography`` and numpy: AES-128-CTR keystream written with ``update_into``
  into one reused buffer, then an in-place ``np.add``/``np.subtract`` on the uint32
  vector; the AES keys are precomputed (no KDF), and several chunk sizes are tried
  in a sweep first — the best one is the baseline.

Both are timed interleaved, best of ``repeat``.  ``throughput`` is mask bytes
applied per second (``4 * n * masks / t``); ``limit_ratio = ours / raw``.  The
raw keys are our PRG keys, so after the same number of calls both vectors must be
equal — the benchmark checks that, so a broken baseline cannot flatter us.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secagg.bench.common import best_of, machine_info, markdown_table
from secagg.errors import ParameterError
from secagg.primitives import prg

__all__ = ["raw_masked_add", "run"]

TARGET_LIMIT_RATIO = 0.70
_SWEEP_CHUNKS = (1 << 14, 1 << 15, 1 << 16, 1 << 18, 1 << 20)


def raw_masked_add(
    vec: npt.NDArray[np.uint32],
    keys: list[tuple[bytes, bool]],
    *,
    chunk: int,
    buf: npt.NDArray[np.uint32],
    zeros: bytes,
    start: int = 0,
    stop: int | None = None,
) -> None:
    """The baseline: AES-128-CTR keystream into ``buf`` (reused), then in-place add/sub.

    Chunk-major: every key's keystream is applied to one vector chunk while it is hot
    in cache.  ``buf`` holds at least ``chunk`` uint32 and ``zeros`` is ``4 * chunk``
    zero bytes.  ``vec[start:stop]`` is masked with the keystream from element
    ``start`` on (a multiple of 4, so the counter starts on a block boundary), which
    lets threads split the limit by ranges.
    """
    end = len(vec) if stop is None else stop
    nonce = (start * 4 // 16).to_bytes(16, "big")
    encs = [
        (Cipher(algorithms.AES(k), modes.CTR(nonce)).encryptor(), positive)
        for k, positive in keys
    ]
    bview = memoryview(buf).cast("B")  # type: ignore[arg-type]
    for a in range(start, end, chunk):
        m = min(chunk, end - a)
        part = vec[a : a + m]
        ks = buf[:m]
        for enc, positive in encs:
            enc.update_into(zeros[: 4 * m], bview[: 4 * m])
            if positive:
                np.add(part, ks, out=part)
            else:
                np.subtract(part, ks, out=part)


def _raw_fn(
    vec: npt.NDArray[np.uint32], keys: list[tuple[bytes, bool]], chunk: int
) -> Callable[[], None]:
    buf = np.empty(chunk, dtype=np.uint32)
    zeros = bytes(4 * chunk)

    def fn() -> None:
        raw_masked_add(vec, keys, chunk=chunk, buf=buf, zeros=zeros)

    return fn


def run(quick: bool = False, *, masks: int = 4, repeat: int | None = None) -> dict[str, Any]:
    """Run the PRG benchmark and return its JSON-ready result.

    Parameters
    ----------
    quick:
        ``10^6`` elements instead of ``10^7``, fewer repeats.
    masks:
        Number of seeds applied per call (a handful: pairwise masks plus the self mask).
    repeat:
        Best-of-N count (default 7, or 3 when ``quick``).

    Raises
    ------
    ParameterError
        If ``masks < 1`` or ``repeat < 1``.
    """
    if masks < 1:
        raise ParameterError("masks must be >= 1")
    n = 10**6 if quick else 10**7
    reps = repeat if repeat is not None else (3 if quick else 7)
    if reps < 1:
        raise ParameterError("repeat must be >= 1")
    bits = 32
    seeds = [bytes([i + 1]) * 32 for i in range(masks)]
    signs = [1 if i % 2 == 0 else -1 for i in range(masks)]
    mask_list = list(zip(seeds, signs, strict=True))
    keys = [(prg.prg_key(s), sg == 1) for s, sg in mask_list]
    init = np.arange(n, dtype=np.uint32)

    # 1. chunk-size sweep for the raw baseline (on its own vector)
    sweep_vec = init.copy()
    sweep_fns = {str(c): _raw_fn(sweep_vec, keys, c) for c in _SWEEP_CHUNKS if c <= n}
    sweep_fns[str(n)] = _raw_fn(sweep_vec, keys, n)  # one chunk: keystream of the whole vector
    sweep = best_of(sweep_fns, repeat=max(2, reps // 2), warmup=1)
    best_chunk = int(min(sweep, key=lambda c: sweep[c].best_s))

    # 2. ours vs the best raw, interleaved, same number of calls each
    ours_vec = init.copy()
    raw_vec = init.copy()

    def ours() -> None:
        prg.apply_masks(ours_vec, mask_list, bits)

    timings = best_of({"ours": ours, "raw": _raw_fn(raw_vec, keys, best_chunk)}, repeat=reps)
    if not np.array_equal(ours_vec, raw_vec):
        raise RuntimeError("benchmark self-check failed: ours and raw disagree")

    mask_bytes = 4 * n * masks

    def summary(t: float) -> dict[str, float]:
        return {
            "best_s": t,
            "throughput_GBps": mask_bytes / t / 1e9,
            "elements_per_s": n * masks / t,
        }

    ours_s = summary(timings["ours"].best_s)
    raw_s = summary(timings["raw"].best_s)
    ratio = ours_s["throughput_GBps"] / raw_s["throughput_GBps"]
    return {
        "benchmark": "prg",
        "quick": quick,
        "elements": n,
        "dtype": "uint32",
        "bits": bits,
        "masks": masks,
        "repeat": reps,
        "ours": {**ours_s, "median_s": timings["ours"].median_s,
                 "chunk_elements": prg.CHUNK_ELEMENTS},
        "raw": {**raw_s, "median_s": timings["raw"].median_s, "chunk_elements": best_chunk},
        "raw_chunk_sweep_best_s": {c: t.best_s for c, t in sweep.items()},
        "limit_ratio": ratio,
        "target_limit_ratio": TARGET_LIMIT_RATIO,
        "meets_target": None if quick else ratio >= TARGET_LIMIT_RATIO,
        "baseline": (
            "cryptography AES-128-CTR update_into a reused buffer + numpy in-place uint32 "
            "add/subtract, precomputed keys, best chunk size from the sweep"
        ),
        "self_check": "ours and raw vectors equal after the timed calls",
        "machine": machine_info(),
    }


def markdown(result: dict[str, Any]) -> str:
    """Human-readable summary of :func:`run`'s result."""
    rows = [
        ["ours (apply_masks)", result["ours"]["chunk_elements"], result["ours"]["best_s"] * 1e3,
         result["ours"]["throughput_GBps"]],
        ["raw AES-CTR + numpy", result["raw"]["chunk_elements"], result["raw"]["best_s"] * 1e3,
         result["raw"]["throughput_GBps"]],
    ]
    table = markdown_table(["variant", "chunk (elements)", "best ms", "GB/s of mask"], rows)
    return (
        f"PRG masked add: {result['elements']:,} uint32 x {result['masks']} masks, "
        f"best of {result['repeat']}\n\n{table}\n\n"
        f"limit_ratio = {result['limit_ratio']:.3f} (target >= {result['target_limit_ratio']})"
    )
