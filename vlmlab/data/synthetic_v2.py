"""Offline synthetic benchmark suite, version 2: six benchmarks, each sensitive to one design axis.

Version 1 asked five questions about one kind of scene, so every axis moved every column a little. Here
each benchmark has its own scene family, built so that one axis of the Idefics2 ablations moves its
score at toy scale (~1M-parameter models, ~800 CPU steps, 64-128 px images):

- synth_ocr (ANLS): a word in a small/medium/large font; the small one needs resolution or splitting.
- synth_count (exact match): 1-8 tiny shapes; needs the spatial detail a small token budget pools away.
- synth_wide (exact match): 2:1-3:1 rows / columns with thin end bars; a square squash stretches them 2-3x.
- synth_caption (CIDEr): v1 grid scenes with five references varying in wording and order.
- synth_vqa (VQA accuracy): v1 grid scenes, questions with ten annotator answers incl. variants.
- synth_know (exact match): one large shape; what it stands for, a fact (vlmlab.data.knowledge) trained on for
  half the shapes and otherwise found only in the language corpus (vlmlab.data.language): needs the LM's knowledge.

Training data has one task per benchmark (TRAIN_TASKS); `caption_style="alt"` swaps the clean training
captions for noisy alt-text-like ones (Table 6) and changes nothing else. `story_documents=N` adds N interleaved
training documents (task `story`: 1-3 grid scenes, each with text about it) after every other training row,
which stay as they were; at 0 (the default) the suite is exactly what it was before stories existed. `probes=True`
adds the probe benchmarks of small-VLM papers (PROBE_GENERATORS: POPE-style hallucination questions, multiple
choice; vlmlab.data.probes) with their training tasks, on grid scenes of their own family, so every other row stays
as it was. The suite is a pure function of a `SyntheticV2Spec` and is cached on disk as a Hugging Face `DatasetDict`, like
version 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np
from PIL import Image

from vlmlab.data import knowledge as know
from vlmlab.data import probes
from vlmlab.data import scenes_v2 as sc
from vlmlab.data import synthetic as v1
from vlmlab.data.cache import build_once
from vlmlab.data.grid_text import Grid, Story, alt_caption, caption_references, story, vqa_question

SUITE_VERSION: str = "synthetic-v2.2"  # bump whenever a generator changes: caches are keyed by it
STORY_VERSION: str = "story-1"  # bump whenever the story generator changes (only suites with stories name it)
PROBE_VERSION: str = "probes-1"  # bump whenever a probe generator changes (only suites with probes name it)
STORY_TASK: str = "story"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
CAPTION_STYLES: tuple[str, ...] = ("clean", "alt")
_STR = datasets.Value("string")
FEATURES = datasets.Features({"image_id": _STR, "image": datasets.Image(), "task": _STR, "prompt": _STR,
                              "answers": datasets.List(_STR), "answer": _STR})
# With stories, the train split has OBELICS's document columns too: at each position an image or a text
# segment, None in the gaps; a story row has no `image`, every other row has empty lists.
STORY_FEATURES = datasets.Features({**FEATURES, "images": datasets.List(datasets.Image()),
                                    "texts": datasets.List(_STR)})
# Consecutive rejected draws after which a scene family is treated as exhausted for disjoint splits.
_MAX_REJECTIONS = 10_000


class BenchmarkInfo(NamedTuple):
    """How a benchmark is scored and what it probes."""

    metric: str
    description: str


@dataclass(frozen=True)
class Generator:
    """One benchmark and its training task: draw a scene, render it, ask about it (prompt, references)."""

    benchmark: str
    train_task: str
    info: BenchmarkInfo
    family: str  # scenes of one family are kept disjoint across splits
    draw: Callable[[np.random.Generator, int], Any]
    render: Callable[[Any, int], Image.Image]
    ask: Callable[[Any, np.random.Generator], tuple[str, list[str]]]
    # training-only replacement answer when caption_style="alt" (None: the style does not apply)
    alt: Callable[[Any, np.random.Generator], str] | None = None
    # draws the rows of a split when a split sees only part of the family (None: `draw` for every split, which
    # still draws from the whole family, e.g. for the language corpus)
    draw_split: Callable[[np.random.Generator, int, str], Any] | None = None

    def task(self, split: str) -> str:
        """The `task` of this generator's rows in `split`: the training task in train, else the benchmark."""
        return self.train_task if split == "train" else self.benchmark

    def draw_in(self, rng: np.random.Generator, canvas: int, split: str) -> Any:
        """A scene for a row of `split`."""
        return self.draw(rng, canvas) if self.draw_split is None else self.draw_split(rng, canvas, split)


