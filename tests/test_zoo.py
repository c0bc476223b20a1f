"""The zoo of pretrained tiny backbones: built once (a record, each level's quality), loaded by the run's presets
through the same `pretrained=` path as hub models, and its quality carried into the run's cost."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from vlmlab.cli import main
from vlmlab.errors import ConfigError
from vlmlab.launch.zoo import build, build_needed, is_built, record_file
from vlmlab.models.build import build_vlm
from vlmlab.models.zoo import level_dir, read_quality, recipe_id
from vlmlab.run_record import RunRecord
from vlmlab.sweep.identity import run_id
from vlmlab.train.pipeline import DataPipeline
from vlmlab.train.run import train_and_evaluate

# Recipes small enough to pretrain in seconds: the shipped ones with fewer steps, items and widths.
TOWER = ["steps=4", "levels=[2,4]", "pairs=48", "probe_items=24", "batch_size=8", "model.hidden_size=16",
         "model.intermediate_size=32", "text.hidden_size=16", "text.intermediate_size=32", "embed_dim=8"]
LM = ["steps=4", "levels=[2,4]", "language.per_task=40", "language.held_out_per_task=8", "batch_size=4",
      "model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=1"]
SMALL_SUITE = ["data.suite.train_images=8", "data.suite.eval_images=4"]


def _at(prefix: str, overrides: list[str]) -> list[str]:
    return [f"{prefix}.{o}" for o in overrides]


def test_a_backbone_is_built_once_with_a_record_and_a_quality_per_level(make_cfg):
    cfg = make_cfg("+zoo=vit_s", *_at("zoo", TOWER), *SMALL_SUITE)
    assert build(cfg.zoo, cfg) and is_built(cfg.paths.zoo_dir, cfg.zoo)
    qualities = [read_quality(level_dir(cfg.paths.zoo_dir, cfg.zoo, level)) for level in (1, 2)]
    assert [q["step"] for q in qualities] == [2, 4]
    assert all(q["metric"] == "probe_accuracy" and 0 <= q["value"] <= 100 for q in qualities)
    assert {"probe_color", "probe_shape", "probe_count", "probe_word"} <= set(qualities[0])
    record = RunRecord.from_dict(json.loads(record_file(cfg.paths.results_dir, cfg.zoo).read_text()))
    assert record.run_id == recipe_id(cfg.zoo) and record.ablation.arm == "vit_s" and record.status == "done"
    assert record.metrics["level_2/probe_accuracy"] == pytest.approx(qualities[1]["value"])
    assert record.cost.train_steps == 4 and record.cost.params_total > 0
    assert not build(cfg.zoo, cfg)  # built: nothing to do
    assert not (level_dir(cfg.paths.zoo_dir, cfg.zoo, 1).parent / "work").exists()  # resumable state gone


def test_a_rebuild_that_scores_otherwise_keeps_the_committed_record_and_says_so(make_cfg, tmp_path, caplog):
    """Another CPU builds other bits: a rebuild keeps the committed record (its runs were trained on that build) and
    warns, naming the record and each level that differs."""
    # A zoo of its own: the session's shared one keeps what other tests built (and expect unbuilt).
    cfg = make_cfg("+zoo=lm_s", *_at("zoo", LM), *SMALL_SUITE, f"paths.zoo_dir={tmp_path / 'zoo'}")
    build(cfg.zoo, cfg)
    path = record_file(cfg.paths.results_dir, cfg.zoo)
    as_built = json.loads(path.read_text())
    shutil.rmtree(level_dir(cfg.paths.zoo_dir, cfg.zoo, 1).parent)
    with caplog.at_level(logging.WARNING, logger="vlmlab.launch.zoo"):
        assert build(cfg.zoo, cfg)
    assert not warnings(caplog), "the same machine builds the same bits: nothing to say"

    elsewhere = as_built | {"metrics": as_built["metrics"] | {"level_2/value": 1.5}}
    path.write_text(json.dumps(elsewhere))
    shutil.rmtree(level_dir(cfg.paths.zoo_dir, cfg.zoo, 1).parent)
    with caplog.at_level(logging.WARNING, logger="vlmlab.launch.zoo"):
        assert build(cfg.zoo, cfg)
    [warning] = warnings(caplog)
    assert str(path) in warning.getMessage() and "level 2" in warning.getMessage()
    assert "level 1" not in warning.getMessage()
    assert json.loads(path.read_text()) == elsewhere, "the committed record is left as it was"


def warnings(caplog) -> list[logging.LogRecord]:
    """The warnings captured (the build's progress lines are INFO)."""
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_zoo_lm_trains_on_the_suite_tokenizer_and_its_quality_reaches_the_run_cost(make_cfg, tmp_path):
    overrides = ["model/lm=pt_lm_s", "model.lm.level=1", *_at("model.lm.recipe", LM), *SMALL_SUITE,
                 "trainer.max_steps=2", "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2",
                 "model/adapt@model.adapt.lm=frozen"]
    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError, match="not built.*vlmlab pretrain --backbone lm_s"):
        build_vlm(cfg.model, 512, 3, 64)
    assert build_needed([cfg, cfg]) == ["lm_s"]  # once, though two runs need it
    quality = read_quality(level_dir(cfg.paths.zoo_dir, cfg.model.lm.recipe, 1))
    assert quality["metric"] == "perplexity" and quality["value"] > 1
    tokenizer = DataPipeline.of(cfg).tokenizer
    saved = level_dir(cfg.paths.zoo_dir, cfg.model.lm.recipe, 1)
    assert json.loads((saved / "config.json").read_text())["vocab_size"] == len(tokenizer)
    with pytest.raises(ConfigError, match="another suite's language"):  # e.g. a run on the v1 suite's tokenizer
        build_vlm(cfg.model, len(tokenizer) + 7, 3, 64)
    outcome = train_and_evaluate(cfg, tmp_path / "run", run_id(cfg))
    assert outcome.cost.lm_quality == pytest.approx(quality["value"]) and outcome.cost.vision_quality is None


