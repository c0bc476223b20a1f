"""Gated cross-attention: an identity at initialisation, conditioned on the image once the gates open."""

from __future__ import annotations

import pytest
import torch

from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, check_model_config
from vlmlab.train.module import VLMTrainingModule

IMAGE = 5


def xattn_vlm(make_cfg, lm="tiny_llama", *overrides):
    torch.manual_seed(0)
    cfg = make_cfg("model/fusion=cross_attention", f"model/lm={lm}", *overrides)
    return build_vlm(cfg.model, vocab_size=40, image_token_id=IMAGE, image_size=32), cfg


@pytest.mark.parametrize("lm", ["tiny_llama", "tiny_mistral", "tiny_qwen2"])
def test_cross_attention_leaves_the_lm_unchanged_at_initialisation(make_cfg, lm):
    model, _ = xattn_vlm(make_cfg, lm)
    ids = torch.tensor([[1, IMAGE, 7, 8, 9]])
    mask = torch.ones_like(ids)
    fused = model(ids, mask, torch.randn(1, 3, 32, 32)).logits
    plain = model.lm.model(input_ids=ids, attention_mask=mask).logits  # no visual context: hooks pass through
    torch.testing.assert_close(fused, plain)
    assert len(model.fusion.blocks) == 4  # every layer of the 4-layer tiny LM


def test_open_gates_make_the_output_depend_on_the_image(make_cfg):
    model, _ = xattn_vlm(make_cfg, "tiny_llama", "model.fusion.every_n_layers=2")
    assert len(model.fusion.blocks) == 2
    with torch.no_grad():
        for block in model.fusion.blocks:
            block.attn_gate.fill_(1.0)
    ids, mask = torch.tensor([[1, IMAGE, 7, 8]]), torch.ones(1, 4, dtype=torch.long)
    a = model(ids, mask, torch.randn(1, 3, 32, 32)).logits
    b = model(ids, mask, torch.randn(1, 3, 32, 32)).logits
    assert not torch.allclose(a, b)
    assert model.sequence_tokens([(32, 32)]) == 1 and model.visual_tokens([(32, 32)]) == 16


def test_cross_attention_generates_in_batches_with_the_kv_cache(make_cfg):
    model, _ = xattn_vlm(make_cfg)
    with torch.no_grad():
        for block in model.fusion.blocks:
            block.attn_gate.fill_(1.0)
    model.eval()
    ids = torch.tensor([[0, 1, IMAGE, 7], [1, IMAGE, 9, 10]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    pixels = torch.randn(2, 3, 32, 32)
    batched = model.generate(ids, mask, pixels, max_new_tokens=4, eos_token_id=2, pad_token_id=0)
    single = model.generate(ids[1:], mask[1:], pixels[1:], max_new_tokens=4, eos_token_id=2, pad_token_id=0)
    assert batched[1, : single.shape[1]].tolist() == single[0].tolist()


@pytest.mark.parametrize(
    ("override", "expected"),
    [("model.fusion.every_n_layers=5", r"model\.fusion\.every_n_layers: 5 .*model\.lm\.config\.num_hidden_layers"),
     ("model.fusion.heads=3", r"model\.fusion\.heads: 3 heads .*model\.lm\.config\.hidden_size")],
)
def test_impossible_cross_attention_names_both_keys(make_cfg, override, expected):
    cfg = make_cfg("model/fusion=cross_attention", override)
    with pytest.raises(ConfigError, match=expected):
        check_model_config(cfg.model, 64)


def test_frozen_backbones_get_no_gradient_and_do_not_move(make_cfg):
    model, cfg = xattn_vlm(make_cfg, "tiny_llama", "model/adapt@model.adapt.vision=frozen",
                           "model/adapt@model.adapt.lm=frozen")
    module = VLMTrainingModule(model, cfg.optim, total_steps=10)
    optimizer = module.configure_optimizers()["optimizer"]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("vision.", "lm."))}
    new = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(("connector.", "fusion."))}
    batch = {"input_ids": torch.tensor([[1, IMAGE, 7, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
             "pixel_values": torch.randn(1, 3, 32, 32), "labels": torch.tensor([[-100, -100, 7, 8]])}
    module.training_step(batch, 0).backward()
    optimizer.step()
    params = dict(model.named_parameters())
    for name, before in frozen.items():
        assert params[name].grad is None and torch.equal(params[name], before), name
    assert any(not torch.equal(params[n], before) for n, before in new.items())
    assert {g["name"].split("/")[0] for g in optimizer.param_groups} == {"connector", "fusion"}
