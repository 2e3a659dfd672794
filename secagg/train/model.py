"""The model side of the training loop: a byte tokenizer, a tiny causal LM, and the
trainable parameters as one flat float vector.

The default model is a :class:`transformers.LlamaForCausalLM` built from a
:class:`transformers.LlamaConfig` with random initialisation (nothing is
downloaded) over a byte vocabulary (256 byte values + BOS/EOS/PAD).  ``lora_rank > 0``
wraps it with ``peft`` LoRA adapters and freezes the base; ``lora_rank == 0``
trains every parameter.  A local Hugging Face model directory can be loaded instead
(``local_files_only=True``: never the network).

Only the *trainable* parameters travel: :func:`trainable_vector` flattens them
(through :mod:`secagg.encoding.tensors`, sorted by name) and
:func:`load_trainable_vector` writes a vector back.

torch, transformers and peft are imported lazily (extra ``train``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from secagg._extras import require
from secagg.encoding.tensors import Layout, flatten, unflatten
from secagg.errors import ParameterError

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "LoadedModel",
    "TinyLlamaSpec",
    "Tokenizer",
    "build_model",
    "load_trainable_vector",
    "sample_text",
    "save_pretrained",
    "trainable_layout",
    "trainable_vector",
]


class Tokenizer(Protocol):
    """What the loop needs from a tokenizer."""

    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, plus BOS=256, EOS=257, PAD=258.

    Lossless for any text: :meth:`decode` drops the specials and decodes the bytes
    with ``errors="replace"`` (a sampled model may emit invalid UTF-8).
    """

    __slots__ = ()

    vocab_size = 259
    bos_id = 256
    eos_id = 257
    pad_id = 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """Adapter for a Hugging Face tokenizer loaded from a local model directory."""

    __slots__ = ("_tok", "bos_id", "eos_id", "pad_id", "vocab_size")

    def __init__(self, tok: Any) -> None:
        self._tok = tok
        self.vocab_size = len(tok)
        eos = tok.eos_token_id
        bos = tok.bos_token_id if tok.bos_token_id is not None else eos
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        if eos is None or bos is None or pad is None:
            raise ParameterError("the tokenizer defines neither an EOS nor a BOS token")
        self.eos_id, self.bos_id, self.pad_id = int(eos), int(bos), int(pad)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class TinyLlamaSpec:
    """Shape of the default random-init Llama (about 0.4 M parameters).

    Parameters
    ----------
    hidden_size, intermediate_size, num_layers, num_heads:
        Transformer dimensions; ``hidden_size`` must be divisible by ``num_heads``.
    max_positions:
        Longest sequence the model accepts.
    """

    hidden_size: int = 128
    intermediate_size: int = 344
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 512

    def __post_init__(self) -> None:
        names = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "max_positions")
        for name in names:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(f"{name} must be a positive integer")
        if self.hidden_size % self.num_heads:
            raise ParameterError("hidden_size must be divisible by num_heads")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedModel:
    """A model ready for federated training.

    Attributes
    ----------
    model:
        The torch module (a ``peft`` model when ``lora_rank > 0``).
    tokenizer:
        Its tokenizer.
    layout:
        Names and shapes of the trainable parameters, in the order they are flattened.
    lora_rank:
        0 for full training.
    description:
        One line for reports.
    """

    model: Any
    tokenizer: Tokenizer
    layout: Layout
    lora_rank: int
    description: str
    max_positions: int

    @property
    def num_trainable(self) -> int:
        return self.layout.size


def _lora_targets(model: Any) -> list[str]:
    """Linear layers to adapt: the attention and MLP projections that exist in ``model``."""
    torch = require("torch", "train")
    wanted = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    present = {
        name.rsplit(".", 1)[-1]
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear)
    }
    # Empty for GPT-2 style models (Conv1D 'c_attn' / 'c_proj'): peft knows its own defaults.
    return [w for w in wanted if w in present]


