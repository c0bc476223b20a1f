"""The language about v1's grid scenes in the synthetic-v2 suite: several correct captions, noisy alt-texts,
questions with annotator variants, and stories (interleaved documents of scenes and text).

The scenes themselves are v1's (`vlmlab.data.synthetic.draw_scene` / `render_scene`), reused as they are;
`vlmlab.data.scenes_v2` draws the suite's new scenes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vlmlab.data.synthetic import COLORS, POSITIONS, SHAPES, Scene, caption

# ---- grid scenes (v1's): caption references, alt-texts, VQA questions with annotator variants -------

POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "top left": ("top left", "top left corner", "upper left"),
    "top": ("top", "top middle", "upper middle"),
    "top right": ("top right", "top right corner", "upper right"),
    "left": ("left", "middle left", "left side"),
    "center": ("center", "middle", "centre"),
    "right": ("right", "middle right", "right side"),
    "bottom left": ("bottom left", "bottom left corner", "lower left"),
    "bottom": ("bottom", "bottom middle", "lower middle"),
    "bottom right": ("bottom right", "bottom right corner", "lower right"),
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPE_VARIANTS = {"circle": ("a circle", "circle shape", "round"), "square": ("a square", "square shape", "box"),
                  "triangle": ("a triangle", "triangle shape", "triangular")}
YES_NO_VARIANTS = {"yes": ("yes it is", "yes there is", "yeah"), "no": ("no there is not", "nope", "no it is not")}
ALT_PREFIXES = ("", "picture of", "image of", "photo of", "illustration of")
ALT_SUFFIXES = ("", "stock photo", "hd wallpaper", "free download", "clipart", "vector art")
Grid = Scene  # v1's grid scene: objects (cell, shape, colour) and a word
Asked = tuple[str, str, tuple[str, ...]]  # prompt, canonical answer, annotator variants


def indefinite(color: str, shape: str) -> str:
    """A shape named with its indefinite article: "a red circle", "an orange square"."""
    return f"{'an' if color[0] in 'aeiou' else 'a'} {color} {shape}"


def _where(rng: np.random.Generator, cell: int) -> str:
    words = POSITION_WORDS[POSITIONS[cell]]
    return words[int(rng.integers(len(words)))]


def _shuffled(rng: np.random.Generator, items: tuple | list) -> list:
    return [items[int(i)] for i in rng.permutation(len(items))]


def caption_references(scene: Grid, rng: np.random.Generator) -> list[str]:
    """Five correct captions differing in template, synonyms and object order; [0] is v1's canonical caption."""
    objs, word, n = scene.objects, scene.word, len(scene.objects)
    count = f"{NUMBER_WORDS[n]} shape{'s' if n > 1 else ''}"
    return [
        caption(scene),
        "there is " + " and ".join(f"{indefinite(k, s)} in the {_where(rng, c)}" for c, s, k in reversed(objs))
        + f", and the word {word} is written below",
        f"the image shows {count}: " + ", ".join(f"{indefinite(k, s)} at the {_where(rng, c)}" for c, s, k in
                                                  _shuffled(rng, objs)) + f", above the text {word}",
        f"{count} on a dark background, " + " and ".join(f"{k} {s} {_where(rng, c)}" for c, s, k in objs)
        + f", with {word} written at the bottom",
        f"the word {word} under " + " and ".join(f"{indefinite(k, s)} on the {_where(rng, c)}" for c, s, k in
                                                 _shuffled(rng, objs)),
    ]


def alt_caption(scene: Grid, rng: np.random.Generator) -> str:
    """A noisy alt-text: a subset of objects, reordered, terse, with filler words and sometimes a wrong colour."""
    keep = _shuffled(rng, scene.objects)[: int(rng.integers(1, len(scene.objects) + 1))]
    parts = []
    for cell, shape, color in keep:
        if rng.random() < 0.25:  # web alt-texts are often simply wrong
            color = COLORS[int(rng.integers(len(COLORS)))]
        parts.append(f"{color} {shape}" + (f" {_where(rng, cell)}" if rng.random() < 0.3 else ""))
    if rng.random() < 0.5:
        parts.append(scene.word)
    prefix, suffix = (words[int(rng.integers(len(words)))] for words in (ALT_PREFIXES, ALT_SUFFIXES))
    return " ".join(w for w in (prefix, *parts, suffix) if w)


