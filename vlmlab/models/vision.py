"""Vision towers: image encoders that turn pixels into a sequence of patch features."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from vlmlab.errors import ConfigError
from vlmlab.models.hub import building_on_meta, hub_config, weight_loading


class VisionTower(nn.Module, ABC):
    """An image encoder with a square patch grid: pixels [B, 3, S, S] -> features [B, P, D]."""

    quality: dict[str, Any] | None = None  # a zoo tower's quality score (vlmlab.models.zoo); None for any other

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width of one patch feature."""

    @property
    @abstractmethod
    def patch_size(self) -> int:
        """Side of one square patch, in pixels."""

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (rows, cols) of an image; both sides must be multiples of the patch size."""
        for side in (height, width):
            if side <= 0 or side % self.patch_size:
                raise ConfigError(
                    "data.image.size",
                    f"{side} is not a positive multiple of the vision tower's patch size {self.patch_size}",
                    absolute=True,  # the resolution comes from the data config
                )
        return height // self.patch_size, width // self.patch_size

    @property
    @abstractmethod
    def any_resolution(self) -> bool:
        """Whether the tower accepts images of any size (by interpolating its position embeddings)."""

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch features [B, (H/p)*(W/p), D] of a batch of images [B, 3, H, W], in row-major grid order."""


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The vision half of a dual-encoder config (SigLIP, CLIP), without a pooling head the VLM never uses."""
    config = getattr(config, "vision_config", None) or config
    if getattr(config, "vision_use_head", False):
        config.vision_use_head = False  # SigLIP's attention-pooling head: untrained weight that would count as trainable
    return config


# Towers whose embeddings always interpolate to the input size (their forward has no switch for it).
_ALWAYS_INTERPOLATE = {"dinov2", "dinov2_with_registers"}


class HFVisionTower(VisionTower):
    """Any transformers vision encoder (SigLIP, CLIP, DINOv2, ...): a hub id or local path, or a config preset.

    CLS and register tokens (CLIP, DINOv2) are dropped: the connector sees the patch grid only.
    """

    def __init__(
        self,
        image_size: int,
        pretrained: str | None = None,
        config: dict[str, Any] | None = None,
        feature_layer: int = -1,
    ) -> None:
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ConfigError("pretrained", "give exactly one of `pretrained` (a hub id or path) or `config`")
        if pretrained is not None:
            hf_config = _vision_config(hub_config(pretrained))
            self.encoder = (AutoModel.from_config(hf_config) if building_on_meta()
                            else AutoModel.from_pretrained(pretrained, config=hf_config, **weight_loading()))
        else:
            fields = dict(config)
            model_type = fields.pop("model_type", None)
            if model_type is None:
                raise ConfigError("config.model_type", "a config preset must name its model_type")
            hf_config = _vision_config(AutoConfig.for_model(model_type, image_size=image_size, **fields))
            self.encoder = AutoModel.from_config(hf_config)
        self.hf_config = hf_config
        self.image_size = image_size
        self.feature_layer = feature_layer
        self.grid(image_size, image_size)  # validates the resolution before any weights are used
        self._accepts_interpolate = "interpolate_pos_encoding" in inspect.signature(self.encoder.forward).parameters

    @property
    def any_resolution(self) -> bool:
        return self._accepts_interpolate or self.hf_config.model_type in _ALWAYS_INTERPOLATE

    @property
    def hidden_size(self) -> int:
        return self.hf_config.hidden_size

    @property
    def patch_size(self) -> int:
        return self.hf_config.patch_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        kwargs = {}
        if self._accepts_interpolate and (height, width) != (self.hf_config.image_size,) * 2:
            kwargs["interpolate_pos_encoding"] = True
        if self.feature_layer == -1:
            features = self.encoder(pixel_values=pixel_values, **kwargs).last_hidden_state
        else:
            out = self.encoder(pixel_values=pixel_values, output_hidden_states=True, **kwargs)
            features = out.hidden_states[self.feature_layer]
        patches = (height // self.patch_size) * (width // self.patch_size)
        return features[:, -patches:]  # CLS/register tokens come first in every HF tower that has them