def build_model(
    *,
    lora_rank: int = 0,
    model_path: str | os.PathLike[str] | None = None,
    spec: TinyLlamaSpec | None = None,
    seed: int = 0,
    lora_alpha: float | None = None,
) -> LoadedModel:
    """Build the default tiny Llama, or load a local model directory.

    Parameters
    ----------
    lora_rank:
        ``0``: train every parameter.  ``R > 0``: add LoRA adapters of rank ``R`` to the
        attention and MLP projections and freeze everything else.
    model_path:
        A local Hugging Face model directory (``config.json``, weights, tokenizer
        files).  Loaded with ``local_files_only=True``.  ``None``: the tiny random-init
        Llama with the :class:`ByteTokenizer`.
    spec:
        Dimensions of the tiny model (ignored with ``model_path``).
    seed:
        ``torch.manual_seed`` before the random initialisation.
    lora_alpha:
        LoRA scaling numerator (default ``2 * lora_rank``).

    Raises
    ------
    ParameterError
        Negative rank, or a model directory that does not exist / cannot be loaded.
    MissingExtraError
        torch / transformers / peft are not installed.
    """
    if isinstance(lora_rank, bool) or not isinstance(lora_rank, int) or lora_rank < 0:
        raise ParameterError("lora_rank must be an integer >= 0")
    torch = require("torch", "train")
    transformers = require("transformers", "train")
    torch.manual_seed(seed)
    tokenizer: Tokenizer
    if model_path is None:
        spec = spec or TinyLlamaSpec()
        btok = ByteTokenizer()
        cfg = transformers.LlamaConfig(
            vocab_size=btok.vocab_size,
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_heads,
            max_position_embeddings=spec.max_positions,
            bos_token_id=btok.bos_id,
            eos_token_id=btok.eos_id,
            pad_token_id=btok.pad_id,
            tie_word_embeddings=True,
        )
        model = transformers.LlamaForCausalLM(cfg)
        tokenizer = btok
        max_positions = spec.max_positions
        desc = (
            f"tiny LlamaForCausalLM (random init, byte vocab {btok.vocab_size}, "
            f"d={spec.hidden_size}, layers={spec.num_layers}, heads={spec.num_heads})"
        )
    else:
        path = os.fspath(model_path)
        if not os.path.isdir(path):
            raise ParameterError(f"--model {path!r} is not a directory")
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            hf_tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ParameterError(f"cannot load a causal LM from {path!r}: {exc}") from exc
        tokenizer = HFTokenizer(hf_tok)
        max_positions = int(getattr(model.config, "max_position_embeddings", 512) or 512)
        desc = f"{type(model).__name__} from {path}"
    model.float()
    if lora_rank > 0:
        peft = require("peft", "train")
        targets = _lora_targets(model)
        lcfg = peft.LoraConfig(
            r=lora_rank,
            lora_alpha=float(lora_alpha if lora_alpha is not None else 2 * lora_rank),
            lora_dropout=0.0,
            target_modules=targets or None,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():
            # peft reads transformers' deprecated ``is_gradient_checkpointing`` property,
            # which warns on every LoRA model built (a stray stderr line per run)
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
            )
            model = peft.get_peft_model(model, lcfg)
        desc += f" + LoRA rank {lora_rank} (base frozen)"
    else:
        for p in model.parameters():
            p.requires_grad_(True)
        desc += " (full training)"
    model.train()
    layout = trainable_layout(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        layout=layout,
        lora_rank=lora_rank,
        description=desc,
        max_positions=max_positions,
    )


def _trainable_named(model: Any) -> dict[str, Any]:
    # named_parameters() de-duplicates tied weights, so a tied embedding travels once.
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def trainable_layout(model: Any) -> Layout:
    """Names and shapes of the trainable parameters (sorted by name)."""
    named = _trainable_named(model)
    names = tuple(sorted(named))
    return Layout(names, tuple(tuple(int(d) for d in named[n].shape) for n in names))


def trainable_vector(model: Any) -> npt.NDArray[np.float64]:
    """The trainable parameters flattened into one float64 vector (sorted by name)."""
    named = _trainable_named(model)
    vec, _ = flatten({n: p.detach().cpu().numpy() for n, p in named.items()})
    return vec


