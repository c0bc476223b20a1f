"""Training stages: config patches per stage, refused transitions, and a two-stage run end to end."""

from __future__ import annotations

import json

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vlmlab.cli import main
from vlmlab.errors import ConfigError
from vlmlab.train.stages import resolve_stages

FROZEN = {"_target_": "vlmlab.models.adapt.Frozen"}
LORA = {"_target_": "vlmlab.models.adapt.LoRA", "r": 4}


def with_stages(make_cfg, stages):
    cfg = make_cfg()
    OmegaConf.set_struct(cfg, False)
    cfg.stages = stages
    return cfg


def test_each_stage_patches_the_run_config(make_cfg):
    cfg = with_stages(make_cfg, [
        {"name": "align", "max_steps": 3, "adapt_lm": FROZEN, "lr": {"connector": 0.01}},
        {"name": "tune", "max_steps": 5, "adapt_lm": LORA, "image": {"size": 32}},
    ])
    align, tune = resolve_stages(cfg)
    assert (align.name, align.config.trainer.max_steps, tune.config.trainer.max_steps) == ("align", 3, 5)
    assert align.config.optim.lr.connector == 0.01 and align.config.optim.lr.lm == cfg.optim.lr.lm, "lr merges"
    assert tune.config.optim.lr.connector == 0.01, "a stage starts from the previous stage's config"
    assert tune.config.model.adapt.lm == OmegaConf.create(LORA), "an adaptation is replaced whole"
    assert tune.config.data.image.size == 32 and align.config.data.image.size == 64
    assert "stages" not in tune.config
    (only,) = resolve_stages(make_cfg())
    assert only.name == "main" and only.config.trainer.max_steps == make_cfg().trainer.max_steps


@pytest.mark.parametrize(
    ("stages", "key"),
    [
        ([{"name": "a", "steps": 3}], "stages[0].steps"),
        ([{"adapt_lm": LORA}, {"adapt_lm": dict(LORA, r=8)}], "stages[1].adapt_lm"),
    ],
)
def test_impossible_stages_are_refused_naming_the_key(make_cfg, stages, key):
    with pytest.raises(ConfigError) as err:
        resolve_stages(with_stages(make_cfg, stages))
    assert err.value.key == key


def test_a_two_stage_run_trains_from_frozen_to_lora_with_one_continuous_log(tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    stages = ("stages=[{name:align,max_steps:3,adapt_vision:{_target_:vlmlab.models.adapt.Frozen},"
              "adapt_lm:{_target_:vlmlab.models.adapt.Frozen}},"
              "{name:lora,max_steps:2,adapt_lm:{_target_:vlmlab.models.adapt.LoRA,r:4}}]")
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", "trainer.log_every_n_steps=1",
                 "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2", stages,
                 "ablation.name=toy", "ablation.arm=staged"]) == 0
    GlobalHydra.instance().clear()
    (path,) = (tmp_path / "results" / "runs" / "toy" / "staged").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "done", record.get("error")
    align, lora = record["cost"]["stages"]
    assert (align["stage"], align["train_steps"], lora["train_steps"]) == ("align", 3, 2)
    assert record["cost"]["train_steps"] == 5
    by = align["params_by_component"], lora["params_by_component"]
    assert by[0]["lm"]["trainable"] == 0 < by[1]["lm"]["trainable"] < by[1]["lm"]["total"]
    assert by[1]["vision"]["trainable"] == 0, "the vision tower stays frozen into the second stage"
    steps = [int(line.split(",")[1]) for line in path.with_suffix(".metrics.csv").read_text().splitlines()[1:]
             if line.split(",")[-2:] != ["", ""]]
    assert max(steps) >= 4, "the second stage's steps continue the first's"


def test_a_bad_stage_is_refused_before_training(tmp_path, cache_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "staged.yaml").write_text(
        "question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms:\n"
        "  a: ['stages=[{name:x,max_steps:2},{name:y,max_steps:2,image:{size:60}}]']\n")
    GlobalHydra.instance().clear()
    assert main(["sweep", "staged", f"paths.cache_dir={cache_dir}"]) == 2
    GlobalHydra.instance().clear()
    assert "stages[1] (y): data.image.size: 60" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_the_two_stage_preset_plans(make_cfg):
    from vlmlab.sweep.plan import check_config

    cfg = make_cfg("+schedule=two_stage")
    align, lora = resolve_stages(cfg)
    assert align.config.model.adapt.lm._target_.endswith("Frozen") and lora.config.model.adapt.lm._target_.endswith("LoRA")
    check_config(cfg)


def test_the_two_stage_preset_names_the_adaptation_presets(make_cfg):
    """Its stages point at conf/model/adapt's files: resolved, each holds the preset's content, as one-stage runs do."""
    cfg = make_cfg("+schedule=two_stage")
    presets = {name: make_cfg(f"model/adapt@model.adapt.lm={name}").model.adapt.lm for name in ("frozen", "lora")}
    stages = OmegaConf.to_container(cfg.stages, resolve=True)
    assert [(s["adapt_vision"], s["adapt_lm"]) for s in stages] == [
        (OmegaConf.to_container(presets[name]),) * 2 for name in ("frozen", "lora")]


def test_a_stage_sets_its_own_warmup(make_cfg):
    first, second = resolve_stages(with_stages(make_cfg, [{"name": "a"}, {"name": "b", "warmup_steps": 7}]))
    assert first.config.optim.schedule.warmup_steps == make_cfg().optim.schedule.warmup_steps
    assert second.config.optim.schedule.warmup_steps == 7
