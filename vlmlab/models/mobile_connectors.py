"""MobileVLM's convolutional connectors: LDP (MobileVLM, 2023) and LDPv2 (MobileVLM V2, 2024).

Both project each patch with a 2-layer GELU MLP, then work on the patch grid as an image to cut the visual tokens
about 4x: LDP with depthwise-separable convolutions whose second one has stride 2, LDPv2 with 2x2 average pooling
followed by a depthwise convolution that re-injects position (a PEG). Features arrive in row-major grid order.
"""

from __future__ import annotations

from math import ceil
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlmlab.errors import ConfigError
from vlmlab.models.connectors import Connector

if TYPE_CHECKING:
    from vlmlab.models.flop_tape import Tape


def _to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Row-major tokens [B, rows*cols, C] -> feature map [B, C, rows, cols]."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def _to_tokens(image: torch.Tensor) -> torch.Tensor:
    """Feature map [B, C, rows, cols] -> row-major tokens [B, rows*cols, C]."""
    return image.flatten(2).transpose(1, 2)


def _half(grid: tuple[int, int]) -> tuple[int, int]:
    """The grid after a stride-2 step that keeps the last odd row/column (ceil), as a 3x3 conv with padding 1 does."""
    return ceil(grid[0] / 2), ceil(grid[1] / 2)