def load_trainable_vector(model: Any, vec: npt.ArrayLike, layout: Layout) -> None:
    """Write ``vec`` into the trainable parameters of ``model`` (in place).

    Raises
    ------
    ParameterError
        ``vec`` does not match ``layout`` or ``layout`` does not match the model.
    """
    torch = require("torch", "train")
    named = _trainable_named(model)
    if tuple(sorted(named)) != layout.names:
        raise ParameterError("layout does not match the model's trainable parameters")
    arrays = unflatten(vec, layout)
    with torch.no_grad():
        for name, arr in arrays.items():
            p = named[name]
            if tuple(p.shape) != arr.shape:
                raise ParameterError(f"shape mismatch for {name}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(arr)).to(p.dtype))


def sample_text(
    loaded: LoadedModel,
    *,
    prompts: Sequence[str],
    max_new_tokens: int = 80,
    temperature: float = 0.7,
    top_k: int = 40,
    seed: int = 0,
) -> list[str]:
    """Sample one continuation per prompt (the prompt included).

    Sampling uses a seeded CPU ``torch.Generator`` (not secret) on the logits brought to
    the CPU, whichever device the model sits on: the same random stream on a CPU or a
    GPU (the logits themselves may differ in their last bits between devices).
    """
    if not math.isfinite(temperature) or temperature <= 0:
        raise ParameterError("temperature must be positive")
    torch = require("torch", "train")
    model, tok = loaded.model, loaded.tokenizer
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                ids = [tok.bos_id, *tok.encode(prompt)]
                new: list[int] = []
                for _ in range(max_new_tokens):
                    window = (ids + new)[-loaded.max_positions :]
                    ids_t = torch.tensor([window], device=device)
                    logits = model(input_ids=ids_t).logits[0, -1].float().cpu()
                    logits = logits / temperature
                    if 0 < top_k < logits.numel():
                        kth = torch.topk(logits, top_k).values[-1]
                        logits = torch.where(logits < kth, torch.full_like(logits, -1e30), logits)
                    nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
                    if nxt in (tok.eos_id, tok.pad_id):
                        break
                    new.append(nxt)
                out.append(prompt + tok.decode(new))
    finally:
        if was_training:
            model.train()
    return out


def save_pretrained(
    loaded: LoadedModel,
    folder: str | os.PathLike[str],
    *,
    seed: int,
    spec: TinyLlamaSpec | None = None,
    model_path: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write the trained model in Hugging Face format; returns what went where.

    * full training: ``folder/model/`` (``config.json`` + safetensors weights),
      loadable with ``transformers.AutoModelForCausalLM.from_pretrained``;
    * LoRA: ``folder/adapter/`` (``adapter_config.json`` + adapter weights), loadable
      with ``peft.PeftModel.from_pretrained(base, folder/"adapter")``.  The base is
      ``model_path`` when one was given; for the built-in tiny model its random
      initialisation is rebuilt from ``seed`` and written to ``folder/base_model/``
      (the adapter config points there).

    The tokenizer goes next to the weights: a Hugging Face tokenizer is saved with
    its own ``save_pretrained``; the built-in byte tokenizer is described in
    ``secagg_tokenizer.json`` (token = UTF-8 byte, plus BOS/EOS/PAD).
    """
    out = Path(folder)
    model = loaded.model
    written: dict[str, Path] = {}
    if loaded.lora_rank > 0:
        target = out / "adapter"
        if model_path is None:
            base_dir = out / "base_model"
            base = build_model(lora_rank=0, spec=spec, seed=seed)
            base.model.save_pretrained(base_dir)
            _save_tokenizer(loaded.tokenizer, base_dir)
            written["base_model"] = base_dir
            for cfg in model.peft_config.values():
                cfg.base_model_name_or_path = str(base_dir.resolve())
        model.save_pretrained(target)
        written["adapter"] = target
    else:
        target = out / "model"
        model.save_pretrained(target)
        written["model"] = target
    _save_tokenizer(loaded.tokenizer, target)
    return written


def _save_tokenizer(tok: Tokenizer, folder: Path) -> None:
    if isinstance(tok, HFTokenizer):
        tok._tok.save_pretrained(folder)
        return
    desc = {
        "type": "secagg.train.model.ByteTokenizer",
        "tokens": "UTF-8 bytes 0..255, then BOS, EOS, PAD",
        "vocab_size": tok.vocab_size,
        "bos_id": tok.bos_id,
        "eos_id": tok.eos_id,
        "pad_id": tok.pad_id,
    }
    (folder / "secagg_tokenizer.json").write_text(json.dumps(desc, indent=2) + "\n",
                                                  encoding="utf-8")
