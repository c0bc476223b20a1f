"""Backbones of vlmlab's own zoo: tiny vision towers and LMs pretrained offline (`vlmlab pretrain`), loaded
through the same `pretrained=` path as hub models.

A zoo preset (conf/model/vision/pt_vit_s.yaml, conf/model/lm/pt_lm_m.yaml) holds the backbone's whole pretraining
recipe (conf/zoo/<name>.yaml) and a quality `level`. The recipe is part of the run's config and so of its identity:
change how a backbone is pretrained and every run on it gets a new id. Its weights live under
`<zoo_dir>/<name>-<recipe id>/level_<k>/`, saved with `save_pretrained`, each level with its quality score.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vlmlab.errors import ConfigError, is_int
from vlmlab.models.hub import building_on_meta
from vlmlab.models.language import HFCausalLM
from vlmlab.models.vision import HFVisionTower

QUALITY_FILE = "quality.json"  # beside each level's weights: {"metric": ..., "value": ..., "step": ...}


def plain(recipe: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """A recipe as resolved plain data."""
    if isinstance(recipe, DictConfig):
        return OmegaConf.to_container(recipe, resolve=True)  # type: ignore[return-value]
    return json.loads(json.dumps(dict(recipe)))


def recipe_id(recipe: Mapping[str, Any] | DictConfig) -> str:
    """12 hex characters naming a recipe's content: same recipe, same weights (pretraining is deterministic)."""
    payload = json.dumps(plain(recipe), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def backbone_dir(zoo_dir: str | Path, recipe: Mapping[str, Any] | DictConfig) -> Path:
    """Where the backbone of `recipe` keeps its levels."""
    return Path(zoo_dir) / f"{plain(recipe)['name']}-{recipe_id(recipe)}"


def level_dir(zoo_dir: str | Path, recipe: Mapping[str, Any] | DictConfig, level: int) -> Path:
    """The saved model of quality `level` (1 = the earliest checkpoint of the run)."""
    return backbone_dir(zoo_dir, recipe) / f"level_{level}"


def read_quality(path: Path) -> dict[str, Any]:
    """The quality score saved beside a level's weights."""
    return json.loads((path / QUALITY_FILE).read_text())


def _built(zoo_dir: str | Path, recipe: Mapping[str, Any] | DictConfig, level: int) -> Path:
    """The level's directory; a ConfigError saying how to build it if it is not (completely) there."""
    levels = len(plain(recipe)["levels"])
    if not is_int(level) or not 1 <= level <= levels:
        raise ConfigError("level", f"must be an integer from 1 to {levels} (the recipe's checkpoints), got {level!r}")
    path = level_dir(zoo_dir, recipe, level)
    if not (path / QUALITY_FILE).is_file():
        name = plain(recipe)["name"]
        raise ConfigError("level", f"zoo backbone '{name}' level {level} is not built at {path}: build it with "
                                   f"`vlmlab pretrain --backbone {name}` (or `make pretrain`); a sweep builds what it "
                                   "needs")
    return path


def zoo_tower(image_size: int, recipe: DictConfig, level: int, zoo_dir: str, feature_layer: int = -1) -> HFVisionTower:
    """The vision tower of `recipe` at quality `level`, with its quality score as `.quality`."""
    if building_on_meta():  # a config check: the architecture only, which the recipe holds
        return HFVisionTower(image_size, config=plain(recipe)["model"], feature_layer=feature_layer)
    path = _built(zoo_dir, recipe, level)
    tower = HFVisionTower(image_size, pretrained=str(path), feature_layer=feature_layer)
    tower.quality = read_quality(path)
    return tower


def zoo_lm(vocab_size: int, recipe: DictConfig, level: int, zoo_dir: str) -> HFCausalLM:
    """The causal LM of `recipe` at quality `level`, with its quality score as `.quality`. It was pretrained with
    the suite's tokenizer, which every run on the suite shares (vlmlab.train.pipeline)."""
    if building_on_meta():
        return HFCausalLM(vocab_size, config=plain(recipe)["model"])
    path = _built(zoo_dir, recipe, level)
    # Checked before loading: HFCausalLM would grow a smaller vocabulary to fit, hiding the mismatch.
    if (pretrained_vocab := json.loads((path / "config.json").read_text())["vocab_size"]) != vocab_size:
        raise ConfigError("level", f"zoo LM at {path} has a vocabulary of {pretrained_vocab} tokens, the run's "
                                   f"tokenizer {vocab_size}: it was pretrained on another suite's language")
    lm = HFCausalLM(vocab_size, pretrained=str(path))
    lm.quality = read_quality(path)
    return lm