def _point_mlp(vision_dim: int, lm_dim: int) -> nn.Sequential:
    """Both papers' first stage: Linear, GELU, Linear per patch, into the language model's width."""
    return nn.Sequential(nn.Linear(vision_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a [B, C, H, W] map (MobileVLM's choice over BatchNorm)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return super().forward(image.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _SqueezeExcite(nn.Module):
    """Channel gates from the map's mean: 1x1 conv down, ReLU, 1x1 conv up, hard sigmoid (MobileNetV3's SE)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # MobileNetV3 squeezes to a quarter of the channels, rounded to a multiple of 8 (never below 8 and never
        # more than 10% under the quarter): the official LDP builds its blocks from torchvision's MobileNetV3.
        quarter = channels // 4
        squeezed = max(8, (quarter + 4) // 8 * 8)
        squeezed += 8 if squeezed < 0.9 * quarter else 0
        self.down = nn.Conv2d(channels, squeezed, 1)
        self.up = nn.Conv2d(squeezed, channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pooled = image.mean(dim=(2, 3), keepdim=True)
        return image * nn.functional.hardsigmoid(self.up(nn.functional.relu(self.down(pooled))))


class _DepthwiseSeparableBlock(nn.Module):
    """MobileNetV3 block without expansion: depthwise 3x3, LN, Hardswish, SE, pointwise 1x1, LN (+ residual)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        # No conv biases: a LayerNorm with its own shift follows each conv.
        self.depthwise = nn.Conv2d(channels, channels, 3, stride, padding=1, groups=channels, bias=False)
        self.depthwise_norm = _ChannelLayerNorm(channels)
        self.gate = _SqueezeExcite(channels)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.pointwise_norm = _ChannelLayerNorm(channels)
        self.residual = stride == 1  # a stride-2 block changes the grid, so nothing to add it to

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = nn.functional.hardswish(self.depthwise_norm(self.depthwise(image)))
        out = self.pointwise_norm(self.pointwise(self.gate(out)))
        return image + out if self.residual else out

    def count_flops(self, tape: Tape, grid: tuple[int, int]) -> None:
        """Depthwise and pointwise convs at every output position, the SE's 1x1 convs once on the pooled map."""
        positions = grid[0] * grid[1] if self.residual else _half(grid)[0] * _half(grid)[1]
        tape.conv(self.depthwise, positions)
        tape.walk(self.depthwise_norm, positions)
        tape.conv(self.gate.down, 1)
        tape.conv(self.gate.up, 1)
        tape.conv(self.pointwise, positions)
        tape.walk(self.pointwise_norm, positions)


class LDPProjector(Connector):
    """MobileVLM's Lightweight Downsample Projector: per-patch MLP, then two depthwise-separable conv blocks.

    From the paper (MobileVLM, Chu et al. 2023, Sec. 3.4): pointwise Linear-GELU-Linear into the LM width; a
    depthwise 3x3 + pointwise block with a residual, then the same block with stride 2 and no residual, which
    leaves a quarter of the tokens (576 -> 144 for CLIP ViT-L/14 at 336 px); LayerNorm rather than BatchNorm.
    From the official code (Meituan-AutoML/MobileVLM, `LDPBlock`, built from torchvision's MobileNetV3 blocks with
    no expansion): Hardswish after the depthwise conv's norm, a squeeze-and-excitation gate with a hard sigmoid
    before the pointwise conv, no conv biases and no activation after the pointwise conv's norm. The official code
    assumes a square grid; here any grid works, an odd side keeping its last row/column: ceil(rows/2) * ceil(cols/2)
    tokens, exactly what the stride-2 3x3 conv with padding 1 yields.
    """

    def __init__(self, vision_dim: int, lm_dim: int) -> None:
        super().__init__(vision_dim, lm_dim)
        self.mlp = _point_mlp(vision_dim, lm_dim)
        self.blocks = nn.ModuleList([_DepthwiseSeparableBlock(lm_dim, 1), _DepthwiseSeparableBlock(lm_dim, 2)])

    def num_tokens(self, grid: tuple[int, int]) -> int:
        rows, cols = _half(grid)
        return rows * cols

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        image = _to_map(self.mlp(features), grid)
        for block in self.blocks:
            image = block(image)
        return _to_tokens(image)

    def count_flops(self, tape: Tape, grid: tuple[int, int]) -> None:
        tape.walk(self.mlp, grid[0] * grid[1])  # the MLP sees every patch, the blocks their own grids
        for block in self.blocks:
            block.count_flops(tape, grid)


class LDPv2Projector(Connector):
    """MobileVLM V2's projector: per-patch MLP, average pooling of factor x factor blocks, then a PEG.

    From the paper (MobileVLM V2, Chu et al. 2024, Sec. 3.2): Linear-GELU-Linear into the LM width, 2x2 average
    pooling (576 -> 144 tokens), and a positional-encoding generator, a depthwise 3x3 conv (with bias) added back
    as a residual, in place of LDP's convolution blocks. The official code pools adaptively to a fixed 12x12;
    here the pool is a factor x factor window (2 as in the paper) so the token count follows the grid, and an odd
    side keeps its last row/column as a smaller window (ceil mode, averaging the patches it covers): ceil(rows/f) *
    ceil(cols/f) tokens, so a 27x27 SigLIP grid works as LDP's does.
    """

    def __init__(self, vision_dim: int, lm_dim: int, factor: int = 2) -> None:
        super().__init__(vision_dim, lm_dim)
        if factor <= 0:
            raise ConfigError("factor", f"must be positive, got {factor}")
        self.factor = factor
        self.mlp = _point_mlp(vision_dim, lm_dim)
        self.peg = nn.Conv2d(lm_dim, lm_dim, 3, padding=1, groups=lm_dim)

    def reduced_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        """The grid after pooling, a partial window at an odd edge counting as one token."""
        return ceil(grid[0] / self.factor), ceil(grid[1] / self.factor)

    def num_tokens(self, grid: tuple[int, int]) -> int:
        rows, cols = self.reduced_grid(grid)
        return rows * cols

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        image = _to_map(self.mlp(features), grid)
        # ceil_mode keeps the partial edge windows; without padding their mean is over the patches they cover.
        pooled = nn.functional.avg_pool2d(image, self.factor, ceil_mode=True)
        return _to_tokens(pooled + self.peg(pooled))

    def count_flops(self, tape: Tape, grid: tuple[int, int]) -> None:
        tape.walk(self.mlp, grid[0] * grid[1])
        tape.conv(self.peg, self.num_tokens(grid))
