"""Connectors (modality projectors): map vision patch features into the language model's embedding space.

Each connector decides how many visual tokens an image costs; `num_tokens` derives that number from
the patch grid (rows, cols) so it is never typed twice. Features arrive in row-major grid order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlmlab.errors import ConfigError

if TYPE_CHECKING:
    from vlmlab.models.flop_tape import Tape


class Connector(nn.Module, ABC):
    """Patch features [B, rows*cols, vision_dim] -> visual tokens [B, num_tokens(grid), lm_dim]."""

    def __init__(self, vision_dim: int, lm_dim: int) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.lm_dim = lm_dim

    @abstractmethod
    def num_tokens(self, grid: tuple[int, int]) -> int:
        """Visual tokens for an image whose patch grid is `grid` = (rows, cols)."""

    @abstractmethod
    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Visual tokens for a batch of patch features that share the patch grid `grid`."""

    def count_flops(self, tape: Tape, grid: tuple[int, int]) -> None:
        """Count this connector's products for one view on `tape` (see vlmlab.models.flops).

        By default every layer runs once per output token: right for per-patch maps and for block reducers,
        whose projection sees the merged blocks. A connector whose layers see other token counts overrides it.
        """
        tape.walk(self, self.num_tokens(grid))


class LinearProjector(Connector):
    """One linear layer per patch: the paper's "linear projection" (Table 11)."""

    def __init__(self, vision_dim: int, lm_dim: int) -> None:
        super().__init__(vision_dim, lm_dim)
        self.proj = nn.Linear(vision_dim, lm_dim)

    def num_tokens(self, grid: tuple[int, int]) -> int:
        return grid[0] * grid[1]

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.proj(features)


class MLPProjector(Connector):
    """A 2-layer GELU MLP per patch: the paper's "mapping network" (Table 11), LLaVA-1.5's projector."""

    def __init__(self, vision_dim: int, lm_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__(vision_dim, lm_dim)
        hidden_dim = hidden_dim or lm_dim
        if hidden_dim <= 0:
            raise ConfigError("hidden_dim", f"must be positive, got {hidden_dim}")
        self.net = nn.Sequential(nn.Linear(vision_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, lm_dim))

    def num_tokens(self, grid: tuple[int, int]) -> int:
        return grid[0] * grid[1]

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self.net(features)


class _ResamplerLayer(nn.Module):
    """Latents attend to [patches; latents] (Flamingo/Idefics2 style), then a residual MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, latents: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.norm_latents(latents)
        kv = torch.cat([self.norm_context(context), q], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


class PerceiverResampler(Connector):
    """A fixed number of learned latents that cross-attend to the patches: the paper's learned pooling.

    `mlp_projection` puts a 2-layer MLP instead of a linear map between the vision features and the
    perceiver (Idefics2's final design; Table 13 ablates it).
    """

    def __init__(
        self, vision_dim: int, lm_dim: int, num_latents: int = 64, depth: int = 3, heads: int = 4, mlp_ratio: int = 4,
        mlp_projection: bool = False,
    ) -> None:
        super().__init__(vision_dim, lm_dim)
        for key, value in (("num_latents", num_latents), ("depth", depth), ("heads", heads), ("mlp_ratio", mlp_ratio)):
            if value <= 0:
                raise ConfigError(key, f"must be positive, got {value}")
        if lm_dim % heads:
            raise ConfigError("heads", f"{heads} heads do not divide the language model width {lm_dim}")
        self.num_latents = num_latents
        self.proj = (
            nn.Sequential(nn.Linear(vision_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))
            if mlp_projection else nn.Linear(vision_dim, lm_dim)
        )
        self.latents = nn.Parameter(torch.randn(num_latents, lm_dim) * 0.02)
        self.layers = nn.ModuleList(_ResamplerLayer(lm_dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(lm_dim)

    def num_tokens(self, grid: tuple[int, int]) -> int:
        return self.num_latents

    def count_flops(self, tape: Tape, grid: tuple[int, int]) -> None:
        patches, latents = grid[0] * grid[1], self.num_latents
        tape.walk(self.proj, patches)
        context_grad = tape.grad
        tape.grad = self.latents.requires_grad  # the latent stream starts from the learned latents
        for layer in self.layers:
            # Keys and values are [patches; latents], so they require grad if either stream does.
            tape.multihead(layer.attn, latents, patches + latents, context_grad or tape.grad)
            tape.walk(layer.mlp, latents)

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        context = self.proj(features)
        latents = self.latents.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            latents = layer(latents, context)
        return self.norm(latents)


class _BlockReducer(Connector):
    """A connector that merges each factor x factor block of patches into one token."""

    def __init__(self, vision_dim: int, lm_dim: int, factor: int) -> None:
        super().__init__(vision_dim, lm_dim)
        if factor <= 0:
            raise ConfigError("factor", f"must be positive, got {factor}")
        self.factor = factor

    def reduced_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        """The grid after merging blocks; both sides must divide by the factor (ConfigError on `factor`)."""
        rows, cols = grid
        if rows % self.factor or cols % self.factor:
            raise ConfigError("factor", f"a {rows}x{cols} patch grid cannot be reduced by a factor of {self.factor}")
        return rows // self.factor, cols // self.factor

    def num_tokens(self, grid: tuple[int, int]) -> int:
        rows, cols = self.reduced_grid(grid)
        return rows * cols


class AveragePoolProjector(_BlockReducer):
    """Average pooling of factor x factor patch blocks, then a linear map: parameter-free token reduction."""

    def __init__(self, vision_dim: int, lm_dim: int, factor: int = 2) -> None:
        super().__init__(vision_dim, lm_dim, factor)
        self.proj = nn.Linear(vision_dim, lm_dim)

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, _, dim = features.shape
        image = features.transpose(1, 2).reshape(batch, dim, *grid)
        pooled = nn.functional.avg_pool2d(image, self.factor).flatten(2).transpose(1, 2)
        return self.proj(pooled)


class PixelShuffleProjector(_BlockReducer):
    """Space-to-depth: each factor x factor block of patches becomes one token (Idefics3/SmolVLM), then a linear map."""

    def __init__(self, vision_dim: int, lm_dim: int, factor: int = 2) -> None:
        super().__init__(vision_dim, lm_dim, factor)
        self.proj = nn.Linear(vision_dim * factor * factor, lm_dim)

    def forward(self, features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        batch, _, dim = features.shape
        (rows, cols), f = self.reduced_grid(grid), self.factor
        blocks = features.view(batch, rows, f, cols, f, dim).permute(0, 1, 3, 2, 4, 5)
        return self.proj(blocks.reshape(batch, rows * cols, f * f * dim))
