"""The suite's language: the text a tiny language model is pretrained on, and what the suite's tokenizer is fitted to.

A document is the text of a training row as the VLM sees it, without the image: the task's prompt template
around the prompt, then " " and the answer ("question: how many shapes are there? short answer: 3"). Captions
come in every correct wording and as alt-texts, stories as their text segments, and the facts of
`vlmlab.data.knowledge` in several phrasings and as questions naming the shape in words: the only place the
held-out facts of synth_know are written. Scenes are drawn but never rendered, so a corpus is quick to make.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import numpy as np

from vlmlab.data import grid_text
from vlmlab.data import knowledge as know
from vlmlab.data import pretrain_images
from vlmlab.data import scenes_v2 as sc
from vlmlab.data import synthetic as v1
from vlmlab.data.suite import Suite
from vlmlab.data.synthetic_v2 import GENERATORS, SUITE_VERSION, Generator, SyntheticV2Spec, seeded_rng

_CANVAS = 128  # scenes are drawn at the suite's default size: their text depends on it only through layout
FACT_SHARE = 100  # each phrasing of each fact appears per_task // FACT_SHARE times (at least once)
STORY_STREAM = "story"  # the task name of the story documents' stream
STORY_SHARE = 4  # a corpus has per_task // STORY_SHARE stories
# What the tokenizer corpus is drawn from: a fixed stream and size, large enough that random draws show
# every prompt and answer word (the lexicon below guarantees the words the draws might still miss).
_TOKENIZER_SEED, _TOKENIZER_STREAM, _TOKENIZER_PER_TASK = 0, "tokenizer", 2000
# Every word the scene grammar can write, so the tokenizer knows words that a spec might produce but a
# random draw need not (e.g. number words above the grid's four objects).
_LEXICON: tuple[tuple[str, ...], ...] = (
    v1.COLORS, v1.SHAPES, ("bar",), sc.OCR_WORDS, grid_text.NUMBER_WORDS, tuple(sc.FONT_SIZES), v1.POSITIONS,
    tuple(w for words in grid_text.POSITION_WORDS.values() for w in words), grid_text.ALT_PREFIXES, grid_text.ALT_SUFFIXES,
    grid_text.STORY_OPENINGS, grid_text.STORY_LINKS, tuple(know.FACTS.values()),
    tuple(v for variants in (*grid_text.SHAPE_VARIANTS.values(), *grid_text.YES_NO_VARIANTS.values()) for v in variants),
)


def stream_name(seed: int, stream: str, task: str) -> str:
    """The name of the random stream a corpus draws `task`'s documents from."""
    # It starts with "language:" where every benchmark split's (synthetic_v2.stream_name) starts with the
    # suite version, so no corpus stream is ever a benchmark's, whatever `stream` is called.
    return f"language:{SUITE_VERSION}:{seed}:{stream}:{task}"


def template_of(gen: Generator, templates: Mapping[str, str], default_template: str) -> str:
    """The prompt template of `gen`'s training rows: its training task's, else its benchmark's, else the default."""
    return templates.get(gen.train_task, templates.get(gen.benchmark, default_template))


def _task_documents(gen: Generator, rng: np.random.Generator, per_task: int, template: str) -> list[str]:
    """`per_task` rows of `gen` as text; for captions every reference and an alt-text too (caption_style alt)."""
    texts = []
    for _ in range(per_task):
        scene = gen.draw(rng, _CANVAS)  # the whole family: synth_know's seen and held-out entities alike
        prompt, answers = gen.ask(scene, rng)
        # Only captions have several answers that are all right (VQA's variants include wrong counts).
        extra = answers[1:] if gen.alt is not None else []
        alts = [gen.alt(scene, rng)] if gen.alt is not None else []
        texts += [f"{template.format(prompt=prompt)} {answer}" for answer in (answers[0], *extra, *alts)]
    return texts


