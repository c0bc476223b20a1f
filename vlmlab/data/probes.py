"""Probe questions on the grid scenes, in the style of the benchmarks small VLMs report (MobileVLM, LLaVA-Phi):
POPE's object-hallucination yes/no questions and ScienceQA / MMBench-style multiple choice.

POPE asks "is there a <object> in the image?" about as many present objects as absent ones; its splits differ in
how the absent ones are chosen. Two of them have a meaning on the scene grammar: `random` (any absent colour-shape
pair) and `adversarial` (an absent pair that shares its colour or its shape with an object in the scene, the
binding error a model makes when it sees "red" and "circle" but not which goes with which). POPE's `popular`
split (the objects most frequent in the training data) has none: the grammar draws colours and shapes uniformly,
so it would be the random split again.

Multiple choice asks the colour of a shape with four lettered options and is answered by its letter; references
are [letter, *options], as `vlmlab.eval.metrics.multiple_choice` reads them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vlmlab.data.grid_text import Grid, indefinite
from vlmlab.data.synthetic import COLORS, POSITIONS, SHAPES

PAIRS: tuple[tuple[str, str], ...] = tuple((color, shape) for color in COLORS for shape in SHAPES)
OPTION_LETTERS = "abcd"


def _absent_random(present: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return [pair for pair in PAIRS if pair not in present]


def _absent_adversarial(present: set[tuple[str, str]]) -> list[tuple[str, str]]:
    # Colours and shapes of the scene, recombined: each is in the image, the pair is not.
    colors, shapes = {c for c, _ in present}, {s for _, s in present}
    near = [pair for pair in _absent_random(present) if pair[0] in colors or pair[1] in shapes]
    return near or _absent_random(present)


# POPE's negative sampling, by split name.
NEGATIVES: dict[str, Callable[[set[tuple[str, str]]], list[tuple[str, str]]]] = {
    "random": _absent_random,
    "adversarial": _absent_adversarial,
}


def pope_question(scene: Grid, rng: np.random.Generator, negatives: str) -> tuple[str, list[str]]:
    """"is there a <colour> <shape>?" (or "an") about a present object or, as often, an absent one chosen by `negatives`."""
    present = {(color, shape) for _, shape, color in scene.objects}
    if rng.random() < 0.5:
        pool, answer = sorted(present), "yes"
    else:
        pool, answer = NEGATIVES[negatives](present), "no"
    color, shape = pool[int(rng.integers(len(pool)))]
    return f"is there {indefinite(color, shape)}?", [answer]


def mc_question(scene: Grid, rng: np.random.Generator) -> tuple[str, list[str]]:
    """The colour of one object, by its shape when that is unique in the scene, else by its position; four
    options (the right one and three other colours, shuffled), answered by letter."""
    cell, shape, color = scene.objects[int(rng.integers(len(scene.objects)))]
    unique = [s for _, s, _ in scene.objects].count(shape) == 1
    subject = f"the {shape}" if unique else f"the shape at the {POSITIONS[cell]}"
    others = [c for c in COLORS if c != color]
    options = [color, *(others[int(i)] for i in rng.choice(len(others), size=len(OPTION_LETTERS) - 1, replace=False))]
    options = [options[int(i)] for i in rng.permutation(len(options))]
    listed = " ".join(f"{letter}. {option}" for letter, option in zip(OPTION_LETTERS, options))
    return f"what color is {subject}? {listed}", [OPTION_LETTERS[options.index(color)], *options]