def _unique(scene: Grid, index: int) -> dict[str, tuple[int, str, str]]:
    """Objects whose attribute number `index` (1 shape, 2 colour) appears once, by that attribute."""
    values = [o[index] for o in scene.objects]
    return {o[index]: o for o in scene.objects if values.count(o[index]) == 1}


def _q_color_of_shape(scene: Grid, rng: np.random.Generator) -> Asked | None:
    unique = _unique(scene, 1)
    if not unique:
        return None
    shape = sorted(unique)[int(rng.integers(len(unique)))]
    color = unique[shape][2]
    return f"what color is the {shape}?", color, (f"dark {color}", f"light {color}", f"{color} color")


def _q_shape_of_color(scene: Grid, rng: np.random.Generator) -> Asked | None:
    unique = _unique(scene, 2)
    if not unique:
        return None
    color = sorted(unique)[int(rng.integers(len(unique)))]
    shape = unique[color][1]
    return f"what shape is {color}?", shape, SHAPE_VARIANTS[shape]


def _q_exists(scene: Grid, rng: np.random.Generator) -> Asked:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    answer = "yes" if any(s == shape for _, s, _ in scene.objects) else "no"
    return f"is there a {shape}?", answer, YES_NO_VARIANTS[answer]


def _q_count(scene: Grid, rng: np.random.Generator) -> Asked:
    n = len(scene.objects)
    return "how many shapes are there?", str(n), (f"{n} shapes", f"{n} objects", str(n + 1))


def _q_color_at(scene: Grid, rng: np.random.Generator) -> Asked:
    cell, _, color = scene.objects[int(rng.integers(len(scene.objects)))]
    return f"what color is the shape at the {POSITIONS[cell]}?", color, (f"dark {color}", f"{color} color")


VQA_QUESTIONS: dict[str, Callable[[Grid, np.random.Generator], Asked | None]] = {
    "color_of_shape": _q_color_of_shape,
    "shape_of_color": _q_shape_of_color,
    "exists": _q_exists,
    "count": _q_count,
    "color_at": _q_color_at,
}


def vqa_question(scene: Grid, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random applicable question and 10 annotator answers: 7-10 canonical (answers[0]), the rest variants."""
    kinds = list(VQA_QUESTIONS)
    for i in rng.permutation(len(kinds)):  # questions that do not apply (no unique attribute) are skipped
        asked = VQA_QUESTIONS[kinds[int(i)]](scene, rng)
        if asked is not None:
            break
    prompt, canonical, variants = asked
    agree = int(rng.integers(7, 11))
    others = [canonical] * (agree - 1) + [variants[int(rng.integers(len(variants)))] for _ in range(10 - agree)]
    return prompt, [canonical, *_shuffled(rng, others)]


# ---- Stories: interleaved documents of grid scenes and the text about them ------------------------------

STORY_OPENINGS = ("a picture", "one image", "look at this")  # what a story says before its first scene
STORY_LINKS = ("then", "next", "and then", "after that")  # what it says before each later scene
DESCRIBED_BEFORE = 0.25  # the share of scenes whose description comes before their image (a caption above it)
Story = tuple[str | int, ...]  # text segments and scene indices (where each scene's image goes), in reading order


def story(scenes: tuple[Grid, ...], rng: np.random.Generator) -> Story:
    """A document about `scenes`: each introduced, shown, and described by one of its correct captions.

    Mostly the description follows the image ("a picture <img> the image shows ..."); sometimes it comes first
    ("then there is ... : <img>"), as web pages put captions above images too, so the text is not always
    predictable from an image already seen. Consecutive text becomes one segment, as in OBELICS.
    """
    parts: list[str | int] = []
    for index, scene in enumerate(scenes):
        words = STORY_LINKS if index else STORY_OPENINGS
        intro = words[int(rng.integers(len(words)))]
        references = caption_references(scene, rng)
        description = references[int(rng.integers(len(references)))]
        if rng.random() < DESCRIBED_BEFORE:
            parts += [f"{intro} {description} :", index]
        else:
            parts += [intro, index, f"{description} ."]
    merged: list[str | int] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    return tuple(merged)
