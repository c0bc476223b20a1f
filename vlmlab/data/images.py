"""Image processing: decode, resize to the configured square resolution, and normalise."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class SquareResize:
    """Resize every image to `size` x `size` (the paper's square setting) and normalise per channel."""

    size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"data.image.size must be positive, got {self.size}")
        # Config lists become tuples so the processor can key the per-sweep example cache.
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    def to_uint8(self, image: Image.Image | dict | bytes) -> torch.Tensor:
        """One image as a [3, size, size] uint8 tensor (compact enough to keep a whole split in memory)."""
        if isinstance(image, dict):
            image = image["bytes"]
        if isinstance(image, bytes):
            image = Image.open(io.BytesIO(image))
        image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def stack(self, images: Sequence[Image.Image | dict | bytes]) -> torch.Tensor:
        """A split's images as one [N, 3, size, size] uint8 tensor."""
        return torch.stack([self.to_uint8(image) for image in images])

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> the float inputs the vision tower expects."""
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (pixels.float() / 255.0 - mean) / std