def _ask_wide(scene: sc.RowScene, rng: np.random.Generator) -> tuple[str, list[str]]:
    first = bool(rng.integers(2))
    end = ("leftmost" if first else "rightmost") if scene.horizontal else ("topmost" if first else "bottommost")
    return f"what color is the {end} shape?", [scene.objects[0 if first else -1][2]]


def _draw_grid(rng: np.random.Generator, canvas: int) -> Grid:
    return v1.draw_scene(rng, 4)  # v1's scenes, up to 4 objects so captions stay short


def _draw_single(rng: np.random.Generator, canvas: int) -> sc.SingleScene:
    return sc.draw_single_scene(rng, canvas, know.ENTITIES)


def _draw_single_in(rng: np.random.Generator, canvas: int, split: str) -> sc.SingleScene:
    # training rows show the seen entities only, evaluation rows the held-out ones
    return sc.draw_single_scene(rng, canvas, know.SPLIT_ENTITIES[split])


# The registry: adding a benchmark is one Generator here (and its scene family in scenes_v2, its grid-scene language in grid_text).
GENERATORS: dict[str, Generator] = {g.benchmark: g for g in (
    Generator(
        "synth_ocr", "ocr", BenchmarkInfo("anls", "read a 3-4 letter word in a small/medium/large font"),
        "text", sc.draw_text_scene, sc.render_text_scene,
        lambda s, rng: ("what word is written?", [s.word]),
    ),
    Generator(
        "synth_count", "count", BenchmarkInfo("exact_match", "count 1-8 tiny scattered shapes"),
        "dots", sc.draw_dots_scene, sc.render_dots_scene,
        lambda s, rng: ("how many shapes are there?", [str(len(s.objects))]),
    ),
    Generator(
        "synth_wide", "wide", BenchmarkInfo("exact_match", "colour of the end shape of a 2:1-3:1 row or column"),
        "row", sc.draw_row_scene, sc.render_row_scene, _ask_wide,
    ),
    Generator(
        "synth_caption", "caption", BenchmarkInfo("cider", "describe a grid scene; 5 varied references"),
        "grid", _draw_grid, v1.render_scene,
        lambda s, rng: ("describe the image.", caption_references(s, rng)), alt=alt_caption,
    ),
    Generator(
        "synth_vqa", "vqa", BenchmarkInfo("vqa_accuracy", "colour/shape/position/count questions, 10 answers"),
        "grid", _draw_grid, v1.render_scene, vqa_question,
    ),
    Generator(
        "synth_know", "know", BenchmarkInfo("exact_match", "what a shape stands for: a fact only the LM has seen"),
        "single", _draw_single, sc.render_single_scene,
        lambda s, rng: (know.KNOW_PROMPT, [know.FACTS[s.entity]]), draw_split=_draw_single_in,
    ),
)}
BENCHMARKS: dict[str, BenchmarkInfo] = {name: g.info for name, g in GENERATORS.items()}

# Opt-in benchmarks (`probes=True`): POPE's random and adversarial splits, and multiple choice. Their scenes are
# grid scenes drawn in a family of their own ("probe"), so turning them on moves no row of GENERATORS' tasks.
PROBE_GENERATORS: dict[str, Generator] = {g.benchmark: g for g in (
    *(Generator(
        f"synth_pope_{split}", f"pope_{split}",
        BenchmarkInfo("pope_f1", f"POPE-style: is a colour-shape pair in the scene? half absent ({split} negatives)"),
        "probe", _draw_grid, v1.render_scene, lambda s, rng, split=split: probes.pope_question(s, rng, split),
    ) for split in probes.NEGATIVES),
    Generator(
        "synth_mc", "mc", BenchmarkInfo("multiple_choice", "the colour of a shape, four lettered options"),
        "probe", _draw_grid, v1.render_scene, probes.mc_question,
    ),
)}
TRAIN_TASKS: tuple[str, ...] = tuple(g.train_task for g in GENERATORS.values())


