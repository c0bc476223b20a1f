"""Vision towers: image encoders that turn pixels into a sequence of patch features."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from vlmlab.errors import ConfigError


class VisionTower(nn.Module, ABC):
    """An image encoder with a square patch grid: pixels [B, 3, S, S] -> features [B, P, D]."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """Width of one patch feature."""

    @property
    @abstractmethod
    def patch_size(self) -> int:
        """Side of one square patch, in pixels."""

    def num_patches(self, image_size: int) -> int:
        """Patch features per image at `image_size` (which must be a multiple of the patch size)."""
        if image_size <= 0 or image_size % self.patch_size:
            raise ConfigError(
                "data.image.size",
                f"{image_size} is not a positive multiple of the vision tower's patch size {self.patch_size}",
                absolute=True,  # the builder passes the resolution from the data config
            )
        return (image_size // self.patch_size) ** 2

    @abstractmethod
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Patch features of a batch of images."""


def _vision_config(config: PretrainedConfig) -> PretrainedConfig:
    """The vision half of a dual-encoder config (SigLIP, CLIP), or the config itself."""
    return getattr(config, "vision_config", None) or config


class HFVisionTower(VisionTower):
    """Any transformers vision encoder: a hub id or local path (`pretrained`), or a config with random weights."""

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
            hf_config = _vision_config(AutoConfig.from_pretrained(pretrained))
            self.encoder = AutoModel.from_pretrained(pretrained, config=hf_config)
        else:
            fields = dict(config)
            model_type = fields.pop("model_type", None)
            if model_type is None:
                raise ConfigError("config.model_type", "a config preset must name its model_type")
            hf_config = AutoConfig.for_model(model_type, image_size=image_size, **fields)
            self.encoder = AutoModel.from_config(hf_config)
        self.hf_config = hf_config
        self.image_size = image_size
        self.feature_layer = feature_layer
        self.num_patches(image_size)  # validates the resolution before any weights are used
        # A pretrained tower run at another resolution needs its position embeddings interpolated.
        self._interpolate = image_size != hf_config.image_size

    @property
    def hidden_size(self) -> int:
        return self.hf_config.hidden_size

    @property
    def patch_size(self) -> int:
        return self.hf_config.patch_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = {"interpolate_pos_encoding": True} if self._interpolate else {}
        if self.feature_layer == -1:
            return self.encoder(pixel_values=pixel_values, **kwargs).last_hidden_state
        out = self.encoder(pixel_values=pixel_values, output_hidden_states=True, **kwargs)
        return out.hidden_states[self.feature_layer]
