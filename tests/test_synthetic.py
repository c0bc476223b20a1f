"""Tests for the offline synthetic VQA suite: schema, determinism, disjointness, cache, rendering."""

from __future__ import annotations

import dataclasses
import os
import re
from collections import defaultdict

import datasets
import numpy as np
import pytest

from vlmlab.data import synthetic
from vlmlab.data.synthetic import (
    COLORS,
    POSITIONS,
    SHAPES,
    TASKS,
    WORDS,
    SyntheticSpec,
    load_synthetic_suite,
)

TINY = SyntheticSpec(seed=3, canvas=64, train_images=30, val_images=10, test_images=10, max_objects=4)
OBJECT = re.compile(rf"an? ({'|'.join(COLORS)}) ({'|'.join(SHAPES)}) at the ({'|'.join(POSITIONS)})")


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("suite")


@pytest.fixture(scope="module")
def suite(suite_dir) -> datasets.DatasetDict:
    return load_synthetic_suite(TINY, suite_dir)


def parse_caption(text: str) -> tuple[list[tuple[str, str, str]], str]:
    """(colour, shape, position) per object, and the word, read back from a caption answer."""
    body, word = text.rsplit(" and the word ", 1)
    objects = []
    for part in body.split(", "):
        match = OBJECT.fullmatch(part)
        assert match, f"unparseable caption part {part!r} in {text!r}"
        objects.append(match.groups())
    return objects, word