@dataclass(frozen=True)
class SyntheticV2Spec:
    """Everything that determines the v2 suite; equal specs give identical data."""

    seed: int = 0
    canvas: int = 128  # longest side of rendered images, px
    train_images: int = 3000  # per training task
    eval_images: int = 100  # per benchmark, for validation and for test each
    caption_style: str = "clean"  # training captions: "clean" (exact) or "alt" (noisy alt-text-like)
    story_documents: int = 0  # interleaved training documents (task "story"); 0: none, the suite as it was
    probes: bool = False  # add PROBE_GENERATORS' benchmarks and training tasks; False: the suite as it was

    def __post_init__(self) -> None:
        for name in ("seed", "canvas", "train_images", "eval_images", "story_documents"):
            value = getattr(self, name)
            # bool is an int subclass, but `True` images is always a config mistake
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"synthetic-v2 spec: {name} must be an integer, got {value!r}")
        for name in ("train_images", "eval_images"):
            if getattr(self, name) <= 0:
                raise ValueError(f"synthetic-v2 spec: {name} must be positive, got {getattr(self, name)}")
        if not isinstance(self.probes, bool):
            raise ValueError(f"synthetic-v2 spec: probes must be true or false, got {self.probes!r}")
        if self.story_documents < 0:
            raise ValueError(f"synthetic-v2 spec: story_documents must be 0 or more, got {self.story_documents}")
        if self.canvas < 64:
            raise ValueError(f"synthetic-v2 spec: canvas must be at least 64 pixels, got {self.canvas}")
        if self.caption_style not in CAPTION_STYLES:
            raise ValueError(f"synthetic-v2 spec: caption_style must be one of {CAPTION_STYLES}, "
                             f"got {self.caption_style!r}")

    def digest(self) -> str:
        """Short stable hash of the spec's fields."""
        fields = {k: v if isinstance(v, str) else int(v) for k, v in dataclasses.asdict(self).items()}
        # a suite without stories or probes keeps the digest (and cache) it had before they existed
        for optional in ("story_documents", "probes"):
            if not fields[optional]:
                del fields[optional]
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    # The suite interface the run uses (shared with SyntheticSpec): version, load, metric per task.
    @property
    def version(self) -> str:
        """The generators' version: the story and probe generators' join it only when the suite has them."""
        extras = [v for v, on in ((STORY_VERSION, self.story_documents), (PROBE_VERSION, self.probes)) if on]
        return "+".join((SUITE_VERSION, *extras))

    def generators(self) -> dict[str, Generator]:
        """The benchmarks of this suite and their generators: GENERATORS, and PROBE_GENERATORS with `probes`."""
        return {**GENERATORS, **PROBE_GENERATORS} if self.probes else GENERATORS

    in_memory = True  # small enough that a run decodes every image once and keeps it (vlmlab.data.suite)

    def load(self, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
        """The suite, generated once and cached under `cache_dir`."""
        return load_synthetic_v2(self, cache_dir)

    def task_metrics(self) -> dict[str, str]:
        """Metric name of each benchmark (the evaluation tasks)."""
        return {name: g.info.metric for name, g in self.generators().items()}

    def train_tasks(self) -> tuple[str, ...]:
        """Tasks of the training split (what a data mixture can weight): `story` only when the suite has stories."""
        tasks = tuple(g.train_task for g in self.generators().values())
        return (*tasks, STORY_TASK) if self.story_documents else tasks

    def context_tasks(self) -> dict[str, str]:
        """Each benchmark's in-context shots come from its training task (synth_ocr's from ocr, ...)."""
        return {name: g.train_task for name, g in self.generators().items()}


@dataclass(frozen=True)
class Example:
    """One drawn (not yet rendered) row: the scene, its prompt and its references (answers[0] canonical)."""

    scene: Any
    prompt: str
    answers: tuple[str, ...]


def seeded_rng(text: str) -> np.random.Generator:
    """The random stream named by `text`: equal texts, equal streams, in any process."""
    # sha256 rather than hash(): str hashes are salted per process
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big"))


def stream_name(seed: int, split: str, task: str) -> str:
    """The name of the stream a split's rows of one task are drawn from."""
    return f"{SUITE_VERSION}:{seed}:{split}:{task}"


def _rng(seed: int, split: str, task: str) -> np.random.Generator:
    return seeded_rng(stream_name(seed, split, task))


def _draw_task(spec: SyntheticV2Spec, split: str, gen: Generator, taken: set[tuple]) -> list[Example]:
    task = gen.task(split)
    rng, examples, rejected = _rng(spec.seed, split, task), [], 0
    n = spec.train_images if split == "train" else spec.eval_images
    # the alt-text noise has its own stream, so "alt" and "clean" draw identical scenes and images
    alt_rng = _rng(spec.seed, split, f"{task}:alt") if split == "train" and spec.caption_style == "alt" else None
    while len(examples) < n:
        scene = gen.draw_in(rng, spec.canvas, split)
        if scene.key in taken:
            rejected += 1
            if rejected > _MAX_REJECTIONS:
                raise ValueError(f"synthetic-v2 spec: too few distinct {gen.family} scenes for disjoint splits; "
                                 "lower train_images / eval_images")
            continue
        rejected = 0
        prompt, answers = gen.ask(scene, rng)
        if alt_rng is not None and gen.alt is not None:
            answers = [gen.alt(scene, alt_rng)]
        examples.append(Example(scene, prompt, tuple(answers)))
    return examples


def draw_suite(spec: SyntheticV2Spec) -> dict[str, dict[str, list[Example]]]:
    """Every split's examples (split -> task -> examples), drawn but not rendered."""
    generators = spec.generators()
    taken: dict[str, set[tuple]] = {g.family: set() for g in generators.values()}
    suite: dict[str, dict[str, list[Example]]] = {}
    # held-out splits first, so they do not move when train_images or caption_style changes
    for split in ("test", "validation", "train"):
        suite[split] = {}
        for gen in generators.values():
            suite[split][gen.task(split)] = _draw_task(spec, split, gen, taken[gen.family])
        # keys join `taken` only after the whole split: disjointness is between splits, not within one
        for gen in generators.values():
            taken[gen.family].update(e.scene.key for e in suite[split][gen.task(split)])
    return {split: suite[split] for split in SPLITS}


@dataclass(frozen=True)
class StoryDocument:
    """One drawn (not yet rendered) story: its grid scenes and its parts (text, or the index of a scene)."""

    scenes: tuple[Grid, ...]
    parts: Story


def draw_stories(spec: SyntheticV2Spec, held_out: set[tuple]) -> list[StoryDocument]:
    """The suite's story documents, none showing a grid scene of `held_out` (the evaluation splits')."""
    # A stream of its own: drawing stories moves no row of any other task.
    rng, stories, rejected = _rng(spec.seed, "train", STORY_TASK), [], 0
    while len(stories) < spec.story_documents:
        scenes = tuple(_draw_grid(rng, spec.canvas) for _ in range(int(rng.integers(1, 4))))
        if any(scene.key in held_out for scene in scenes):
            rejected += 1
            if rejected > _MAX_REJECTIONS:
                raise ValueError("synthetic-v2 spec: too few grid scenes outside the evaluation splits for stories")
            continue
        rejected = 0
        stories.append(StoryDocument(scenes, story(scenes, rng)))
    return stories


def evaluation_keys(spec: SyntheticV2Spec) -> frozenset[tuple]:
    """The keys of every scene of the suite's validation and test splits, of every family: what pretraining data
    drawn from the same grammar must leave out to stay disjoint from the benchmarks."""
    drawn = draw_suite(spec)
    return frozenset(e.scene.key for split in ("validation", "test") for examples in drawn[split].values()
                     for e in examples)


def _held_out_keys(drawn: dict[str, dict[str, list[Example]]], family: str) -> set[tuple]:
    """Keys of every `family` scene of the validation and test splits."""
    return {e.scene.key for split in ("validation", "test") for gen in GENERATORS.values() if gen.family == family
            for e in drawn[split][gen.task(split)]}


def _story_columns(columns: dict[str, list], stories: list[StoryDocument], canvas: int) -> None:
    """Give the rows in `columns` empty document columns, then append `stories` as document rows."""
    columns["images"], columns["texts"] = [[] for _ in columns["image_id"]], [[] for _ in columns["image_id"]]
    for index, document in enumerate(stories):
        images = [{"bytes": v1._png(v1.render_scene(document.scenes[p], canvas)), "path": None}
                  if isinstance(p, int) else None for p in document.parts]
        row = {"image_id": f"train-{STORY_TASK}-{index:06d}", "image": None, "task": STORY_TASK, "prompt": "",
               "answers": [], "answer": "", "images": images,
               "texts": [p if isinstance(p, str) else None for p in document.parts]}
        for name, value in row.items():
            columns[name].append(value)


def _generate_suite(spec: SyntheticV2Spec) -> datasets.DatasetDict:
    """Draw and render every split of the suite in memory."""
    splits: dict[str, datasets.Dataset] = {}
    drawn = draw_suite(spec)
    for split, tasks in drawn.items():
        columns: dict[str, list] = {name: [] for name in FEATURES}
        for gen in spec.generators().values():
            task = gen.task(split)
            for index, example in enumerate(tasks[task]):
                image = gen.render(example.scene, spec.canvas)
                columns["image_id"].append(f"{split}-{task}-{index:06d}")
                columns["image"].append({"bytes": v1._png(image), "path": None})
                columns["task"].append(task)
                columns["prompt"].append(example.prompt)
                columns["answers"].append(list(example.answers))
                columns["answer"].append(example.answers[0])
        features = FEATURES
        if split == "train" and spec.story_documents:
            _story_columns(columns, draw_stories(spec, _held_out_keys(drawn, "grid")), spec.canvas)
            features = STORY_FEATURES
        splits[split] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(splits)


def cache_path(spec: SyntheticV2Spec, cache_dir: str | os.PathLike) -> Path:
    """Directory under `cache_dir` where the suite for `spec` is stored."""
    return Path(cache_dir) / f"{SUITE_VERSION}-{spec.digest()}"


def load_synthetic_v2(spec: SyntheticV2Spec, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
    """The v2 suite for `spec`, generated once and then loaded from `cache_dir`."""
    target = build_once(cache_path(spec, cache_dir), lambda path: _generate_suite(spec).save_to_disk(str(path)))
    return datasets.load_from_disk(str(target))
