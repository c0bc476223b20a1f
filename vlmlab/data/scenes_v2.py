"""Scenes of the synthetic-v2 suite: a written word, many tiny shapes, a wide row of shapes, one large shape,
v1's grid.

Each new scene is a small frozen dataclass holding everything needed to render it (and to check a render
in tests), with a `key` that identifies it for split disjointness. The grid scenes of captioning and VQA
are version 1's (`vlmlab.data.synthetic.draw_scene` / `render_scene`), reused as they are; what is new for
them is the language, in `vlmlab.data.grid_text`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmlab.data.synthetic import BACKGROUNDS, COLORS, RGB, SHAPES, TEXT_RGB, WORDS

# v1's twelve 3-letter words plus 4-letter ones: enough that OCR cannot be solved by a prior over words.
OCR_WORDS: tuple[str, ...] = WORDS + (
    "fish", "bird", "tree", "lamp", "book", "door", "star", "moon", "ship",
    "cake", "kite", "frog", "bell", "coin", "leaf", "rose", "ring", "sock",
)  # fmt: skip
# Font em size as a fraction of the canvas: at 128 px, 7 / 14 / 23 px. The small one has ~5 px capitals,
# readable at full resolution but ~1 px (a smudge) once the image is downscaled 4x.
FONT_SIZES: dict[str, float] = {"small": 0.055, "medium": 0.11, "large": 0.18}
# Words and dots sit on a lattice of canvas / LATTICE pixels: one patch of the default tower at 64 px. A
# ~0.1M-parameter ViT trained from scratch for a few hundred steps cannot learn glyphs at arbitrary pixel
# offsets (a vision-only probe: 4% on 30 words at 128 px, chance 3%) but learns them on the lattice (100%);
# resolution still matters, since a downscaled small font is a blur (73% at 64 px against 100% at 128 px).
LATTICE = 8
Box = tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive pixel bounds


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: Box, fill: tuple[int, int, int]) -> None:
    """Fill `shape` (circle, square, bar, triangle) inside the inclusive pixel `box`."""
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape in ("square", "bar"):
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


# ---- OCR: one word at one of three font sizes --------------------------------------------------------


def font_px(canvas: int, size: str) -> int:
    """Font em size in pixels for a named size on a `canvas`-pixel image."""
    return max(5, round(FONT_SIZES[size] * canvas))  # below 5 px FreeType draws noise


@functools.lru_cache(maxsize=32)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


@dataclass(frozen=True)
class TextScene:
    """A word drawn with its top-left text origin at (x, y) in a named font size."""

    word: str
    size: str
    x: int
    y: int
    background: int

    @property
    def key(self) -> tuple:
        """Identity for split disjointness."""
        return ("text", self.word, self.size, self.x, self.y)

    def box(self, canvas: int) -> Box:
        """Inclusive pixel box of the rendered word."""
        left, top, right, bottom = _font(font_px(canvas, self.size)).getbbox(self.word)
        return (self.x + left, self.y + top, self.x + right - 1, self.y + bottom - 1)


def _on_lattice(rng: np.random.Generator, low: int, high: int, step: int) -> int:
    """A random multiple of `step` in [low, high], or `low` when none fits."""
    first, last = -(-low // step), high // step
    return int(rng.integers(first, last + 1)) * step if first <= last else low


def draw_text_scene(rng: np.random.Generator, canvas: int) -> TextScene:
    """A random word at a random size, its text origin on the lattice, fully inside the canvas."""
    word = OCR_WORDS[int(rng.integers(len(OCR_WORDS)))]
    size = tuple(FONT_SIZES)[int(rng.integers(len(FONT_SIZES)))]
    left, top, right, bottom = _font(font_px(canvas, size)).getbbox(word)
    margin, step = 2, canvas // LATTICE
    x = _on_lattice(rng, margin - left, canvas - margin - right, step)
    y = _on_lattice(rng, margin - top, canvas - margin - bottom, step)
    return TextScene(word, size, x, y, int(rng.integers(len(BACKGROUNDS))))


def render_text_scene(scene: TextScene, canvas: int) -> Image.Image:
    """Render a TextScene as a square RGB image."""
    image = Image.new("RGB", (canvas, canvas), BACKGROUNDS[scene.background])
    font = _font(font_px(canvas, scene.size))
    ImageDraw.Draw(image).text((scene.x, scene.y), scene.word, fill=TEXT_RGB, font=font)
    return image


# ---- counting: 1-8 tiny shapes, apart -------------------------------------------------------------


@dataclass(frozen=True)
class DotsScene:
    """Tiny shapes as (centre x, centre y, radius, shape, colour), with at least one background pixel between."""

    objects: tuple[tuple[int, int, int, str, str], ...]
    background: int

    @property
    def key(self) -> tuple:
        """Identity for split disjointness."""
        return ("dots", self.objects)


def draw_dots_scene(rng: np.random.Generator, canvas: int) -> DotsScene:
    """1-8 shapes of radius 3-4% of the canvas centred in lattice cells, boxes never touching: separate blobs."""
    n, objects = int(rng.integers(1, 9)), []
    gap, cell = max(2, round(0.02 * canvas)), canvas // LATTICE
    while len(objects) < n:
        r = max(2, round(rng.uniform(0.03, 0.04) * canvas))
        cx, cy = (int(v) * cell + cell // 2 for v in rng.integers(0, LATTICE, size=2))
        # Chebyshev distance: boxes (hence shapes) stay >= 1 px apart even diagonally (8-connectivity)
        if all(max(abs(cx - ox), abs(cy - oy)) >= r + orad + gap for ox, oy, orad, _, _ in objects):
            shape, color = SHAPES[int(rng.integers(len(SHAPES)))], COLORS[int(rng.integers(len(COLORS)))]
            objects.append((cx, cy, r, shape, color))
    return DotsScene(tuple(objects), int(rng.integers(len(BACKGROUNDS))))


def render_dots_scene(scene: DotsScene, canvas: int) -> Image.Image:
    """Render a DotsScene as a square RGB image."""
    image = Image.new("RGB", (canvas, canvas), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for cx, cy, r, shape, color in scene.objects:
        draw_shape(draw, shape, (cx - r, cy - r, cx + r, cy + r), RGB[color])
    return image


# ---- wide / tall: a row of shapes with thin bars at both ends --------------------------------------


@dataclass(frozen=True)
class RowScene:
    """A width x height image with shapes (box, shape, colour) ordered left-to-right or top-to-bottom."""

    width: int
    height: int
    objects: tuple[tuple[Box, str, str], ...]
    background: int

    @property
    def horizontal(self) -> bool:
        """True for a wide image (a row), False for a tall one (a column)."""
        return self.width > self.height

    @property
    def key(self) -> tuple:
        """Identity for split disjointness."""
        return ("row", self.width, self.height, self.objects)


def draw_row_scene(rng: np.random.Generator, canvas: int) -> RowScene:
    """3-5 distinct colours along the long axis of a 2:1..3:1 (or 1:2..1:3) image; the two ends are thin bars."""
    horizontal = bool(rng.integers(2))
    long, short = canvas, int(rng.integers(math.ceil(canvas / 3), canvas // 2 + 1))
    n = int(rng.integers(3, 6))
    colors = [COLORS[int(i)] for i in rng.choice(len(COLORS), size=n, replace=False)]
    # The end bars are ~3% of the long side thick: a square squash, or a coarse pooling, blurs them into
    # the background while their colour is exactly what is asked.
    thick = max(2, round(0.03 * long))
    first, last = (int(v) for v in rng.integers(1, max(2, round(0.05 * long)) + 1, size=2))
    spans = [(first, first + thick - 1)]
    inner_start, inner_end = first + thick, long - last - thick
    step = (inner_end - inner_start) / (n - 1)
    side = min(round(rng.uniform(0.45, 0.7) * short), int(0.75 * step))
    for i in range(1, n - 1):
        centre = inner_start + i * step
        spans.append((round(centre - side / 2), round(centre - side / 2) + side - 1))
    spans.append((long - last - thick, long - last - 1))
    objects = []
    for i, ((a0, a1), color) in enumerate(zip(spans, colors)):
        end = i in (0, n - 1)
        extent = round(rng.uniform(0.5, 0.85) * short) if end else side
        c0 = int(rng.integers(1, max(1, short - extent - 1) + 1))  # position across the long axis
        shape = "bar" if end else SHAPES[int(rng.integers(len(SHAPES)))]
        box = (a0, c0, a1, c0 + extent - 1) if horizontal else (c0, a0, c0 + extent - 1, a1)
        objects.append((box, shape, color))
    width, height = (long, short) if horizontal else (short, long)
    return RowScene(width, height, tuple(objects), int(rng.integers(len(BACKGROUNDS))))


def render_row_scene(scene: RowScene, canvas: int) -> Image.Image:
    """Render a RowScene at its own (non-square) size; `canvas` is its long side already."""
    image = Image.new("RGB", (scene.width, scene.height), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for box, shape, color in scene.objects:
        draw_shape(draw, shape, box, RGB[color])
    return image


# ---- knowledge: one large shape, an entity whose fact is asked ---------------------------------------


@dataclass(frozen=True)
class SingleScene:
    """One shape of `color` filling the square box of side `side` with top-left corner (x, y)."""

    color: str
    shape: str
    x: int
    y: int
    side: int
    background: int

    @property
    def entity(self) -> tuple[str, str]:
        """The (colour, shape) pair the scene shows: what the knowledge question is about."""
        return (self.color, self.shape)

    @property
    def key(self) -> tuple:
        """Identity for split disjointness."""
        return ("single", self.color, self.shape, self.x, self.y, self.side)


def draw_single_scene(rng: np.random.Generator, canvas: int, entities: Sequence[tuple[str, str]]) -> SingleScene:
    """One of `entities` (colour, shape) as a shape of 35-60% of the canvas, anywhere fully inside it."""
    color, shape = entities[int(rng.integers(len(entities)))]
    # large, so colour and shape are plain at any resolution: the benchmark tests knowledge, not perception
    side = int(rng.integers(round(0.35 * canvas), round(0.6 * canvas) + 1))
    x, y = (int(v) for v in rng.integers(0, canvas - side + 1, size=2))
    return SingleScene(color, shape, x, y, side, int(rng.integers(len(BACKGROUNDS))))


def render_single_scene(scene: SingleScene, canvas: int) -> Image.Image:
    """Render a SingleScene as a square RGB image."""
    image = Image.new("RGB", (canvas, canvas), BACKGROUNDS[scene.background])
    box = (scene.x, scene.y, scene.x + scene.side - 1, scene.y + scene.side - 1)
    draw_shape(ImageDraw.Draw(image), scene.shape, box, RGB[scene.color])
    return image