def by_image(split: datasets.Dataset) -> dict[str, dict[str, dict]]:
    """Rows grouped as image_id -> task -> row (image left undecoded)."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in split.remove_columns("image"):
        rows[row["image_id"]][row["task"]] = row
    return rows


def raw(split: datasets.Dataset) -> list[tuple]:
    """Every row with the image as its stored PNG bytes."""
    undecoded = split.cast_column("image", datasets.Image(decode=False))
    return [(r["image_id"], r["image"]["bytes"], r["task"], r["prompt"], r["answer"]) for r in undecoded]


def cell_pixels(image: np.ndarray, position: str) -> np.ndarray:
    """Pixels of a grid cell, with the grid computed independently of the module (3x3 over the top 3/4)."""
    row, col = divmod(POSITIONS.index(position), 3)
    side = image.shape[0]
    w, h = side / 3, side * 3 / 4 / 3
    return image[int(np.ceil(row * h)) : int((row + 1) * h), int(np.ceil(col * w)) : int((col + 1) * w)]


def test_schema_splits_and_rows(suite):
    assert list(suite) == ["train", "validation", "test"]
    sizes = {"train": TINY.train_images, "validation": TINY.val_images, "test": TINY.test_images}
    for name, split in suite.items():
        assert split.column_names == ["image_id", "image", "task", "prompt", "answer"]
        assert isinstance(split.features["image"], datasets.Image)
        for column in ("image_id", "task", "prompt", "answer"):
            assert split.features[column] == datasets.Value("string")
        ids = [f"{name}-{i:06d}" for i in range(sizes[name])]
        assert split["image_id"] == [i for i in ids for _ in TASKS]
        assert split["task"] == list(TASKS) * sizes[name]
        image = split[0]["image"]
        assert image.mode == "RGB" and image.size == (TINY.canvas, TINY.canvas)
        # the image is shared by all rows of one scene
        assert len({b for _, b, *_ in raw(split.select(range(len(TASKS))))}) == 1


def test_prompts_and_answers_are_lowercase_without_trailing_punctuation(suite):
    for row in suite["validation"].remove_columns("image"):
        assert row["answer"] == row["answer"].lower().strip() and not row["answer"].endswith((".", "?"))
        assert row["prompt"] == row["prompt"].lower()


def test_same_spec_same_bytes_other_seed_differs(suite, tmp_path):
    again = load_synthetic_suite(TINY, tmp_path / "elsewhere")
    for name in suite:
        assert raw(again[name]) == raw(suite[name])
    other = load_synthetic_suite(dataclasses.replace(TINY, seed=4), tmp_path / "other")
    assert other["train"]["answer"] != suite["train"]["answer"]
    assert raw(other["test"])[0][1] != raw(suite["test"])[0][1]


def test_splits_are_disjoint_by_scene_even_in_a_small_scene_space():
    # one object per image: 9 * 18 * 12 = 1944 scenes, so collisions between splits are likely
    spec = SyntheticSpec(seed=0, train_images=600, val_images=150, test_images=150, max_objects=1)
    scenes = {}
    for split in ("test", "validation", "train"):
        scenes[split] = {s.key for s in synthetic._draw_split(spec, split, set().union(*scenes.values()))}
    assert not scenes["train"] & scenes["validation"]
    assert not scenes["train"] & scenes["test"]
    assert not scenes["validation"] & scenes["test"]


def test_built_suite_splits_are_disjoint(suite):
    captions = {name: set(split.filter(lambda t: t == "caption", input_columns="task")["answer"]) for name, split in suite.items()}
    assert not captions["train"] & captions["validation"]
    assert not captions["train"] & captions["test"]
    assert not captions["validation"] & captions["test"]


def test_held_out_splits_do_not_move_when_train_grows(suite, tmp_path):
    bigger = load_synthetic_suite(dataclasses.replace(TINY, train_images=45), tmp_path)
    for name in ("validation", "test"):
        assert raw(bigger[name]) == raw(suite[name])
    assert bigger["train"]["answer"][: len(suite["train"])] == suite["train"]["answer"]


def test_exhausted_scene_space_is_a_clear_error():
    spec = SyntheticSpec(max_objects=1, test_images=5)
    every_scene = {
        (((cell, shape, color),), word)
        for cell in range(9) for shape in SHAPES for color in COLORS for word in WORDS
    }  # fmt: skip
    with pytest.raises(ValueError, match="max_objects"):
        synthetic._draw_split(spec, "test", every_scene)


def test_second_call_loads_from_cache_without_regenerating(suite, suite_dir, monkeypatch):
    def refuse(spec):
        raise AssertionError("regenerated a cached suite")

    monkeypatch.setattr(synthetic, "_generate_suite", refuse)
    again = load_synthetic_suite(TINY, suite_dir)
    for name in suite:
        assert raw(again[name]) == raw(suite[name])


def test_cache_layout_leaves_no_temporary_directory(suite, suite_dir):
    assert os.listdir(suite_dir) == [f"{synthetic.SUITE_VERSION}-{TINY.digest()}"]
    assert re.fullmatch(r"[0-9a-f]{12}", TINY.digest())


def test_interrupted_build_leaves_nothing_loadable(tmp_path, monkeypatch):
    spec = SyntheticSpec(train_images=3, val_images=2, test_images=2)

    def crash(self, path, **kwargs):
        os.makedirs(path)
        open(os.path.join(path, "dataset_dict.json"), "w").close()
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(datasets.DatasetDict, "save_to_disk", crash)
        with pytest.raises(KeyboardInterrupt):
            load_synthetic_suite(spec, tmp_path)
    assert os.listdir(tmp_path) == []
    assert len(load_synthetic_suite(spec, tmp_path)["test"]) == 2 * len(TASKS)


def test_answers_agree_with_the_scene(suite):
    for split in suite.values():
        for image_id, rows in by_image(split).items():
            objects, word = parse_caption(rows["caption"]["answer"])
            positions = [p for _, _, p in objects]
            assert 1 <= len(objects) <= TINY.max_objects
            assert positions == sorted(set(positions), key=POSITIONS.index), "objects out of reading order"
            assert rows["count"]["answer"] == str(len(objects))
            assert word == rows["text"]["answer"] and word in WORDS
            at = {p: (c, s) for c, s, p in objects}
            color_at = re.fullmatch(r"what color is the shape at the (.+)\?", rows["color"]["prompt"]).group(1)
            shape_at = re.fullmatch(r"what shape is at the (.+)\?", rows["shape"]["prompt"]).group(1)
            assert rows["color"]["answer"] == at[color_at][0]
            assert rows["shape"]["answer"] == at[shape_at][1]


def test_single_object_caption_wording():
    scene = synthetic.Scene(objects=((0, "circle", "red"),), word="cat", background=0, color_cell=0, shape_cell=0)
    assert synthetic.caption(scene) == "a red circle at the top left and the word cat"


def test_generation_is_pinned_to_the_suite_version():
    # if this fails, the generator changed: bump SUITE_VERSION so stale caches are not reused
    scenes = synthetic._draw_split(SyntheticSpec(seed=0, test_images=2), "test", set())
    assert [synthetic.caption(s) for s in scenes] == [
        "an orange square at the top left, a green triangle at the top right and the word bus",
        "a yellow triangle at the left, a green triangle at the center and the word egg",
    ]


def test_images_show_the_captioned_shapes(suite):
    split = suite["test"].filter(lambda t: t == "caption", input_columns="task")
    areas: dict[str, list[int]] = defaultdict(list)
    for row in split:
        image = np.asarray(row["image"])
        objects, _ = parse_caption(row["answer"])
        present = {p: (c, s) for c, s, p in objects}
        for position in POSITIONS:
            cell = cell_pixels(image, position)
            hits = {c: int((cell == synthetic.RGB[c]).all(-1).sum()) for c in COLORS}
            if position in present:
                color, shape = present[position]
                assert hits[color] > 0.2 * cell.shape[0] * cell.shape[1], (row["answer"], position)
                assert sum(hits.values()) == hits[color]
                areas[shape].append(hits[color])
            else:
                assert sum(hits.values()) == 0, f"paint in empty cell {position}: {row['answer']}"
    # at equal size the three shapes cover clearly different areas, so they are told apart
    assert max(areas["triangle"]) < min(areas["circle"]) and max(areas["circle"]) < min(areas["square"])


@pytest.mark.parametrize("canvas", [32, 64, 160])
def test_word_is_drawn_inside_the_bottom_strip(canvas):
    rng = np.random.default_rng(0)
    for _ in range(12):
        scene = synthetic.draw_scene(rng, 9)
        image = np.asarray(synthetic.render_scene(scene, canvas)).astype(int)
        bright = (image.min(-1) > 150) & (np.ptp(image, -1) < 40)  # white-ish, unlike every palette colour
        strip = canvas * 3 // 4
        assert not bright[:strip].any(), "text bleeds into the grid"
        rows, cols = np.nonzero(bright[strip:])
        assert len(rows) > 3 and cols.min() > 0 and cols.max() < canvas - 1


@pytest.mark.parametrize(
    ("field", "value"),
    [("train_images", 0), ("val_images", -1), ("test_images", 0), ("canvas", 31), ("max_objects", 0), ("max_objects", 10)],
)
def test_bad_spec_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"synthetic spec: {field} .*{value}"):
        SyntheticSpec(**{field: value})
