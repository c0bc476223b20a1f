"""Offline synthetic visual-question-answering suite.

Every image is a procedurally drawn scene: up to nine coloured shapes on a 3x3 grid in the upper
three quarters of a dark canvas and one short word in the bottom strip. Each image yields one row
per task in `TASKS` (counting, colour, shape, reading, captioning) with an answer known by
construction, so every design axis of a VLM has a measurable effect at toy scale without touching
the network. The suite is a pure function of a `SyntheticSpec` and is cached on disk as a Hugging
Face `DatasetDict`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlmlab.data.cache import build_once

SUITE_VERSION: str = "synthetic-v1"
TASKS: tuple[str, ...] = ("count", "color", "shape", "text", "caption")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
WORDS: tuple[str, ...] = (
    "cat", "dog", "sun", "box", "cup", "hat", "pen", "key", "map", "bus", "egg", "fox",
)  # fmt: skip

RGB: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 100, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 60, 210),
    "orange": (250, 140, 20),
}
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((16, 16, 24), (28, 20, 16), (12, 26, 22), (30, 30, 30))
TEXT_RGB: tuple[int, int, int] = (240, 240, 235)

FEATURES = datasets.Features(
    {
        "image_id": datasets.Value("string"),
        "image": datasets.Image(),
        "task": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "answer": datasets.Value("string"),
    }
)

# Consecutive rejected draws after which the scene space is treated as exhausted (tiny specs
# with max_objects=1 have under 2,000 distinct scenes).
_MAX_REJECTIONS = 10_000


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines the synthetic suite; equal specs give identical data."""

    seed: int = 0
    canvas: int = 64
    train_images: int = 2000
    val_images: int = 100
    test_images: int = 100
    max_objects: int = 4

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # bool is an int subclass, but `True` images is always a config mistake
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"synthetic spec: {field.name} must be an integer, got {value!r}")
        for name in ("train_images", "val_images", "test_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"synthetic spec: {name} must be positive, got {getattr(self, name)}")
        if self.canvas < 32:
            raise ValueError(f"synthetic spec: canvas must be at least 32 pixels, got {self.canvas}")
        if not 1 <= self.max_objects <= len(POSITIONS):
            raise ValueError(
                f"synthetic spec: max_objects must be between 1 and {len(POSITIONS)}, got {self.max_objects}"
            )

    def n_images(self, split: str) -> int:
        """Number of images in `split`."""
        return {"train": self.train_images, "validation": self.val_images, "test": self.test_images}[split]

    def digest(self) -> str:
        """Short stable hash of the spec's fields."""
        fields = {k: int(v) for k, v in dataclasses.asdict(self).items()}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    # The suite interface the run uses (shared with SyntheticV2Spec): version, load, metric per task.
    version = SUITE_VERSION

    in_memory = True  # small enough that a run decodes every image once and keeps it (vlmlab.data.suite)

    def load(self, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
        """The suite, generated once and cached under `cache_dir`."""
        return load_synthetic_suite(self, cache_dir)

    def task_metrics(self) -> dict[str, str]:
        """Metric name of each task that can be evaluated: exact match everywhere in v1."""
        return {task: "exact_match" for task in TASKS}

    def train_tasks(self) -> tuple[str, ...]:
        """Tasks of the training split (what a data mixture can weight)."""
        return TASKS

    def context_tasks(self) -> dict[str, str]:
        """Evaluation tasks are the training tasks: no renaming."""
        return {}


@dataclass(frozen=True)
class Scene:
    """One drawn image: objects as (cell, shape, colour) sorted by cell, the word, the background."""

    objects: tuple[tuple[int, str, str], ...]
    word: str
    background: int
    color_cell: int  # cell asked about in the colour question
    shape_cell: int  # cell asked about in the shape question

    @property
    def key(self) -> tuple:
        """What makes two scenes the same for split disjointness (background and questions aside)."""
        return (self.objects, self.word)


def _rng(seed: int, split: str) -> np.random.Generator:
    # sha256 rather than hash(): str hashes are salted per process
    entropy = int.from_bytes(hashlib.sha256(f"{SUITE_VERSION}:{seed}:{split}".encode()).digest()[:16], "big")
    return np.random.default_rng(entropy)


def draw_scene(rng: np.random.Generator, max_objects: int) -> Scene:
    """Draw one random scene with 1..max_objects objects in distinct grid cells."""
    n = int(rng.integers(1, max_objects + 1))
    cells = sorted(int(c) for c in rng.choice(len(POSITIONS), size=n, replace=False))
    shapes = rng.integers(0, len(SHAPES), size=n)
    colors = rng.integers(0, len(COLORS), size=n)
    objects = tuple((c, SHAPES[s], COLORS[k]) for c, s, k in zip(cells, shapes, colors))
    word = WORDS[int(rng.integers(len(WORDS)))]
    background = int(rng.integers(len(BACKGROUNDS)))
    color_cell, shape_cell = (cells[int(i)] for i in rng.integers(0, n, size=2))
    return Scene(objects, word, background, color_cell, shape_cell)


def cell_box(canvas: int, cell: int) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) of grid `cell` (reading order) in the upper 3/4 of the canvas."""
    row, col = divmod(cell, 3)
    w, h = canvas / 3, canvas * 3 / 4 / 3
    return col * w, row * h, (col + 1) * w, (row + 1) * h


@functools.lru_cache(maxsize=8)
def _font(canvas: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # largest size (from ~20% of the canvas down) at which every word fits the bottom strip
    strip_top, probe = canvas * 3 // 4, ImageDraw.Draw(Image.new("RGB", (canvas, canvas)))
    for size in range(max(8, round(canvas * 0.2)), 5, -1):
        font = ImageFont.load_default(size=size)
        boxes = [probe.textbbox((canvas / 2, (strip_top + canvas) / 2), w, font=font, anchor="mm") for w in WORDS]
        if all(b[1] >= strip_top and b[3] <= canvas and b[0] >= 0 and b[2] <= canvas for b in boxes):
            return font
    return font


def render_scene(scene: Scene, canvas: int) -> Image.Image:
    """Render `scene` as a canvas x canvas RGB image."""
    image = Image.new("RGB", (canvas, canvas), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for cell, shape, color in scene.objects:
        x0, y0, x1, y1 = cell_box(canvas, cell)
        # a square of 85% of the cell's short side, centred, keeps shapes apart yet large
        side = 0.85 * min(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2) - 1, round(cy + side / 2) - 1)
        fill = RGB[color]
        if shape == "circle":
            draw.ellipse(box, fill=fill)
        elif shape == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
    strip_top = canvas * 3 // 4
    draw.text((canvas / 2, (strip_top + canvas) / 2), scene.word, fill=TEXT_RGB, font=_font(canvas), anchor="mm")
    return image


def caption(scene: Scene) -> str:
    """Deterministic description listing objects in grid reading order, then the word."""
    parts = [
        f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape} at the {POSITIONS[cell]}"
        for cell, shape, color in scene.objects
    ]
    return f"{', '.join(parts)} and the word {scene.word}"


def questions(scene: Scene) -> list[tuple[str, str, str]]:
    """The (task, prompt, answer) rows of `scene`, one per task in TASKS order."""
    by_cell = {cell: (shape, color) for cell, shape, color in scene.objects}
    rows = {
        "count": ("how many shapes are there?", str(len(scene.objects))),
        "color": (f"what color is the shape at the {POSITIONS[scene.color_cell]}?", by_cell[scene.color_cell][1]),
        "shape": (f"what shape is at the {POSITIONS[scene.shape_cell]}?", by_cell[scene.shape_cell][0]),
        "text": ("what word is written?", scene.word),
        "caption": ("describe the image.", caption(scene)),
    }
    return [(task, *rows[task]) for task in TASKS]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _draw_split(spec: SyntheticSpec, split: str, taken: set[tuple]) -> list[Scene]:
    rng, scenes, rejected = _rng(spec.seed, split), [], 0
    while len(scenes) < spec.n_images(split):
        scene = draw_scene(rng, spec.max_objects)
        if scene.key in taken:
            rejected += 1
            if rejected > _MAX_REJECTIONS:
                raise ValueError(
                    f"synthetic spec: too few distinct scenes for disjoint splits with "
                    f"max_objects={spec.max_objects}; lower the image counts or raise max_objects"
                )
            continue
        rejected = 0
        scenes.append(scene)
    return scenes


def _generate_suite(spec: SyntheticSpec) -> datasets.DatasetDict:
    """Draw and render every split of the suite in memory."""
    taken: set[tuple] = set()
    splits: dict[str, datasets.Dataset] = {}
    # held-out splits first, so they do not move when train_images changes
    for split in ("test", "validation", "train"):
        scenes = _draw_split(spec, split, taken)
        taken.update(s.key for s in scenes)
        columns: dict[str, list] = {name: [] for name in FEATURES}
        for index, scene in enumerate(scenes):
            image = {"bytes": _png(render_scene(scene, spec.canvas)), "path": None}
            for task, prompt, answer in questions(scene):
                columns["image_id"].append(f"{split}-{index:06d}")
                columns["image"].append(image)
                columns["task"].append(task)
                columns["prompt"].append(prompt)
                columns["answer"].append(answer)
        splits[split] = datasets.Dataset.from_dict(columns, features=FEATURES)
    return datasets.DatasetDict({split: splits[split] for split in SPLITS})


def cache_path(spec: SyntheticSpec, cache_dir: str | os.PathLike) -> Path:
    """Directory under `cache_dir` where the suite for `spec` is stored."""
    return Path(cache_dir) / f"{SUITE_VERSION}-{spec.digest()}"


def load_synthetic_suite(spec: SyntheticSpec, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
    """The suite for `spec`, generated once and then loaded from `cache_dir`."""
    target = build_once(cache_path(spec, cache_dir), lambda path: _generate_suite(spec).save_to_disk(str(path)))
    return datasets.load_from_disk(str(target))
