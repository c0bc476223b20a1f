"""The optimizer and schedule as `_partial_` configs: every preset trains, and AdamW trains as it did before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from vlmlab.models.build import build_vlm
from vlmlab.train.module import VLMTrainingModule
from vlmlab.train.schedules import upgrade_flat_optim

OPTIM_CONF = Path(__file__).resolve().parents[1] / "conf" / "optim"
IMAGE = 5
# conf/optim/adamw.yaml before the optimizer and schedule became `_target_` configs (the records of schema 1).
FLAT_ADAMW = {"lr": {"connector": 2.0e-3, "fusion": 2.0e-3, "vision": 1.0e-3, "lm": 2.0e-4}, "lr_scale": 1.0,
              "weight_decay": 0.01, "betas": [0.9, 0.95], "eps": 1.0e-8, "warmup_steps": 50, "min_lr_ratio": 0.1}


# The old hard-coded schedule at warmup 3, 8 steps, min ratio 0.1, worked by hand: linear warmup (s + 1) / 3,
# then 0.1 + 0.45 * (1 + cos(pi * (s - 3) / 5)).
FACTORS = [1 / 3, 2 / 3, 1.0, 1.0, 0.914058, 0.689058, 0.410942, 0.185942]


def tiny_vlm(make_cfg, *overrides: str):
    """A cross-attention VLM (so all four components have parameters) and its config."""
    torch.manual_seed(0)
    cfg = make_cfg("model/fusion=cross_attention", *overrides)
    return build_vlm(cfg.model, vocab_size=40, image_token_id=IMAGE, image_size=32), cfg


def batch() -> dict[str, torch.Tensor]:
    """One sample: an image, two answer tokens."""
    torch.manual_seed(1)
    return {"input_ids": torch.tensor([[1, IMAGE, 7, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long),
            "pixel_values": torch.randn(1, 3, 32, 32), "labels": torch.tensor([[-100, -100, 7, 8]])}


@pytest.mark.parametrize("name", sorted(p.stem for p in OPTIM_CONF.glob("*.yaml")))
def test_every_optim_preset_builds_and_steps(make_cfg, name):
    model, cfg = tiny_vlm(make_cfg, f"optim={name}")
    configured = VLMTrainingModule(model, cfg.optim, total_steps=10).configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert type(optimizer) is get_class(cfg.optim.optimizer._target_)
    assert type(scheduler) is get_class(cfg.optim.schedule._target_)
    assert {group["name"].split("/")[0] for group in optimizer.param_groups} == {"vision", "connector", "fusion", "lm"}
    before = [p.detach().clone() for p in model.parameters()]
    model(**batch()).loss.backward()
    optimizer.step()
    scheduler.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters())), f"optim={name} did not train"


def test_adamw_trains_with_the_same_groups_and_learning_rates_as_before(make_cfg):
    """The config-built AdamW and schedule against the hard-coded ones they replace: the same weights, step by step."""
    warmup, total = 3, 8
    overrides = (f"optim.schedule.warmup_steps={warmup}",)
    new_model, cfg = tiny_vlm(make_cfg, *overrides)
    old_model, _ = tiny_vlm(make_cfg, *overrides)
    configured = VLMTrainingModule(new_model, cfg.optim, total_steps=total).configure_optimizers()
    new_opt, new_sched = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    old_opt = torch.optim.AdamW(VLMTrainingModule(old_model, cfg.optim, total).parameter_groups(),
                                betas=(0.9, 0.95), eps=1.0e-8)
    # The old scheduler was a LambdaLR over these factors (checked against the hand-worked ones below).
    old_sched = torch.optim.lr_scheduler.LambdaLR(old_opt, new_sched.lr_lambdas[0])
    peak = {group["name"]: group["initial_lr"] for group in old_opt.param_groups}  # before the schedule
    for step in range(total):
        factor = FACTORS[step]
        assert {g["name"]: g["lr"] for g in new_opt.param_groups} == pytest.approx(
            {n: lr * factor for n, lr in peak.items()}, rel=1e-5)  # the factors are given to 6 digits
        assert [g["lr"] for g in new_opt.param_groups] == [g["lr"] for g in old_opt.param_groups], step
        for model, optimizer, scheduler in ((new_model, new_opt, new_sched), (old_model, old_opt, old_sched)):
            optimizer.zero_grad()
            model(**batch()).loss.backward()
            optimizer.step()
            scheduler.step()
    for new, old in zip(new_model.parameters(), old_model.parameters(), strict=True):
        assert torch.equal(new, old)


def test_a_flat_optim_config_upgrades_to_the_adamw_preset():
    adamw = OmegaConf.to_container(OmegaConf.load(OPTIM_CONF / "adamw.yaml"))
    upgraded = upgrade_flat_optim(FLAT_ADAMW)
    assert upgraded == adamw
    assert list(upgraded) == list(adamw), "in the preset's order"
    assert upgrade_flat_optim(upgraded) == upgraded and upgrade_flat_optim(adamw) == adamw, "idempotent"
    assert FLAT_ADAMW["betas"] == [0.9, 0.95] and "optimizer" not in FLAT_ADAMW, "its input is left alone"
    older = {key: value for key, value in FLAT_ADAMW.items() if key != "lr_scale"}
    assert upgrade_flat_optim(older) == {key: value for key, value in adamw.items() if key != "lr_scale"}, (
        "a record from before lr_scale keeps reading it as 1")
    with pytest.raises(ValueError, match="optim.eps"):
        upgrade_flat_optim({key: value for key, value in FLAT_ADAMW.items() if key != "eps"})