def test_the_recipe_is_part_of_the_run_identity_and_the_zoo_directory_is_not(make_cfg, tmp_path):
    base = make_cfg("model/vision=pt_vit_s")
    assert run_id(base) != run_id(make_cfg("model/vision=pt_vit_s", "model.vision.recipe.steps=1300",
                                           "model.vision.recipe.levels=[75,300,1300]"))
    assert run_id(base) != run_id(make_cfg("model/vision=pt_vit_s", "model.vision.level=2"))
    assert run_id(base) == run_id(make_cfg("model/vision=pt_vit_s", f"paths.zoo_dir={tmp_path}"))


def test_pretrain_command_builds_what_is_asked_and_refuses_an_unknown_name(cache_dir, tmp_path, capsys):
    paths = [f"paths.cache_dir={cache_dir}", f"paths.results_dir={tmp_path / 'results'}", *SMALL_SUITE]
    assert main(["pretrain", "--backbone", "lm_s", *paths, *_at("zoo", LM), "zoo.seed=1"]) == 0
    out = capsys.readouterr().out
    assert "lm_s: built" in out and "level 2: step 4, perplexity" in out
    assert main(["pretrain", "--backbone", "lm_s", *paths, *_at("zoo", LM), "zoo.seed=1"]) == 0
    assert "lm_s: already built" in capsys.readouterr().out
    assert main(["pretrain", "--backbone", "lm_x", *paths]) == 2
    assert "no recipe lm_x" in capsys.readouterr().err


def test_the_committed_zoo_is_of_the_shipped_recipes_and_rises_with_steps_and_size(make_cfg):
    from vlmlab.cli.pretrain import zoo_names
    from vlmlab.results.zoo_table import zoo_records

    from .conftest import ROOT

    records = {record.ablation.arm: record for record in zoo_records(ROOT / "results")}
    assert sorted(records) == zoo_names()
    last = {}
    for name, record in records.items():
        assert record.run_id == recipe_id(make_cfg(f"+zoo={name}").zoo), f"{name}: record of another recipe"
        values = [record.metrics[f"level_{level}/value"] for level in (1, 2, 3)]
        better_first = name.startswith("vit")  # probe accuracy rises; perplexity falls
        assert values == sorted(values, reverse=not better_first), (name, values)
        last[name] = values[-1]
    assert last["vit_m"] > last["vit_s"] and last["lm_m"] < last["lm_s"]
