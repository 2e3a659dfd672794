"""DP-SGD wrapper on a tiny LoRA causal LM (random init, no download).

The opacus#820 trap: a DP step with zero noise and a huge clip norm must move the LoRA
weights exactly like a plain SGD step on the same batch.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import pytest

from secagg.dp.dpsgd import (
    AccountantKind,
    DPSGDConfig,
    GradSampleMode,
    make_private,
)
from secagg.errors import InsecureConfigurationWarning, ParameterError

B, T, N = 4, 12, 32
LR = 0.5

# Bound by the ``stack`` fixture: only the tests that train a model need them.
torch: Any = None
transformers: Any = None
peft: Any = None


@pytest.fixture
def stack() -> None:
    """torch, transformers, peft and opacus — skips only the tests that use it."""
    global torch, transformers, peft
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    pytest.importorskip("opacus")


def tiny_lora_model(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=260,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    base = transformers.LlamaForCausalLM(cfg)
    lcfg = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,  # B ≠ 0 so both A and B get gradients
    )
    return peft.get_peft_model(base, lcfg)


def data(seed: int = 1, n: int = N):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 260, (n, T), generator=g)
    return ids, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids), batch_size=B)


def lora_state(model) -> dict[str, torch.Tensor]:
    return {
        n.split("lora_", 1)[1]: p.detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def plain_sgd_step(model, batch) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    logits = model(input_ids=batch).logits[:, :-1, :]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
    )
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize("mode", list(GradSampleMode))
def test_dp_step_without_noise_equals_plain_sgd_on_lora(mode: GradSampleMode) -> None:
    ids, loader = data()
    batch = ids[:B]
    plain = tiny_lora_model()
    dp_model = copy.deepcopy(plain)
    before = lora_state(plain)
    assert before and all(k.startswith(("A.", "B.")) for k in before)

    plain_sgd_step(plain, batch)

    opt = torch.optim.SGD([p for p in dp_model.parameters() if p.requires_grad], lr=LR)
    cfg = DPSGDConfig(
        max_grad_norm=1e6,
        noise_multiplier=0.0,
        poisson_sampling=False,
        grad_sample_mode=mode,
        insecure_rng=True,
        insecure_seed=0,
    )
    pt = make_private(model=dp_model, optimizer=opt, data_loader=loader, config=cfg)
    pt.optimizer.zero_grad()
    pt.lm_loss(batch).backward()
    pt.optimizer.step()

    after_plain, after_dp = lora_state(plain), lora_state(pt.model)
    assert after_dp.keys() == after_plain.keys()
    for k in before:
        d_plain = after_plain[k] - before[k]
        d_dp = after_dp[k] - before[k]
        assert d_plain.abs().max() > 1e-6, k  # the step moved the weight
        torch.testing.assert_close(d_dp, d_plain, rtol=1e-4, atol=1e-7)
    # frozen base weights did not move
    for (n1, p1), (n2, p2) in zip(
        plain.named_parameters(), pt.model.named_parameters(), strict=False
    ):
        if not p1.requires_grad:
            assert torch.equal(p1, p2), n1


@pytest.mark.usefixtures("stack")
def test_clipping_bounds_the_update() -> None:
    """Noise 0, C = 1e-3: the averaged clipped gradient has norm ≤ C, so the step ≤ lr·C."""
    ids, loader = data()
    model = tiny_lora_model()
    before = lora_state(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=LR)
    cfg = DPSGDConfig(
        max_grad_norm=1e-3, noise_multiplier=0.0, poisson_sampling=False, insecure_rng=True
    )
    pt = make_private(model=model, optimizer=opt, data_loader=loader, config=cfg)
    pt.optimizer.zero_grad()
    pt.lm_loss(ids[:B]).backward()
    pt.optimizer.step()
    after = lora_state(pt.model)
    step = math.sqrt(sum(float(((after[k] - before[k]) ** 2).sum()) for k in before))
    assert 0 < step <= LR * 1e-3 * (1 + 1e-4)


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize("acc", list(AccountantKind))
def test_epsilon_per_round_grows(acc: AccountantKind) -> None:
    _, loader = data(n=12)
    model = tiny_lora_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    cfg = DPSGDConfig(
        max_grad_norm=1.0, noise_multiplier=1.0, accountant=acc, insecure_rng=True, insecure_seed=3
    )
    pt = make_private(model=model, optimizer=opt, data_loader=loader, config=cfg)
    assert pt.epsilon(1e-5) == 0.0
    eps = []
    for _ in range(2):
        for (batch,) in pt.data_loader:
            if batch.shape[0] == 0:
                continue
            pt.optimizer.zero_grad()
            pt.lm_loss(batch).backward()
            pt.optimizer.step()
        eps.append(pt.end_round(1e-5))
    assert [r.round for r in eps] == [1, 2]
    assert 0 < eps[0].epsilon < eps[1].epsilon < math.inf
    assert eps[1].steps > eps[0].steps > 0
    assert math.isclose(eps[1].epsilon, pt.engine.get_epsilon(1e-5))


def test_config_validation() -> None:
    """Pure validation: needs none of the deep-learning stack."""
    for kw in (
        dict(max_grad_norm=0.0, noise_multiplier=1.0),
        dict(max_grad_norm=1.0, noise_multiplier=-1.0),
        dict(max_grad_norm=float("nan"), noise_multiplier=1.0),
        dict(max_grad_norm=1.0, noise_multiplier=1.0, grad_sample_mode="hooks"),
        dict(max_grad_norm=1.0, noise_multiplier=1.0, insecure_seed=3),
    ):
        with pytest.raises(ParameterError):
            DPSGDConfig(**kw)


@pytest.mark.usefixtures("stack")
def test_default_noise_comes_from_our_csprng() -> None:
    # no torchcsprng needed: the default noise comes from our CSPRNG
    _, loader = data()
    model = tiny_lora_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureConfigurationWarning)
        pt = make_private(
            model=model,
            optimizer=opt,
            data_loader=loader,
            config=DPSGDConfig(max_grad_norm=1.0, noise_multiplier=1.0),
        )
    assert type(pt.optimizer).__name__.startswith("Csprng")


@pytest.mark.usefixtures("stack")
def test_only_lora_parameters_get_per_sample_gradients() -> None:
    ids, loader = data()
    model = tiny_lora_model()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    cfg = DPSGDConfig(
        max_grad_norm=1.0, noise_multiplier=0.0, poisson_sampling=False, insecure_rng=True
    )
    pt = make_private(model=model, optimizer=opt, data_loader=loader, config=cfg)
    pt.optimizer.zero_grad()
    pt.lm_loss(ids[:B]).backward()
    seen = 0
    for name, p in pt.model.named_parameters():
        if p.requires_grad:
            assert "lora_" in name
            assert p.grad_sample is not None and p.grad_sample.shape == (B, *p.shape), name
            seen += 1
        else:
            assert getattr(p, "grad_sample", None) is None, name
    assert seen == 4  # A and B of q_proj and v_proj in one layer