def _story_documents(rng: np.random.Generator, n: int) -> list[str]:
    """`n` story documents' text segments, joined where their images were."""
    texts = []
    for _ in range(n):
        scenes = tuple(v1.draw_scene(rng, 4) for _ in range(int(rng.integers(1, 4))))
        texts.append(" ".join(part for part in grid_text.story(scenes, rng) if isinstance(part, str)))
    return texts


def _fact_documents(repeats: int, template: str) -> list[str]:
    """Every entity's fact in every phrasing and as a question naming the entity, each `repeats` times."""
    texts = []
    for entity in know.ENTITIES:
        question = f"{template.format(prompt=know.named_question(entity))} {know.FACTS[entity]}"
        texts += [*know.fact_sentences(entity), question] * repeats
    return texts


def language_texts(seed: int, per_task: int, stream: str, templates: Mapping[str, str],
                   default_template: str) -> list[str]:
    """The language corpus: per task of the suite `per_task` training rows as text, a quarter as many stories,
    and the facts; shuffled. A pure function of its arguments, drawn from streams no benchmark split uses."""
    texts = []
    for gen in GENERATORS.values():
        rng = seeded_rng(stream_name(seed, stream, gen.train_task))
        texts += _task_documents(gen, rng, per_task, template_of(gen, templates, default_template))
    # fewer stories than rows: their words are the captions', and drawing three grids each is the slow part
    texts += _story_documents(seeded_rng(stream_name(seed, stream, STORY_STREAM)), per_task // STORY_SHARE)
    knowing = GENERATORS["synth_know"]
    texts += _fact_documents(max(1, per_task // FACT_SHARE), template_of(knowing, templates, default_template))
    order = seeded_rng(stream_name(seed, stream, "shuffle")).permutation(len(texts))
    return [texts[int(i)] for i in order]


def _references(per_task: int) -> list[str]:
    """Every reference answer of `per_task` rows per benchmark (the annotator variants a training row lacks)."""
    texts = set()
    for gen in GENERATORS.values():
        rng = seeded_rng(stream_name(_TOKENIZER_SEED, _TOKENIZER_STREAM, f"{gen.benchmark}:references"))
        for _ in range(per_task):
            texts.update(" " + answer for answer in gen.ask(gen.draw(rng, _CANVAS), rng)[1])
    return sorted(texts)


def tokenizer_corpus(templates: Mapping[str, str], default_template: str) -> list[str]:
    """The distinct texts the suite's one tokenizer is fitted to: a fixed language corpus, every reference
    answer's wording, the pretraining images' captions, the scene grammar's words and the templates' own
    words; sorted."""
    return list(_tokenizer_corpus(tuple(sorted(templates.items())), default_template))


@functools.lru_cache(maxsize=8)  # a sweep builds the tokenizer of every pipeline from the same templates
def _tokenizer_corpus(templates: tuple[tuple[str, str], ...], default_template: str) -> tuple[str, ...]:
    texts = set(language_texts(_TOKENIZER_SEED, _TOKENIZER_PER_TASK, _TOKENIZER_STREAM, dict(templates),
                               default_template))
    texts.update(_references(_TOKENIZER_PER_TASK // 10))
    # a tower's captions are tokenized by this tokenizer too (vlmlab.pretrain.tower)
    texts.update(" " + pretrain_images.FAMILIES[name].describe(scene) for name, scene in
                 pretrain_images.draw_pairs(_TOKENIZER_SEED, _TOKENIZER_PER_TASK, _CANVAS, _TOKENIZER_STREAM))
    texts.update(" " + " ".join(w for w in words if w) for words in _LEXICON)
    texts.update(template.format(prompt="") for template in (default_template, *(t for _, t in templates)))
    return tuple(sorted(texts))


def suite_language(suite: Suite, templates: Mapping[str, str], default_template: str) -> list[str] | None:
    """The tokenizer corpus of `suite` when it is the synthetic suite v2 (one for all its specs), else None."""
    return tokenizer_corpus(templates, default_template) if isinstance(suite, SyntheticV2Spec) else None


def words(text: str) -> set[str]:
    """The lowercase words (runs of letters and digits) of `text`."""
    return set(re.findall(r"[a-z0-9]+", text.lower()))
