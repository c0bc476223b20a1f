"""Assemble a vision-language model from the `model.*` config groups: vision, lm, adapt, connector, fusion."""

from __future__ import annotations

import functools
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlmlab.errors import ConfigError
from vlmlab.models.vlm import VisionLanguageModel

COMPONENTS = ("vision", "connector", "fusion", "lm")


def instantiate_group(group: str, node: DictConfig, **kwargs: Any) -> Any:
    """Instantiate one config group, re-raising configuration errors under the group's key."""
    try:
        return instantiate(node, **kwargs)
    except ConfigError as err:
        raise err.under(group) from None
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause.under(group) from None
        raise ConfigError(group, str(cause or err)) from err


def _adapt(group: str, node: DictConfig, module: torch.nn.Module) -> torch.nn.Module:
    """Apply the adaptation (frozen / full / LoRA / DoRA) configured at `group` to a pretrained component."""
    try:
        return instantiate_group(group, node).apply(module)
    except ConfigError as err:
        raise err.under(group) from None


def build_vlm(model_cfg: DictConfig, vocab_size: int, image_token_id: int, image_size: int) -> VisionLanguageModel:
    """The VLM described by `model_cfg`, for a tokenizer of `vocab_size` and a tower built for `image_size`."""
    vision = instantiate_group("model.vision", model_cfg.vision, image_size=image_size)
    lm = instantiate_group("model.lm", model_cfg.lm, vocab_size=vocab_size)
    vision.encoder = _adapt("model.adapt.vision", model_cfg.adapt.vision, vision.encoder)
    lm.model = _adapt("model.adapt.lm", model_cfg.adapt.lm, lm.model)
    connector = instantiate_group("model.connector", model_cfg.connector, vision_dim=vision.hidden_size, lm_dim=lm.hidden_size)
    fusion = instantiate_group("model.fusion", model_cfg.fusion)
    try:
        fusion.attach(lm)
    except ConfigError as err:
        raise err.under("model.fusion") from None
    try:
        return VisionLanguageModel(vision, connector, lm, fusion, image_token_id, image_size)
    except ConfigError as err:
        raise err.under("model.connector") from None


def check_model_config(model_cfg: DictConfig, image_size: int) -> VisionLanguageModel:
    """The model built on the meta device (no memory, no weights), to refuse bad configs before training; one
    build per distinct model config and resolution (a sweep's seeds, and arms that change only the data, share
    it: building a 7B model with adapters, even on meta, takes most of a second). Callers only read it."""
    return _meta_model(OmegaConf.to_yaml(model_cfg, resolve=True), image_size)


@functools.lru_cache(maxsize=64)
def _meta_model(model_yaml: str, image_size: int) -> VisionLanguageModel:
    with torch.device("meta"):
        return build_vlm(OmegaConf.create(model_yaml), vocab_size=256, image_token_id=0, image_size=image_size)


def count_parameters(model: VisionLanguageModel) -> dict[str, Any]:
    """Total and trainable parameter counts, overall and per component."""
    by_component = {
        name: {
            "total": sum(p.numel() for p in getattr(model, name).parameters()),
            "trainable": sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad),
        }
        for name in COMPONENTS
    }
    return {
        "params_total": sum(c["total"] for c in by_component.values()),
        "params_trainable": sum(c["trainable"] for c in by_component.values()),
        "params_by_component": by_component,
    }
