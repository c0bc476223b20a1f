"""Image processing: decode and resize for the vision tower, and cut an image into the views the tower sees.

Two resizing policies (the paper's Table 5): every image squared to one resolution, or the aspect ratio
kept up to a longest side (the patch grid then varies per image and the tower interpolates its position
embeddings). Image splitting (Idefics2, the 64 vs 320 tokens comparison) turns one square image into a
grid of crops plus the downscaled whole image; it can be switched on for training and evaluation
separately, so the same weights can be evaluated both ways.
"""

from __future__ import annotations

import io
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from vlmlab.errors import ConfigError

if TYPE_CHECKING:
    from vlmlab.models.vision import VisionTower


@dataclass(frozen=True, kw_only=True)
class ImageSplitting:
    """Split into grid x grid crops plus the whole image, in training and/or evaluation."""

    grid: int = 2
    train: bool = False
    eval: bool = False

    def __post_init__(self) -> None:
        if self.grid <= 0:
            raise ConfigError("data.image.splitting.grid", f"must be positive, got {self.grid}", absolute=True)

    def active(self, training: bool) -> bool:
        """Whether images are split in this phase."""
        return self.train if training else self.eval


@dataclass(frozen=True, kw_only=True)
class ImageProcessor(ABC):
    """Resizes an image once (cached as uint8) and produces the normalised views of it for a phase."""

    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        # Config lists become tuples so the processor can key the per-sweep example cache.
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    @property
    @abstractmethod
    def tower_size(self) -> int:
        """The square resolution the vision tower is built for (its position-embedding grid)."""

    @abstractmethod
    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) the decoded image is resized to before it is cached."""

    def check(self, tower: "VisionTower", source_side: int) -> None:
        """Refuse settings this tower or the source images (of side `source_side`) cannot serve.

        The tower itself already refused a `tower_size` off its patch grid when it was built.
        """

    @abstractmethod
    def view_shapes(self, height: int, width: int, training: bool) -> list[tuple[int, int]]:
        """(height, width) of each view the vision tower sees for a cached image of this shape."""

    @abstractmethod
    def views(self, pixels: torch.Tensor, training: bool) -> list[torch.Tensor]:
        """Normalised float views [3, h, w] of one cached uint8 image."""

    def to_uint8(self, image: Image.Image | dict | bytes) -> torch.Tensor:
        """One image, resized, as a [3, H, W] uint8 tensor (compact enough to keep a whole split in memory)."""
        if isinstance(image, dict):
            image = image["bytes"]
        if isinstance(image, bytes):
            image = Image.open(io.BytesIO(image))
        image = image.convert("RGB")
        size = self.target_size(*image.size)
        if image.size != size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> the float inputs the vision tower expects."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        return (pixels.float() / 255.0 - mean) / std


def resample(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 (or float) pixels [3, H, W] resized to [3, height, width] as floats in 0..255 (bicubic, antialiased)."""
    if tuple(pixels.shape[-2:]) == (height, width):
        return pixels.float()
    return torch.nn.functional.interpolate(pixels[None].float(), size=(height, width), mode="bicubic",
                                           antialias=True, align_corners=False)[0].clamp(0, 255)


@dataclass(frozen=True, kw_only=True)
class SquareResize(ImageProcessor):
    """Every image squared to `size` (the paper's default); optionally split into crops + the whole image."""

    size: int = 64
    splitting: ImageSplitting = field(default_factory=ImageSplitting)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size <= 0:
            raise ConfigError("data.image.size", f"must be positive, got {self.size}", absolute=True)
        if isinstance(self.splitting, dict):
            object.__setattr__(self, "splitting", ImageSplitting(**self.splitting))

    @property
    def tower_size(self) -> int:
        return self.size

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        # Cached square at up to the crops' resolution, whatever the phase flags say: evaluation settings
        # must not change what training sees (the "same weights, different inference" comparison).
        side = min(self.size * self.splitting.grid, max(width, height))
        return (side, side)

    def check(self, tower: "VisionTower", source_side: int) -> None:
        super().check(tower, source_side)
        if (self.splitting.train or self.splitting.eval) and self.size * self.splitting.grid > source_side:
            raise ConfigError("data.image.splitting.grid", f"a {self.splitting.grid}x{self.splitting.grid} grid of "
                              f"{self.size}px crops is larger than the {source_side}px source images "
                              "(data.suite.canvas): every crop would be upsampled", absolute=True)

    def view_shapes(self, height: int, width: int, training: bool) -> list[tuple[int, int]]:
        count = self.splitting.grid**2 + 1 if self.splitting.active(training) else 1
        return [(self.size, self.size)] * count

    def views(self, pixels: torch.Tensor, training: bool) -> list[torch.Tensor]:
        whole = resample(pixels, self.size, self.size)
        if not self.splitting.active(training):
            return [self.normalise(whole)]
        grid, side = self.splitting.grid, self.size
        large = resample(pixels, side * grid, side * grid)
        crops = [large[:, r * side : (r + 1) * side, c * side : (c + 1) * side] for r in range(grid) for c in range(grid)]
        return [self.normalise(view) for view in (*crops, whole)]


@dataclass(frozen=True, kw_only=True)
class AspectPreserving(ImageProcessor):
    """The image keeps its shape: longest side scaled to `max_side`, both sides rounded to `multiple` pixels."""

    max_side: int = 64
    multiple: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in (("max_side", self.max_side), ("multiple", self.multiple)):
            if value <= 0:
                raise ConfigError(f"data.image.{key}", f"must be positive, got {value}", absolute=True)

    @property
    def tower_size(self) -> int:
        return self.max_side

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        scale = self.max_side / max(width, height)
        def snap(side: int) -> int:
            return max(self.multiple, self.multiple * math.floor(side * scale / self.multiple + 0.5))
        return (min(snap(width), self.max_side), min(snap(height), self.max_side))

    def check(self, tower: "VisionTower", source_side: int) -> None:
        super().check(tower, source_side)
        if not tower.any_resolution:
            raise ConfigError("data.image._target_", f"aspect-ratio preserving images need a vision tower that can "
                              f"interpolate its position embeddings; model.vision ({type(tower.encoder).__name__}) "
                              "cannot", absolute=True)
        if self.multiple % tower.patch_size:
            raise ConfigError("data.image.multiple", f"{self.multiple} is not a multiple of the vision tower's "
                              f"patch size {tower.patch_size} (model.vision)", absolute=True)

    def view_shapes(self, height: int, width: int, training: bool) -> list[tuple[int, int]]:
        return [(height, width)]

    def views(self, pixels: torch.Tensor, training: bool) -> list[torch.Tensor]:
        return [self.normalise(pixels)]
