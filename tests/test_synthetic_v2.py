"""Tests for the synthetic-v2 benchmark suite: schema, determinism, disjointness, cache, and that each
benchmark's images really show what its answers say (words drawn, blobs counted, end colours, references)."""

from __future__ import annotations

import dataclasses
import io
from collections import Counter, deque

import datasets
import numpy as np
import pytest
from PIL import Image

from vlmlab.data import scenes_v2, synthetic_v2
from vlmlab.data.synthetic import BACKGROUNDS, RGB
from vlmlab.data.synthetic_v2 import (
    BENCHMARKS,
    GENERATORS,
    TRAIN_TASKS,
    SyntheticV2Spec,
    draw_suite,
    load_synthetic_v2,
)

TINY = SyntheticV2Spec(seed=3, canvas=64, train_images=6, eval_images=4)
COLUMNS = ["image_id", "image", "task", "prompt", "answers", "answer"]


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("suite_v2")


@pytest.fixture(scope="module")
def suite(suite_dir) -> datasets.DatasetDict:
    return load_synthetic_v2(TINY, suite_dir)


def raw(split: datasets.Dataset) -> list[tuple]:
    """Every row with the image as its stored PNG bytes."""
    undecoded = split.cast_column("image", datasets.Image(decode=False))
    return [(r["image_id"], r["image"]["bytes"], r["task"], r["prompt"], tuple(r["answers"]), r["answer"])
            for r in undecoded]


def rows(split: datasets.Dataset, task: str) -> list[dict]:
    """The rows of one task, images decoded to RGB numpy arrays."""
    picked = split.filter(lambda t: t == task, input_columns="task")
    return [dict(r, image=np.asarray(r["image"].convert("RGB"))) for r in picked]


def blobs(image: np.ndarray, background: tuple[int, int, int]) -> int:
    """Number of 8-connected components of non-background pixels."""
    mask = np.any(image != np.array(background, dtype=image.dtype), axis=-1)
    seen, count = np.zeros_like(mask), 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        queue = deque([start])
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            for ny in range(max(0, y - 1), min(mask.shape[0], y + 2)):
                for nx in range(max(0, x - 1), min(mask.shape[1], x + 2)):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return count


def test_registry():
    assert set(BENCHMARKS) == {"synth_ocr", "synth_count", "synth_wide", "synth_caption", "synth_vqa", "synth_know"}
    assert {info.metric for info in BENCHMARKS.values()} <= {"exact_match", "vqa_accuracy", "anls", "cider"}
    assert BENCHMARKS["synth_ocr"].metric == "anls" and BENCHMARKS["synth_caption"].metric == "cider"
    assert set(TRAIN_TASKS) == {"caption", "ocr", "count", "wide", "vqa", "know"}


def test_schema_splits_and_row_counts(suite):
    assert list(suite) == ["train", "validation", "test"]
    for name, split in suite.items():
        assert split.column_names == COLUMNS
        assert isinstance(split.features["image"], datasets.Image)
        assert split.features["answers"] == datasets.List(datasets.Value("string"))
        for column in ("image_id", "task", "prompt", "answer"):
            assert split.features[column] == datasets.Value("string")
        tasks = Counter(split["task"])
        expected = TRAIN_TASKS if name == "train" else tuple(BENCHMARKS)
        n = TINY.train_images if name == "train" else TINY.eval_images
        assert tasks == {task: n for task in expected}
        assert len(set(split["image_id"])) == len(split)
        for answers, answer in zip(split["answers"], split["answer"]):
            assert answers and answer == answers[0]


def test_deterministic_and_seeded(suite, tmp_path):
    again = load_synthetic_v2(TINY, tmp_path / "again")
    for name in suite:
        assert raw(again[name]) == raw(suite[name])
    other = load_synthetic_v2(dataclasses.replace(TINY, seed=4), tmp_path / "other")
    assert raw(other["test"]) != raw(suite["test"])


def test_splits_disjoint_by_scene_key():
    drawn = draw_suite(TINY)
    keys = {split: {(g.family, e.scene.key) for g in GENERATORS.values() for e in tasks[g.task(split)]}
            for split, tasks in drawn.items()}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]


def test_cache_reused_without_regeneration(suite, suite_dir, monkeypatch):
    def boom(spec):
        raise AssertionError("regenerated despite a cache")

    monkeypatch.setattr(synthetic_v2, "_generate_suite", boom)
    cached = load_synthetic_v2(TINY, suite_dir)
    assert raw(cached["validation"]) == raw(suite["validation"])
    assert [p.name for p in suite_dir.iterdir()] == [synthetic_v2.cache_path(TINY, suite_dir).name]


def test_image_shapes(suite):
    for name, split in suite.items():
        sizes = split.cast_column("image", datasets.Image(decode=False))
        for row in sizes:
            width, height = Image.open(io.BytesIO(row["image"]["bytes"])).size
            if row["task"] in ("synth_wide", "wide"):
                assert max(width, height) == TINY.canvas
                assert 2 <= max(width, height) / min(width, height) <= 3
            else:
                assert (width, height) == (TINY.canvas, TINY.canvas)


