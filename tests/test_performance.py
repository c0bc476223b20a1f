"""The speed knobs change how a model runs, never what it computes; the model is built in the training dtype."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from omegaconf import OmegaConf
from transformers import PreTrainedModel

from vlmlab.models.build import build_vlm
from vlmlab.train.performance import (
    apply_performance, building_on, evaluation_precision, fused_optimizer, training_device, weight_dtype,
)
from vlmlab.train.sharding import layer_classes


def _model(make_cfg, *overrides):
    cfg = make_cfg(*overrides)
    torch.manual_seed(0)
    return cfg, build_vlm(cfg.model, vocab_size=64, image_token_id=3, image_size=32)


def _batch():
    ids = torch.randint(4, 64, (2, 24))
    ids[:, 1:17] = 3  # one image each: 16 placeholders for its 16 visual tokens (32 px, patch 8)
    labels = ids.clone()
    labels[:, :18] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.randn(2, 3, 32, 32),
            "labels": labels}


def test_checkpointing_and_the_attention_kernel_keep_loss_and_gradients(make_cfg):
    _, plain = _model(make_cfg)
    cfg, fast = _model(make_cfg, "performance.gradient_checkpointing=true", "performance.attn_implementation=eager")
    apply_performance(fast, cfg.performance)
    hf_models = [m for m in fast.modules() if isinstance(m, PreTrainedModel)]
    assert hf_models and all(m.config._attn_implementation == "eager" for m in hf_models)
    assert all(m.is_gradient_checkpointing for m in hf_models if m.supports_gradient_checkpointing)
    batch = _batch()
    plain.train(), fast.train()
    losses = [model(**batch).loss for model in (plain, fast)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for loss in losses:
        loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), fast.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_compile_wraps_each_encoder_and_decoder_layer_in_place(make_cfg):
    cfg, model = _model(make_cfg)
    apply_performance(model, OmegaConf.merge(cfg.performance, {"compile": True}))
    layers = [m for m in model.modules() if type(m) in layer_classes(model)]
    assert len(layers) == 2 + 4  # the tiny tower's and LM's layers, still of their classes (FSDP finds them)
    assert all(getattr(m, "_compiled_call_impl", None) is not None for m in layers)


def test_the_trainer_decides_device_dtype_and_autocast(make_cfg):
    cpu = make_cfg().trainer
    assert training_device(cpu) == torch.device("cpu") and weight_dtype(cpu) == torch.float32
    assert weight_dtype(make_cfg("trainer.precision=bf16-true").trainer) == torch.bfloat16
    assert weight_dtype(make_cfg("trainer.precision=bf16-mixed").trainer) == torch.float32  # fp32 master weights
    fused, cuda = OmegaConf.create({"fused_optimizer": True}), torch.device("cuda", 0)
    assert fused_optimizer(fused, torch.device("cpu"), torch.optim.AdamW) == {}
    assert fused_optimizer(fused, cuda, torch.optim.AdamW) == {"fused": True}
    assert fused_optimizer(fused, cuda, partial(torch.optim.SGD, momentum=0.9)) == {"fused": True}
    assert fused_optimizer(fused, cuda, torch.optim.Adafactor) == {}, "Adafactor has no fused kernel"
    assert fused_optimizer(OmegaConf.create({"fused_optimizer": False}), cuda, torch.optim.AdamW) == {}
    with evaluation_precision(cpu):
        assert not torch.is_autocast_enabled("cuda")


def test_a_bf16_true_model_is_built_in_bf16(make_cfg):
    cfg = make_cfg("trainer.precision=bf16-true")
    with building_on(training_device(cfg.trainer), weight_dtype(cfg.trainer)):
        model = build_vlm(cfg.model, vocab_size=64, image_token_id=3, image_size=32)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32


def test_the_gpu_presets_turn_the_speed_knobs_on_and_keep_the_identity(make_cfg):
    from vlmlab.sweep.identity import run_id

    cpu = make_cfg("trainer.precision=bf16-mixed", "trainer.accelerator=gpu")
    for preset in ("gpu", "ddp", "fsdp"):
        cfg = make_cfg(f"trainer={preset}", "trainer.devices=1")
        assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.accelerator == "gpu"
        assert cfg.performance.fused_optimizer and cfg.performance.pin_memory and cfg.data.num_workers > 0
        assert run_id(cfg) == run_id(cpu), f"trainer={preset}: the same run as its settings spelled out"


@pytest.mark.slow  # a whole CLI run in bf16, emulated on some CPUs: in the slow tier, run by CI after `make test`
def test_bf16_mixed_clips_the_gradients_of_a_fused_optimizer(checkout, cache_dir, monkeypatch):
    """trainer=gpu's combination (bf16 autocast, fused AdamW, gradient clipping), which Lightning's mixed-precision
    plugin refuses; run on the CPU, whose AdamW has a fused kernel too."""
    import json

    import vlmlab.train.module as module
    from vlmlab.cli import main

    monkeypatch.setattr(module, "fused_optimizer", lambda performance, device, optimizer: {"fused": True})
    clipped = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: clipped.append(a[1]) or clip(*a, **k))
    assert main(["train", f"paths.cache_dir={cache_dir}", "trainer.precision=bf16-mixed", "trainer.max_steps=2",
                 "data.batch_size=4", "eval.limit_per_task=1", "eval.max_new_tokens=2", "logger=none"]) == 0
    record = json.loads(next((checkout / "results" / "runs").rglob("*.json")).read_text())
    assert record["status"] == "done", record["error"]
    assert clipped == [1.0, 1.0], "once per step, at trainer.gradient_clip_val"
