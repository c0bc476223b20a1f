"""Images to pretrain a vision tower on and to probe it with, drawn from every scene family of the suite.

`image_text_pairs` gives each image one descriptive caption, for a SigLIP-style tower trained with a sigmoid
contrastive loss; `probe_set` gives images labelled by one attribute each (colour, shape, count, word), for a
linear probe of a tower's features. Both draw from streams of their own, which no benchmark split uses; the
scenes themselves may still coincide with a benchmark's (a word at a lattice position is one of a few
thousand), so `image_text_pairs` can skip given scene keys, e.g. those of a suite's evaluation splits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from vlmlab.data import grid_text
from vlmlab.data import knowledge as know
from vlmlab.data import scenes_v2 as sc
from vlmlab.data import synthetic as v1
from vlmlab.data.synthetic_v2 import SUITE_VERSION, seeded_rng

# Consecutive draws of excluded scenes after which a family counts as exhausted.
_MAX_REJECTIONS = 10_000


@dataclass(frozen=True)
class Family:
    """A scene family as pretraining shows it: how to draw a scene, render it, and describe it in words."""

    draw: Callable[[np.random.Generator, int], Any]
    render: Callable[[Any, int], Image.Image]
    describe: Callable[[Any], str]


def _draw_grid(rng: np.random.Generator, canvas: int) -> grid_text.Grid:
    return v1.draw_scene(rng, 4)  # as the suite's grids: up to 4 objects


def _draw_single(rng: np.random.Generator, canvas: int) -> sc.SingleScene:
    return sc.draw_single_scene(rng, canvas, know.ENTITIES)


def _describe_dots(scene: sc.DotsScene) -> str:
    n = len(scene.objects)
    return f"{grid_text.NUMBER_WORDS[n]} shape{'s' if n > 1 else ''}"


def _describe_row(scene: sc.RowScene) -> str:
    line = "row" if scene.horizontal else "column"
    return f"a {line} of shapes: " + ", ".join(color for _, _, color in scene.objects)


FAMILIES: dict[str, Family] = {
    "grid": Family(_draw_grid, v1.render_scene, v1.caption),
    "text": Family(sc.draw_text_scene, sc.render_text_scene, lambda s: f"the word {s.word} in {s.size} letters"),
    "dots": Family(sc.draw_dots_scene, sc.render_dots_scene, _describe_dots),
    "row": Family(sc.draw_row_scene, sc.render_row_scene, _describe_row),
    "single": Family(_draw_single, sc.render_single_scene, lambda s: grid_text.indefinite(s.color, s.shape)),
}


@dataclass(frozen=True)
class Probe:
    """An attribute a linear probe reads from a tower's features: its scenes and each one's class."""

    draw: Callable[[np.random.Generator, int], Any]
    render: Callable[[Any, int], Image.Image]
    label: Callable[[Any], int]
    classes: int


PROBES: dict[str, Probe] = {
    "color": Probe(_draw_single, sc.render_single_scene, lambda s: v1.COLORS.index(s.color), len(v1.COLORS)),
    "shape": Probe(_draw_single, sc.render_single_scene, lambda s: v1.SHAPES.index(s.shape), len(v1.SHAPES)),
    "count": Probe(sc.draw_dots_scene, sc.render_dots_scene, lambda s: len(s.objects) - 1, 8),
    "word": Probe(sc.draw_text_scene, sc.render_text_scene, lambda s: sc.OCR_WORDS.index(s.word), len(sc.OCR_WORDS)),
}


def stream_name(seed: int, stream: str, purpose: str) -> str:
    """The name of the random stream of pretraining or probe images; never a benchmark split's."""
    # Benchmark streams start with the suite version (synthetic_v2.stream_name), the language's with "language:".
    return f"images:{SUITE_VERSION}:{seed}:{stream}:{purpose}"


def draw_pairs(seed: int, n: int, canvas: int, stream: str,
               exclude: Collection[tuple] = frozenset()) -> list[tuple[str, Any]]:
    """`n` drawn (not yet rendered) scenes as (family, scene), each of a random family, none keyed in `exclude`."""
    rng, names, drawn, rejected = seeded_rng(stream_name(seed, stream, "pairs")), tuple(FAMILIES), [], 0
    while len(drawn) < n:
        name = names[int(rng.integers(len(names)))]
        scene = FAMILIES[name].draw(rng, canvas)
        if scene.key in exclude:
            rejected += 1
            if rejected > _MAX_REJECTIONS:
                raise ValueError("image_text_pairs: every scene drawn is excluded; exclude fewer")
            continue
        rejected = 0
        drawn.append((name, scene))
    return drawn


def image_text_pairs(seed: int, n: int, canvas: int, stream: str,
                     exclude: Collection[tuple] = frozenset()) -> list[tuple[Image.Image, str]]:
    """`n` images of random scene families with one caption each; no scene whose key is in `exclude`.

    Images are square `canvas`-pixel RGB, but rows and columns keep their 2:1-3:1 shape (long side `canvas`),
    as in the suite: resizing them is the image processor's choice.
    """
    return rendered(draw_pairs(seed, n, canvas, stream, exclude), canvas)


def rendered(drawn: list[tuple[str, Any]], canvas: int) -> list[tuple[Image.Image, str]]:
    """Drawn (family, scene) pairs as (image, caption)."""
    return [(FAMILIES[name].render(scene, canvas), FAMILIES[name].describe(scene)) for name, scene in drawn]


def probe_set(seed: int, n_per_attribute: int, canvas: int, stream: str,
              exclude: Collection[tuple] = frozenset()) -> dict[str, tuple[list[Image.Image], list[int]]]:
    """Per attribute of PROBES, `n_per_attribute` images and their classes (0 .. PROBES[a].classes - 1); no scene
    keyed in `exclude` (those a tower trained on: a probe scores features of images it never saw), none twice."""
    probes = {}
    for attribute, probe in PROBES.items():
        rng = seeded_rng(stream_name(seed, stream, f"probe:{attribute}"))
        scenes: list[Any] = []
        taken, rejected = set(exclude), 0
        while len(scenes) < n_per_attribute:  # distinct scenes: none both fits the probe and scores it
            scene = probe.draw(rng, canvas)
            if scene.key in taken:
                rejected += 1
                if rejected > _MAX_REJECTIONS:
                    raise ValueError(f"probe_set: too few distinct {attribute} scenes outside `exclude`; "
                                     "probe fewer items")
                continue
            rejected = 0
            taken.add(scene.key)
            scenes.append(scene)
        probes[attribute] = ([probe.render(s, canvas) for s in scenes], [probe.label(s) for s in scenes])
    return probes
