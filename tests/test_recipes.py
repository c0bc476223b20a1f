"""Recipes of other systems as stage lists (`+recipe=...`): what each stage trains on and how, and a run of each."""

from __future__ import annotations

import json

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vlmlab.cli import main
from vlmlab.sweep.plan import check_config
from vlmlab.train.stages import resolve_stages


def _adaptation(stage, component: str) -> str:
    return stage.config.model.adapt[component]._target_.rsplit(".", 1)[-1]


def test_llava_phi_aligns_on_captions_frozen_then_tunes_the_lm_on_everything(make_cfg):
    cfg = make_cfg("+recipe=llava_phi")
    align, instruct = resolve_stages(cfg)
    assert dict(align.config.data.mixture) == {"caption": 1.0}
    assert (_adaptation(align, "vision"), _adaptation(align, "lm")) == ("Frozen", "Frozen")
    assert dict(instruct.config.data.mixture) == dict(cfg.data.mixture), "the whole mixture comes back"
    assert (_adaptation(instruct, "vision"), _adaptation(instruct, "lm")) == ("Frozen", "FullFineTuning")
    assert (align.config.trainer.max_steps, instruct.config.trainer.max_steps) == (300, 500)
    check_config(cfg)


def test_mm15_pretrains_on_ocr_and_captions_at_high_resolution_then_fine_tunes(make_cfg):
    cfg = make_cfg("+recipe=mm15_cpt")
    cpt, sft = resolve_stages(cfg)
    assert dict(cpt.config.data.mixture) == {"ocr": 4.0, "caption": 1.0}
    assert cpt.config.data.image.splitting.train and not cfg.data.image.splitting.train
    assert OmegaConf.to_container(sft.config.data.image) == OmegaConf.to_container(cfg.data.image)
    assert dict(sft.config.data.mixture) == dict(cfg.data.mixture)
    check_config(cfg)


@pytest.mark.slow  # a run of two stages; tests/test_stages.py runs the stage machinery in `make test`
def test_a_recipe_run_trains_its_stages_in_turn(tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", "+recipe=llava_phi",
                 "recipe.steps.align=2", "recipe.steps.instruct=2", "data.batch_size=2", "eval.limit_per_task=1",
                 "eval.max_new_tokens=2", "ablation.name=toy", "ablation.arm=llava_phi"]) == 0
    GlobalHydra.instance().clear()
    (path,) = (tmp_path / "results" / "runs" / "toy" / "llava_phi").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "done", record.get("error")
    align, instruct = record["cost"]["stages"]
    assert (align["stage"], instruct["stage"]) == ("align", "instruct")
    assert align["params_by_component"]["lm"]["trainable"] == 0
    assert instruct["params_by_component"]["lm"]["trainable"] == instruct["params_by_component"]["lm"]["total"]
    assert instruct["params_by_component"]["vision"]["trainable"] == 0
