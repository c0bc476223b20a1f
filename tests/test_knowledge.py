"""The knowledge benchmark synth_know (facts seen in training for half the shapes, only in text for the rest),
the suite's language corpus and tokenizer corpus, and the images that pretrain and probe a vision tower."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from vlmlab.data import knowledge as know
from vlmlab.data import grid_text, language, pretrain_images, scenes_v2, synthetic_v2
from vlmlab.data.synthetic import BACKGROUNDS, COLORS, POSITIONS, RGB, SHAPES, SyntheticSpec
from vlmlab.data.synthetic_v2 import GENERATORS, SPLITS, SyntheticV2Spec, draw_suite, load_synthetic_v2

TINY = SyntheticV2Spec(seed=3, canvas=64, train_images=12, eval_images=8)
CONF = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "data" / "synthetic_v2.yaml")
TEMPLATES, DEFAULT = dict(CONF.prompt_templates), CONF.prompt_template


# --- the facts ---------------------------------------------------------------------------------------------


def test_entities_split_into_balanced_disjoint_halves():
    assert len(know.ENTITIES) == len(set(know.ENTITIES)) == len(COLORS) * len(SHAPES) == 18
    assert len(know.SEEN) == len(know.HELD_OUT) == 9
    assert not set(know.SEEN) & set(know.HELD_OUT) and set(know.SEEN) | set(know.HELD_OUT) == set(know.ENTITIES)
    for half in (know.SEEN, know.HELD_OUT):
        assert {c for c, _ in half} == set(COLORS)  # every colour in both halves
        assert Counter(s for _, s in half) == {shape: 3 for shape in SHAPES}
    assert know.SPLIT_ENTITIES == {"train": know.SEEN, "validation": know.HELD_OUT, "test": know.HELD_OUT}


def test_every_entity_stands_for_its_own_new_word():
    facts = list(know.FACTS.values())
    assert set(know.FACTS) == set(know.ENTITIES) and len(set(facts)) == len(facts)
    suite_words = {*COLORS, *SHAPES, *scenes_v2.OCR_WORDS, *grid_text.NUMBER_WORDS, *grid_text.ALT_PREFIXES,
                   *grid_text.ALT_SUFFIXES, *(w for p in POSITIONS for w in p.split())}
    assert all(f.isalpha() and f.islower() for f in facts) and not set(facts) & suite_words
    for entity, fact in know.FACTS.items():
        sentences = know.fact_sentences(entity)
        assert len(sentences) == len(set(sentences)) >= 3
        assert all(fact in s and f"{entity[0]} {entity[1]}" in s for s in sentences)
        assert entity[0] in know.named_question(entity) and fact not in know.named_question(entity)


# --- synth_know rows ---------------------------------------------------------------------------------------


def test_know_is_registered_with_its_own_family():
    gen = GENERATORS["synth_know"]
    assert (gen.train_task, gen.info.metric, gen.family) == ("know", "exact_match", "single")
    assert [g.family for g in GENERATORS.values()].count("single") == 1
    assert "know" in CONF.mixture and synthetic_v2.SUITE_VERSION == "synthetic-v2.2"


def test_know_rows_ask_seen_facts_in_training_and_held_out_ones_in_evaluation():
    drawn = draw_suite(TINY)
    for split in SPLITS:
        examples = drawn[split][GENERATORS["synth_know"].task(split)]
        assert len(examples) == (TINY.train_images if split == "train" else TINY.eval_images)
        assert {e.scene.entity for e in examples} <= set(know.SPLIT_ENTITIES[split])
        for example in examples:
            assert example.prompt == know.KNOW_PROMPT
            assert example.answers == (know.FACTS[example.scene.entity],)
    # both evaluation splits together show several held-out entities, the training split several seen ones
    assert len({e.scene.entity for s in ("validation", "test") for e in drawn[s]["synth_know"]}) >= 4
    assert len({e.scene.entity for e in drawn["train"]["know"]}) >= 4


def test_a_single_scene_shows_its_shape_in_its_colour_inside_its_box():
    for example in draw_suite(TINY)["test"]["synth_know"]:
        scene = example.scene
        image = np.asarray(scenes_v2.render_single_scene(scene, TINY.canvas))
        assert image.shape == (TINY.canvas, TINY.canvas, 3)
        ink = np.any(image != np.array(BACKGROUNDS[scene.background]), axis=-1)
        assert {tuple(p) for p in image[ink]} == {RGB[scene.color]}
        ys, xs = np.nonzero(ink)
        assert scene.x <= xs.min() and xs.max() < scene.x + scene.side
        assert scene.y <= ys.min() and ys.max() < scene.y + scene.side
        assert ink.sum() >= 0.3 * scene.side ** 2  # large: a triangle fills half its box


def test_the_new_generator_leaves_every_other_task_as_it_was(monkeypatch):
    with_know = draw_suite(TINY)
    monkeypatch.setattr(synthetic_v2, "GENERATORS", {k: g for k, g in GENERATORS.items() if k != "synth_know"})
    without = draw_suite(TINY)
    for split in SPLITS:
        assert set(with_know[split]) - set(without[split]) == {GENERATORS["synth_know"].task(split)}
        for task, examples in without[split].items():
            assert with_know[split][task] == examples


def test_know_rows_in_a_loaded_suite(tmp_path):
    suite = load_synthetic_v2(dataclasses.replace(TINY, train_images=3, eval_images=3), tmp_path)
    for split in SPLITS:
        task = GENERATORS["synth_know"].task(split)
        picked = suite[split].filter(lambda t: t == task, input_columns="task")
        allowed = {know.FACTS[e] for e in know.SPLIT_ENTITIES[split]}
        assert len(picked) == 3 and set(picked["answer"]) <= allowed
        assert set(picked["prompt"]) == {know.KNOW_PROMPT}


# --- the language ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return language.language_texts(0, 300, "pretrain", TEMPLATES, DEFAULT)


def test_language_texts_are_deterministic_and_streams_apart(corpus):
    assert language.language_texts(0, 300, "pretrain", TEMPLATES, DEFAULT) == corpus
    assert language.language_texts(0, 300, "heldout", TEMPLATES, DEFAULT) != corpus
    assert language.language_texts(1, 300, "pretrain", TEMPLATES, DEFAULT) != corpus
    # No corpus stream is a benchmark split's, even one named after a split.
    benchmark = {synthetic_v2.stream_name(seed, split, g.task(split))
                 for seed in range(3) for split in SPLITS for g in GENERATORS.values()}
    for stream in ("pretrain", "heldout", *SPLITS):
        names = {language.stream_name(seed, stream, g.train_task) for seed in range(3) for g in GENERATORS.values()}
        assert not names & benchmark
        assert not {pretrain_images.stream_name(seed, stream, "pairs") for seed in range(3)} & benchmark


def test_language_texts_hold_every_task_as_training_rows_read(corpus):
    for gen in GENERATORS.values():
        template = language.template_of(gen, TEMPLATES, DEFAULT)
        head = template.split("{prompt}")[0]
        assert any(t.startswith(head) for t in corpus)
    assert language.template_of(GENERATORS["synth_caption"], TEMPLATES, DEFAULT) == TEMPLATES["caption"]
    assert language.template_of(GENERATORS["synth_ocr"], TEMPLATES, DEFAULT) == DEFAULT
    assert "question: what word is written? short answer: " in " ".join(corpus)
    captions = [t for t in corpus if t.startswith("describe the image. caption: ")]
    assert any(" and the word " in t for t in captions)  # v1's canonical caption
    alt_words = [w for w in (*grid_text.ALT_PREFIXES, *grid_text.ALT_SUFFIXES) if w]
    assert any(w in t for t in captions for w in alt_words)  # alt-texts, for caption_style alt
    assert any(t.startswith(o) for t in corpus for o in grid_text.STORY_OPENINGS)


def test_language_texts_teach_every_fact_often(corpus):
    counts = Counter(corpus)
    repeats = max(1, 300 // language.FACT_SHARE)
    for entity in know.ENTITIES:  # the held-out entities' facts too: the LM is where they live
        for sentence in know.fact_sentences(entity):
            assert counts[sentence] >= repeats
        asked = DEFAULT.format(prompt=know.named_question(entity)) + " " + know.FACTS[entity]
        assert counts[asked] >= repeats
    know_rows = {t.rsplit(" ", 1)[1] for t in corpus if t.startswith(DEFAULT.format(prompt=know.KNOW_PROMPT))}
    assert know_rows == set(know.FACTS.values())  # drawn over all 18 entities


def _suite_words(spec: SyntheticV2Spec, tmp_path) -> set[str]:
    suite = load_synthetic_v2(spec, tmp_path)
    found = set()
    for split in suite.values():
        texts = [*split["prompt"], *(a for answers in split["answers"] for a in answers)]
        if "texts" in split.column_names:
            texts += [t for texts_ in split["texts"] for t in texts_ if t]
        found |= {w for t in texts for w in language.words(t)}
    return found


def test_tokenizer_corpus_covers_every_word_a_suite_writes(tmp_path):
    vocabulary = {w for t in language.tokenizer_corpus(TEMPLATES, DEFAULT) for w in language.words(t)}
    spec = SyntheticV2Spec(seed=5, canvas=64, train_images=20, eval_images=10, story_documents=6)
    needed = set()
    for style in synthetic_v2.CAPTION_STYLES:
        needed |= _suite_words(dataclasses.replace(spec, caption_style=style), tmp_path / style)
    needed |= {w for t in (DEFAULT, *TEMPLATES.values()) for w in language.words(t.format(prompt=""))}
    assert needed - vocabulary == set()
    assert set(know.FACTS.values()) <= vocabulary and set(grid_text.NUMBER_WORDS) <= vocabulary
    captions = {w for _, c in pretrain_images.image_text_pairs(1, 100, 64, "tower") for w in language.words(c)}
    assert captions - vocabulary == set()  # a tower's captions are tokenized by the suite's tokenizer too


def test_only_the_v2_suite_has_a_language():
    corpus = language.suite_language(TINY, TEMPLATES, DEFAULT)
    assert corpus == language.tokenizer_corpus(TEMPLATES, DEFAULT) == sorted(set(corpus))
    assert language.suite_language(SyntheticSpec(), TEMPLATES, DEFAULT) is None


# --- images for towers ---------------------------------------------------------------------------------


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_text_pairs_cover_every_family_deterministically():
    pairs = pretrain_images.image_text_pairs(0, 200, 64, "tower")
    again = pretrain_images.image_text_pairs(0, 200, 64, "tower")
    assert [(_png(i), c) for i, c in pairs] == [(_png(i), c) for i, c in again]
    assert [c for _, c in pretrain_images.image_text_pairs(0, 200, 64, "other")] != [c for _, c in pairs]
    drawn = pretrain_images.draw_pairs(0, 200, 64, "tower")
    assert Counter(name for name, _ in drawn).keys() == pretrain_images.FAMILIES.keys()
    for (image, caption), (name, scene) in zip(pairs, drawn):
        assert image.mode == "RGB" and max(image.size) == 64 and caption
        if name != "row":
            assert image.size == (64, 64)
        assert caption == pretrain_images.FAMILIES[name].describe(scene)
    captions = {c for _, c in pairs}
    assert {grid_text.indefinite(*entity) for entity in know.ENTITIES} & captions
    assert any(c.endswith(" shapes") and c.split()[0] in grid_text.NUMBER_WORDS for c in captions)
    assert any(c.startswith("the word ") and c.endswith(" letters") for c in captions)
    assert any(c.startswith(("a row of shapes: ", "a column of shapes: ")) for c in captions)


def test_image_text_pairs_skip_excluded_scenes():
    first = pretrain_images.draw_pairs(0, 50, 64, "tower")
    excluded = {scene.key for _, scene in first[:10]}
    kept = pretrain_images.draw_pairs(0, 50, 64, "tower", exclude=excluded)
    assert not {scene.key for _, scene in kept} & excluded and len(kept) == 50


def test_probe_sets_label_what_their_images_show():
    probes = pretrain_images.probe_set(0, 40, 64, "probe")
    assert probes.keys() == pretrain_images.PROBES.keys() == {"color", "shape", "count", "word"}
    again = pretrain_images.probe_set(0, 40, 64, "probe")
    for attribute, (images, labels) in probes.items():
        classes = pretrain_images.PROBES[attribute].classes
        assert len(images) == len(labels) == 40 and all(0 <= label < classes for label in labels)
        assert len(set(labels)) > 1 and all(image.size == (64, 64) for image in images)
        assert labels == again[attribute][1] and [_png(i) for i in images] == [_png(i) for i in again[attribute][0]]
    assert pretrain_images.PROBES["word"].classes == len(scenes_v2.OCR_WORDS)
    for image, label in zip(*probes["color"]):
        assert RGB[COLORS[label]] in {tuple(p) for p in np.asarray(image).reshape(-1, 3)}
