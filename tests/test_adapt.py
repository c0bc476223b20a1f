"""Adaptation of pretrained components: frozen, full, LoRA and DoRA on tiny random-weight HF models."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import peft
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from vlmlab.errors import ConfigError
from vlmlab.models.adapt import Adaptation, DoRA, Frozen, FullFineTuning, LoRA

# peft.get_peft_model (the reference count) trips a transformers deprecation warning; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

ADAPT_CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "adapt"


def tiny_vision() -> torch.nn.Module:
    """A 2-layer SigLIP vision tower with random weights."""
    return AutoModel.from_config(AutoConfig.for_model(
        "siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, patch_size=8, image_size=32))


def tiny_lm() -> torch.nn.Module:
    """A 2-layer Llama with random weights."""
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1))


BUILDERS = {"vision": tiny_vision, "lm": tiny_lm}


def features(kind: str, model: torch.nn.Module) -> torch.Tensor:
    """The component's output on a fixed small input, as the VLM calls it."""
    g = torch.Generator().manual_seed(1)
    if kind == "vision":
        return model(pixel_values=torch.randn(2, 3, 32, 32, generator=g)).last_hidden_state
    return model(inputs_embeds=torch.randn(2, 5, 32, generator=g)).logits


def n_trainable(model: torch.nn.Module) -> int:
    """Number of trainable parameter elements."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_step(kind: str, model: torch.nn.Module) -> torch.nn.Module:
    """One SGD step on a loss through the model and a fresh trainable layer (the 'new modules'); returns the layer."""
    extra = torch.nn.Linear(features(kind, model).shape[-1], 1)
    params = [p for p in model.parameters() if p.requires_grad] + list(extra.parameters())
    opt = torch.optim.SGD(params, lr=0.1)
    extra(features(kind, model)).pow(2).mean().backward()
    opt.step()
    return extra


@pytest.mark.parametrize("kind", ["vision", "lm"])
def test_frozen_weights_do_not_move(kind):
    model = Frozen().apply(BUILDERS[kind]())
    assert n_trainable(model) == 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    extra = train_step(kind, model)
    assert extra.weight.grad is not None
    for n, p in model.named_parameters():
        assert p.grad is None, n
        assert torch.equal(p, before[n]), n


def test_full_fine_tuning_trains_everything():
    model = tiny_lm().requires_grad_(False)
    assert FullFineTuning().apply(model) is model
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("kind", ["vision", "lm"])
@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
@pytest.mark.parametrize("cls", [LoRA, DoRA])
def test_adapters_match_peft_count_and_only_adapters_train(kind, targets, cls):
    torch.manual_seed(0)
    model = BUILDERS[kind]()
    base_out = features(kind, model).detach()
    adapted = cls(r=4, alpha=8, target_modules=targets).apply(model)
    assert adapted is model  # in place: the caller keeps its reference

    reference = peft.get_peft_model(BUILDERS[kind](), peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=targets, use_dora=cls is DoRA))
    assert n_trainable(model) == reference.get_nb_trainable_parameters()[0] > 0
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    # B starts at zero (and DoRA's magnitude at the weight norm), so the adapted model starts as the base model.
    torch.testing.assert_close(features(kind, model), base_out)

    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train_step(kind, model)
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert any(not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if n in adapters)


def test_lm_head_untouched_and_generate_still_works():
    model = LoRA().apply(tiny_lm())
    assert not any(n.startswith("lm_head") and "lora_" in n for n, _ in model.named_parameters())
    assert isinstance(model.lm_head, torch.nn.Linear)
    out = model.generate(inputs_embeds=torch.randn(1, 3, 32), attention_mask=torch.ones(1, 3, dtype=torch.long),
                         max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert out.shape[-1] == 2


def test_dora_adds_magnitude_vectors():
    lora, dora = n_trainable(LoRA().apply(tiny_lm())), n_trainable(DoRA().apply(tiny_lm()))
    assert dora > lora
    assert LoRA().name == "lora" and DoRA().name == "dora" and Frozen().name == "frozen"
    assert FullFineTuning().name == "full"


@pytest.mark.parametrize("kwargs, key", [
    ({"r": 0}, "r"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
    ({"target_modules": []}, "target_modules"),
])
def test_bad_values_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError) as info:
        LoRA(**kwargs)
    assert info.value.key == key


def test_unknown_target_lists_the_linear_layers():
    model = tiny_lm()
    with pytest.raises(ConfigError) as info:
        DoRA(target_modules=["nosuch"]).apply(model)
    assert info.value.key == "target_modules"
    assert "q_proj" in info.value.detail and "down_proj" in info.value.detail
    assert n_trainable(model) == sum(p.numel() for p in model.parameters())  # untouched on error


def test_target_that_is_not_a_layer_fails_before_injection():
    model = tiny_lm()
    with pytest.raises(ConfigError, match="LlamaMLP") as info:
        LoRA(target_modules=["q_proj", "mlp"]).apply(model)
    assert info.value.key == "target_modules"
    assert not any("lora_" in n for n, _ in model.named_parameters())  # not left half-adapted


@pytest.mark.parametrize("cls", [LoRA, DoRA, Frozen, FullFineTuning])
def test_meta_device_models(cls):
    with torch.device("meta"):
        model = tiny_lm()
        cls().apply(model)
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("path", sorted(ADAPT_CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_options_instantiate(path):
    adaptation = hydra.utils.instantiate(OmegaConf.load(path))
    assert isinstance(adaptation, Adaptation)
    assert adaptation.name == path.stem


def test_yaml_target_list_reaches_peft():
    cfg = OmegaConf.create({"_target_": "vlmlab.models.adapt.LoRA", "target_modules": ["q_proj", "v_proj"]})
    model = hydra.utils.instantiate(cfg).apply(tiny_lm())
    adapted = {n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"q_proj", "v_proj"}


def test_one_preset_group_is_mounted_for_both_components(make_cfg):
    """conf/model/adapt holds each preset once; the vision tower and the LM each pick one of them."""
    assert sorted(p.stem for p in ADAPT_CONF.glob("*.yaml")) == ["dora", "frozen", "full", "lora"]
    assert not [p for p in ADAPT_CONF.iterdir() if p.is_dir()], "no per-component copies"
    cfg = make_cfg("model/adapt@model.adapt.vision=lora", "model/adapt@model.adapt.lm=frozen")
    assert cfg.model.adapt.vision == OmegaConf.load(ADAPT_CONF / "lora.yaml")
    assert cfg.model.adapt.lm == OmegaConf.load(ADAPT_CONF / "frozen.yaml")
