"""AnyRes dynamic image splitting (LLaVA-NeXT's "AnyRes"; MM1.5's "dynamic image splitting").

Each image gets its own grid of tower-sized tiles, chosen from the allowed grids for its shape and resolution,
plus one global view of the whole image: a wide image is cut into a row of tiles, a tall one into a column, a
large square one into 2 x 2, a small one into a single tile. The number of views, and so of visual tokens, varies
per image and follows from the image's size alone (`view_shapes`), so costs are counted without the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlmlab.data.images import ImageProcessor, resample
from vlmlab.errors import ConfigError, is_int

Grid = tuple[int, int]  # (rows, cols) of tiles


@dataclass(frozen=True, kw_only=True)
class AnyRes(ImageProcessor):
    """Each image cut into the best-fitting grid of `size` px tiles (at most `max_tiles`) plus the whole image.

    The grid is LLaVA-NeXT's select_best_resolution: the one that keeps the most of the image's pixels once the
    image is scaled (aspect ratio kept) to fit it, and of those the one that wastes the least area on padding.
    `train` / `eval` switch the splitting per phase, as ImageSplitting's flags do; off, an image is its global
    view alone.
    """

    size: int = 64  # the tile side: the vision tower's square resolution
    max_tiles: int = 4  # tiles per image at most, the global view not counted
    grids: tuple[Grid, ...] | None = None  # allowed (rows, cols); None: every grid of at most max_tiles tiles
    train: bool = True
    eval: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in (("size", self.size), ("max_tiles", self.max_tiles)):
            if not is_int(value) or value <= 0:
                raise ConfigError(f"data.image.{key}", f"must be a positive integer, got {value!r}", absolute=True)
        if self.grids is None:
            return
        grids = tuple(tuple(grid) for grid in self.grids)  # config lists: hashable, for the example cache's key
        if not grids:
            raise ConfigError("data.image.grids", "is empty: give [rows, cols] grids, or null for every grid of "
                              "at most data.image.max_tiles tiles", absolute=True)
        for grid in grids:
            if len(grid) != 2 or not all(is_int(n) and n > 0 for n in grid):
                raise ConfigError("data.image.grids", f"{list(grid)} is not [rows, cols] of positive integers",
                                  absolute=True)
            if grid[0] * grid[1] > self.max_tiles:
                raise ConfigError("data.image.grids", f"{grid[0]}x{grid[1]} has {grid[0] * grid[1]} tiles, more than "
                                  f"data.image.max_tiles={self.max_tiles}", absolute=True)
        object.__setattr__(self, "grids", grids)

    @property
    def tower_size(self) -> int:
        return self.size

    def candidates(self) -> tuple[Grid, ...]:
        """The allowed grids, in the order that breaks ties (fewest tiles first, then rows)."""
        if self.grids is not None:
            return self.grids
        n = self.max_tiles
        return tuple(sorted(((r, c) for r in range(1, n + 1) for c in range(1, n // r + 1)),
                            key=lambda g: (g[0] * g[1], g[0])))

    def _fit(self, height: int, width: int, grid: Grid) -> tuple[int, int]:
        """(height, width) of the image scaled, aspect ratio kept, to fit the grid's canvas."""
        canvas_h, canvas_w = grid[0] * self.size, grid[1] * self.size
        scale = min(canvas_h / height, canvas_w / width)
        # Rounded, not floored: a side that scales to exactly the canvas must not lose a pixel to float error.
        return (min(canvas_h, max(1, round(height * scale))), min(canvas_w, max(1, round(width * scale))))

    def grid_for(self, height: int, width: int) -> Grid:
        """The grid an image of this shape is cut into: most pixels kept, then least padding."""
        def rank(grid: Grid) -> tuple[int, int]:
            fit_h, fit_w = self._fit(height, width, grid)
            kept = min(fit_h * fit_w, height * width)  # upscaling a small image adds no resolution
            wasted = grid[0] * grid[1] * self.size**2 - kept
            return (-kept, wasted)
        return min(self.candidates(), key=rank)  # equals (1x2 and 2x1 for a small square): the first listed

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        # Cached at the resolution its grid can use and no more; never upscaled (views() does that, per phase).
        fit_h, fit_w = self._fit(height, width, self.grid_for(height, width))
        return (width, height) if fit_h * fit_w >= height * width else (fit_w, fit_h)

    def active(self, training: bool) -> bool:
        """Whether images are split in this phase."""
        return self.train if training else self.eval

    def view_shapes(self, height: int, width: int, training: bool) -> list[tuple[int, int]]:
        if not self.active(training):
            return [(self.size, self.size)]
        rows, cols = self.grid_for(height, width)
        return [(self.size, self.size)] * (rows * cols + 1)

    def views(self, pixels: torch.Tensor, training: bool) -> list[torch.Tensor]:
        whole = self.normalise(resample(pixels, self.size, self.size))
        if not self.active(training):
            return [whole]
        height, width = (int(side) for side in pixels.shape[-2:])
        rows, cols = self.grid_for(height, width)
        fit_h, fit_w = self._fit(height, width, (rows, cols))
        # Centred on a canvas of the normalisation's zero (the mean colour): padding feeds the tower no signal.
        canvas = torch.zeros(3, rows * self.size, cols * self.size)
        top, left = (rows * self.size - fit_h) // 2, (cols * self.size - fit_w) // 2
        canvas[:, top : top + fit_h, left : left + fit_w] = self.normalise(resample(pixels, fit_h, fit_w))
        side = self.size
        tiles = [canvas[:, r * side : (r + 1) * side, c * side : (c + 1) * side]
                 for r in range(rows) for c in range(cols)]
        return [*tiles, whole]  # tiles left to right, top to bottom, then the whole image, as SquareResize's crops
