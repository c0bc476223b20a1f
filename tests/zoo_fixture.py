"""An untrained stand-in for the zoo: every level of every shipped recipe saved at initialisation, so that tests of
the wiring (the every-arm smoke test) run the pretrained arms without spending minutes pretraining them."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from vlmlab.launch.zoo import is_built
from vlmlab.models.zoo import level_dir
from vlmlab.pretrain.backbone import save_level
from vlmlab.pretrain.lm import CausalLMPretraining
from vlmlab.train.pipeline import DataPipeline

from .conftest import CONF


def seed_zoo(compose, overrides: list[str]) -> None:
    """Save each shipped recipe (conf/zoo/) at initialisation as each of its levels, under the zoo directory of
    `compose(overrides)` (a run config compose function), unless that level is built."""
    for name in sorted(path.stem for path in (CONF / "zoo").glob("*.yaml")):
        cfg: DictConfig = compose([*overrides, f"+zoo={name}"])
        if is_built(cfg.paths.zoo_dir, cfg.zoo):
            continue
        recipe = instantiate(cfg.zoo, _convert_="all")
        tokenizer = DataPipeline.of(cfg).tokenizer
        if isinstance(recipe, CausalLMPretraining):
            model = recipe.build(len(tokenizer))
        else:
            model = recipe.build(tokenizer).vision
        for level in range(1, len(recipe.levels) + 1):
            quality = {"step": 0, "metric": recipe.metric, "value": 50.0 if recipe.higher_is_better else 100.0}
            save_level(Path(level_dir(cfg.paths.zoo_dir, cfg.zoo, level)), model.save_pretrained, quality)