def test_wide_answer_is_the_colour_at_the_asked_end(suite):
    for row in rows(suite["test"], "synth_wide") + rows(suite["train"], "wide"):
        image, end = row["image"], row["prompt"].split()[4]
        assert end in ("leftmost", "rightmost", "topmost", "bottommost")
        along = 1 if end in ("leftmost", "rightmost") else 0
        assert image.shape[1 - along] < image.shape[along]  # left/right asked of wide images only
        background = np.array(_background(image), dtype=image.dtype)
        filled = np.nonzero(np.any(image != background, axis=-1).any(axis=1 - along))[0]
        line = filled[0] if end in ("leftmost", "topmost") else filled[-1]
        pixels = image[:, line] if along == 1 else image[line]
        colours = {tuple(p) for p in pixels if tuple(p) != tuple(background)}
        assert colours == {RGB[row["answer"]]}


def test_vqa_ten_answers_canonical_majority(suite):
    for name in ("validation", "test"):
        for answers in suite[name].filter(lambda t: t == "synth_vqa", input_columns="task")["answers"]:
            assert len(answers) == 10
            counts = Counter(answers)
            assert counts[answers[0]] >= 7 and counts.most_common(1)[0][0] == answers[0]


def test_caption_references_distinct_and_correct(suite):
    drawn = draw_suite(TINY)
    for name in ("validation", "test"):
        refs = suite[name].filter(lambda t: t == "synth_caption", input_columns="task")["answers"]
        for answers, example in zip(refs, drawn[name]["synth_caption"]):
            assert len(answers) == 5 and len(set(answers)) == 5
            for ref in answers:  # every reference names every object and the word
                assert example.scene.word in ref
                assert all(f"{color} {shape}" in ref for _, shape, color in example.scene.objects)


def test_alt_captions_change_train_captions_only(suite, tmp_path):
    alt = load_synthetic_v2(dataclasses.replace(TINY, caption_style="alt"), tmp_path)
    assert raw(alt["validation"]) == raw(suite["validation"]) and raw(alt["test"]) == raw(suite["test"])
    clean_rows, alt_rows = raw(suite["train"]), raw(alt["train"])
    changed = 0
    for clean, noisy in zip(clean_rows, alt_rows):
        assert clean[:4] == noisy[:4]  # same id, image, task, prompt
        if clean[2] != "caption":
            assert clean == noisy
        else:
            assert len(noisy[4]) == 1 and noisy[5] == noisy[4][0]
            changed += clean[5] != noisy[5]
    assert changed >= TINY.train_images // 2


def test_ocr_words_drawn_and_sized():
    spec = dataclasses.replace(TINY, canvas=128, eval_images=40)
    examples = draw_suite(spec)["test"]["synth_ocr"]
    heights: dict[str, list[int]] = {size: [] for size in scenes_v2.FONT_SIZES}
    for example in examples:
        scene = example.scene
        image = np.asarray(scenes_v2.render_text_scene(scene, spec.canvas))
        x0, y0, x1, y1 = scene.box(spec.canvas)
        assert 0 <= x0 < x1 < spec.canvas and 0 <= y0 < y1 < spec.canvas
        ink = np.any(image != np.array(BACKGROUNDS[scene.background]), axis=-1)
        assert ink[y0 : y1 + 1, x0 : x1 + 1].sum() >= 10  # the word is there...
        assert ink.sum() == ink[y0 : y1 + 1, x0 : x1 + 1].sum()  # ...and nowhere else
        heights[scene.size].append(y1 - y0 + 1)
    assert all(heights.values()), heights
    # small text: several pixels tall at full resolution, at most ~2 px once downscaled 4x
    assert 4 <= min(heights["small"]) and max(heights["small"]) <= 7
    # box heights vary with ascenders and descenders ("cone" vs "dog"): compare the typical word
    medians = [np.median(heights[size]) for size in ("small", "medium", "large")]
    assert medians == sorted(medians) and len(set(medians)) == 3, heights


def test_words_and_dots_sit_on_the_lattice():
    spec = dataclasses.replace(TINY, canvas=128, eval_images=60)
    step = spec.canvas // scenes_v2.LATTICE
    drawn = draw_suite(spec)["test"]
    for example in drawn["synth_ocr"]:
        margin_ok = example.scene.box(spec.canvas)[0] >= 0
        assert margin_ok and example.scene.x % step == 0 and example.scene.y % step == 0, example.scene
    for example in drawn["synth_count"]:
        assert all(cx % step == step // 2 and cy % step == step // 2 for cx, cy, *_ in example.scene.objects)


def test_ocr_rows_match_scenes(suite):
    examples = draw_suite(TINY)["validation"]["synth_ocr"]
    for row, example in zip(rows(suite["validation"], "synth_ocr"), examples):
        assert row["answers"] == [example.scene.word]
        assert np.array_equal(row["image"], np.asarray(scenes_v2.render_text_scene(example.scene, TINY.canvas)))


def test_count_answer_equals_drawn_blobs(suite):
    for name, task in (("train", "count"), ("validation", "synth_count"), ("test", "synth_count")):
        for row in rows(suite[name], task):
            assert 1 <= int(row["answer"]) <= 8
            assert blobs(row["image"], _background(row["image"])) == int(row["answer"])


def _background(image: np.ndarray) -> tuple[int, ...]:
    """The most frequent colour: the background even when a shape covers the corner pixel."""
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return tuple(colours[counts.argmax()])


@pytest.mark.parametrize(
    ("field", "value"),
    [("train_images", 0), ("eval_images", -1), ("canvas", 63), ("caption_style", "fancy"), ("seed", True)],
)
def test_bad_spec_fields_raise(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticV2Spec(**{field: value})

