"""Training budgets: each unit resolved to steps, bad input refused naming the key, compute-matched arms."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vlmlab.cli import main
from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm
from vlmlab.models.flops import training_flops
from vlmlab.sweep.ablation import AblationError, load_ablation
from vlmlab.sweep.plan import plan_sweep
from vlmlab.train.budget import Budget, SampleCost
from vlmlab.train.stages import resolve_stages

SAMPLE = SampleCost(text_tokens=10, visual_tokens=64, flops=1e6)


def budget(unit: str, value) -> Budget:
    return Budget.from_config(OmegaConf.create({"unit": unit, "value": value}))


@pytest.mark.parametrize(
    ("unit", "value", "steps"),
    [("steps", None, 800), ("steps", 7, 7), ("images", 100, 25), ("images", 103, 25), ("images", 3, 1),
     ("tokens", 4 * 74 * 10, 10), ("tokens", 4 * 74 * 10 - 1, 9), ("flops", 4e7, 10), ("flops", 4.0e7 * 0.3, 3),
     ("flops", 1.0, 1)],
)
def test_each_unit_resolves_to_whole_steps(unit, value, steps):
    assert budget(unit, value).steps(max_steps=800, batch_size=4, sample=SAMPLE) == steps


def test_an_absent_budget_is_max_steps():
    assert Budget.from_config(None).steps(max_steps=12, batch_size=4, sample=SAMPLE) == 12


@pytest.mark.parametrize(
    ("unit", "value", "key"),
    [("epochs", 3, "budget.unit"), ("flops", 0, "budget.value"), ("tokens", -5, "budget.value"),
     ("flops", "1e12", "budget.value"), ("steps", True, "budget.value"), ("flops", float("inf"), "budget.value")],
)
def test_bad_budgets_name_their_key(unit, value, key):
    with pytest.raises(ConfigError, match=f"^{key}: ") as caught:
        budget(unit, value)
    assert caught.value.key == key


@pytest.mark.parametrize(("override", "key"),
                         [("budget.unit=epochs", "budget.unit"), ("budget.value=-1", "budget.value")])
def test_a_bad_budget_fails_at_plan_time(tmp_path, make_cfg, override, key):
    (tmp_path / "toy.yaml").write_text("question: How long?\ncontrol: mlp\nseeds: [0]\nmetrics: [count]\n"
                                       f"arms:\n  mlp: []\n  bad: [{override}]\n")
    with pytest.raises(AblationError, match=rf"toy.yaml: arm 'bad': {key}: "):
        plan_sweep(load_ablation(tmp_path, "toy"), lambda overrides: make_cfg(*overrides))


def test_a_flops_budget_gives_arms_with_fewer_visual_tokens_more_steps(make_cfg):
    costs = {}
    for connector in ("mlp", "pixel_shuffle"):
        torch.manual_seed(0)
        cfg = make_cfg(f"model/connector={connector}")
        model = build_vlm(cfg.model, vocab_size=40, image_token_id=5, image_size=64)
        flops = training_flops(model, [[(64, 64)]], 10).training
        costs[connector] = SampleCost(10, model.visual_tokens([(64, 64)]), flops)
    matched = Budget("flops", 800 * 16 * costs["mlp"].flops)
    assert matched.steps(1, 16, costs["mlp"]) == 800
    assert matched.steps(1, 16, costs["pixel_shuffle"]) > 2 * 800  # a quarter of the visual tokens


def test_a_budgeted_run_records_its_compute(tmp_path, cache_dir, monkeypatch):
    """Two steps bought as five images at two per step; the record carries FLOPs, memory and the budget."""
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", "trainer.max_steps=50", "data.batch_size=2",
                 "budget.unit=images", "budget.value=5", "eval.limit_per_task=1", "eval.max_new_tokens=2",
                 "data.suite.train_images=40",  # a small suite of its own: the default one takes ~20 s to draw
                 "ablation.name=toy", "ablation.arm=budget"]) == 0
    GlobalHydra.instance().clear()
    (path,) = (tmp_path / "results" / "runs" / "toy" / "budget").glob("*[0-9a-f].json")
    record = json.loads(path.read_text())
    cost = record["cost"]
    assert record["status"] == "done", record["error"]
    assert cost["budget"] == {"unit": "images", "value": 5.0, "steps": 2} and cost["train_steps"] == 2
    assert cost["train_images"] == 4 and cost["train_tokens"] > 4 * cost["visual_tokens_per_image"]
    assert cost["train_flops"] == pytest.approx(4 * cost["train_flops_per_sample"], abs=4)
    assert cost["train_flops_per_sample"] > 3 * cost["params_total"]  # more than a forward of every weight once
    assert cost["inference_flops_per_sample"] > 0 and 1 <= cost["eval_generated_tokens"] <= 2
    assert cost["peak_memory_kind"] == "cpu_rss_delta" and cost["peak_memory_mb"] is not None


def test_stages_carry_the_run_budget_until_one_sets_its_own(make_cfg):
    cfg = make_cfg("budget.unit=images", "budget.value=64",
                   "+stages=[{name: a}, {name: b, budget: {value: 32}}, {name: c}]")
    budgets = [Budget.from_config(stage.config.budget) for stage in resolve_stages(cfg)]
    assert budgets == [Budget("images", 64), Budget("images", 32), Budget("images", 32)]
