"""Tokenizer, tiny model construction, LoRA vs full training, trainable vectors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from secagg.errors import ParameterError
from secagg.train.model import (
    ByteTokenizer,
    TinyLlamaSpec,
    build_model,
    load_trainable_vector,
    sample_text,
    trainable_vector,
)


def test_byte_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    text = "def f(x): return x ≥ 0  # ünïcode\n"
    ids = tok.encode(text)
    assert max(ids) < 256 and tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id]) == text
    assert tok.vocab_size == 259 and len({tok.bos_id, tok.eos_id, tok.pad_id}) == 3
    assert tok.decode([0xFF]) == "\ufffd"  # invalid UTF-8 is replaced, not an exception


def test_full_training_exposes_every_parameter(tiny_spec: TinyLlamaSpec) -> None:
    lm = build_model(lora_rank=0, spec=tiny_spec, seed=1)
    total = sum(p.numel() for p in lm.model.parameters())
    assert lm.num_trainable == total
    assert lm.model.config.vocab_size == 259
    assert "full training" in lm.description


def test_lora_only_adapters_travel(tiny_spec: TinyLlamaSpec) -> None:
    lm = build_model(lora_rank=4, spec=tiny_spec, seed=1)
    assert lm.layout.names and all("lora_" in n for n in lm.layout.names)
    total = sum(p.numel() for p in lm.model.parameters())
    assert 0 < lm.num_trainable < total / 2


def test_building_a_lora_model_warns_nothing(tiny_spec: TinyLlamaSpec) -> None:
    """peft reads transformers' deprecated ``is_gradient_checkpointing``: the FutureWarning
    it raised was a stray stderr line on every LoRA run of ``secagg train``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_model(lora_rank=2, spec=tiny_spec, seed=1)


def test_seed_determines_initial_weights(tiny_spec: TinyLlamaSpec) -> None:
    a = trainable_vector(build_model(spec=tiny_spec, seed=3).model)
    b = trainable_vector(build_model(spec=tiny_spec, seed=3).model)
    c = trainable_vector(build_model(spec=tiny_spec, seed=4).model)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_trainable_vector_round_trip(tiny_spec: TinyLlamaSpec) -> None:
    lm = build_model(spec=tiny_spec, seed=1)
    v = trainable_vector(lm.model)
    w = (v + 0.25).astype(np.float32).astype(np.float64)
    load_trainable_vector(lm.model, w, lm.layout)
    assert np.array_equal(trainable_vector(lm.model), w)
    with pytest.raises(ParameterError):
        load_trainable_vector(lm.model, w[:-1], lm.layout)


def test_bad_arguments(tiny_spec: TinyLlamaSpec, tmp_path) -> None:
    with pytest.raises(ParameterError):
        build_model(lora_rank=-1, spec=tiny_spec)
    with pytest.raises(ParameterError):
        build_model(model_path=tmp_path / "nope")
    with pytest.raises(ParameterError):
        TinyLlamaSpec(hidden_size=30, num_heads=4)


def test_sample_text_is_seeded(tiny_spec: TinyLlamaSpec) -> None:
    lm = build_model(spec=tiny_spec, seed=1)
    a = sample_text(lm, prompts=["The "], max_new_tokens=10, seed=9)
    b = sample_text(lm, prompts=["The "], max_new_tokens=10, seed=9)
    assert a == b and a[0].startswith("The ")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sample_text_on_cuda_model(tiny_spec: TinyLlamaSpec) -> None:
    # the model after `secagg train --device cuda` sits on the GPU; the prompt ids and the
    # CPU generator must meet it there (this failed on an H200 before the fix)
    lm = build_model(spec=tiny_spec, seed=1)
    lm.model.to("cuda")
    a = sample_text(lm, prompts=["The ", "def "], max_new_tokens=10, seed=9)
    b = sample_text(lm, prompts=["The ", "def "], max_new_tokens=10, seed=9)
    assert a == b and a[0].startswith("The ") and a[1].startswith("def ")
    assert next(lm.model.parameters()).device.type == "cuda"


def test_local_model_directory_loads_offline(tmp_path, tiny_spec: TinyLlamaSpec) -> None:
    """--model PATH: a saved HF model + tokenizer loads with local_files_only."""
    tokenizers = pytest.importorskip("tokenizers")
    import transformers

    lm = build_model(spec=tiny_spec, seed=1)
    lm.model.save_pretrained(tmp_path)
    vocab = {chr(c): i for i, c in enumerate(range(32, 127))}
    vocab.update({"<unk>": 95, "<s>": 96, "</s>": 97})
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(tmp_path)
    loaded = build_model(model_path=tmp_path, lora_rank=2)
    assert loaded.tokenizer.eos_id == 97
    assert all("lora_" in n for n in loaded.layout.names)
