"""Assemble a vision-language model from the `model.vision`, `model.connector` and `model.lm` config groups."""

from __future__ import annotations

from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from vlmlab.errors import ConfigError
from vlmlab.models.vlm import VisionLanguageModel


def _build(group: str, node: DictConfig, **kwargs: Any) -> Any:
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


def build_vlm(model_cfg: DictConfig, vocab_size: int, image_token_id: int, image_size: int) -> VisionLanguageModel:
    """The VLM described by `model_cfg`, for a tokenizer of `vocab_size` and square images of `image_size`."""
    vision = _build("model.vision", model_cfg.vision, image_size=image_size)
    lm = _build("model.lm", model_cfg.lm, vocab_size=vocab_size)
    connector = _build("model.connector", model_cfg.connector, vision_dim=vision.hidden_size, lm_dim=lm.hidden_size)
    try:
        return VisionLanguageModel(vision, connector, lm, image_token_id, image_size)
    except ConfigError as err:
        raise err.under("model.connector") from None


def check_model_config(model_cfg: DictConfig, image_size: int) -> dict[str, int]:
    """Build the model on the meta device (no memory, no weights) to refuse bad configs before training.

    Returns the cost figures that need no training: total parameters and visual tokens per image.
    """
    with torch.device("meta"):
        model = build_vlm(model_cfg, vocab_size=256, image_token_id=0, image_size=image_size)
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "visual_tokens_per_image": model.visual_tokens_per_image,
    }


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params_total": total, "params_trainable": trainable}
