"""A suite read from Hugging Face datasets: a training mixture of hub sources and the paper's benchmarks.

Each source is one split of one hub dataset: its files (`HubFiles`: repository, revision, file patterns, or
a local directory laid out like the repository), the adapter that says which of its columns make a sample
(`vlmlab.data.benchmarks`), and the task name it trains or is scored under. `conf/data/idefics2_ablation.yaml`
and its siblings name every source in YAML; adding a benchmark is one adapter entry and one source entry.

The suite is built once per spec into Arrow files under the cache (`load`), in the same columns as the
synthetic suites (image, image_id, task, prompt, answer, answers), so the rest of a run reads it as it reads
them. A source's rows that cannot become samples are skipped and counted per reason; a source that yields
nothing is refused, naming the source and split.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import datasets
from datasets.arrow_writer import ArrowWriter
from PIL import Image

from vlmlab.data.adapters import (
    DatasetFormatError, DocumentSample, Sample, adapter, is_url, load_conversations, load_documents, load_samples,
)
from vlmlab.data.benchmarks import ChatSpec, DocumentSpec
from vlmlab.data.cache import build_once
from vlmlab.data.hub_files import HubFiles

VERSION = "hub-v1"
SPLITS = ("train", "validation", "test")
FEATURES = datasets.Features({
    "image": datasets.Image(), "image_id": datasets.Value("string"), "task": datasets.Value("string"),
    "prompt": datasets.Value("string"), "answer": datasets.Value("string"),
    "answers": datasets.List(datasets.Value("string")),
    # An interleaved document (OBELICS's layout): at each position an image or a text segment, None in the gaps.
    # A document row has no `image`; an (image, prompt, answer) row has empty lists.
    "images": datasets.List(datasets.Image()), "texts": datasets.List(datasets.Value("string")),
    # Whether each position of a document is a prompt (a conversation's user turn: read, not trained on).
    "prompts": datasets.List(datasets.Value("bool")),
    # A benchmark sample's group key, for the metrics that judge samples together (MME's image, MMBench's question).
    "group": datasets.List(datasets.Value("string")),
})


@dataclass(frozen=True, kw_only=True)
class Source:
    """One split of one hub dataset, read with one adapter, under one task name."""

    adapter: str                     # a name of vlmlab.data.benchmarks' registry: which columns mean what
    repo: str                        # the hub repository (its files: `patterns` at `revision`)
    split: str                       # the split its files hold, as the adapter names it
    patterns: tuple[str, ...] = ("*.parquet",)
    revision: str | None = None
    local_dir: str | None = None     # a directory laid out like the repository, read instead of the hub
    task: str | None = None          # the task (benchmark column) its samples count under; default: the adapter
    limit: int | None = None         # a fixed, seeded subset of this many samples (VQAv2's val subset)
    conversations: bool = False      # train each row's turns as one sequence, the loss on the answers alone
    image_patterns: tuple[str, ...] = ()  # the files of the adapter's image table, where it has one (GQA's)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "image_patterns", tuple(self.image_patterns))
        spec = adapter(self.adapter)  # KeyError naming the known adapters
        if (getattr(spec, "image_table", None) is None) != (not self.image_patterns):
            raise ValueError(f"source {self.name}: give image_patterns exactly when the adapter {self.adapter} keeps "
                             "its images in a table of their own")
        turns = isinstance(spec, ChatSpec) or getattr(spec, "turns_column", None) is not None
        if self.conversations and not turns:
            raise ValueError(f"source {self.name}: conversations: the adapter {self.adapter} has no turns")
        if isinstance(spec, ChatSpec) and not self.conversations:
            raise ValueError(f"source {self.name}: {self.adapter} is a chat dataset: set `conversations: true`")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"source {self.name}: limit must be positive, got {self.limit}")

    @property
    def name(self) -> str:
        return self.task or self.adapter

    def files(self, mirror: str | None = None) -> HubFiles:
        """Its files on the hub, or in `local_dir`, or under a mirror laid out as `<mirror>/<org>/<name>/...`."""
        local = self.local_dir or (str(Path(mirror) / self.repo) if mirror else None)
        return HubFiles(repo=self.repo, patterns=self.patterns, revision=self.revision, local_dir=local)

    def image_files(self, mirror: str | None = None) -> HubFiles | None:
        """The files of its image table (same repository and place as its questions), if its adapter has one."""
        if not self.image_patterns:
            return None
        return replace(self.files(mirror), patterns=self.image_patterns)


def _sources(raw: Sequence[Mapping[str, Any] | Source], role: str) -> tuple[Source, ...]:
    sources = tuple(s if isinstance(s, Source) else Source(**dict(s)) for s in raw or ())
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"hub suite: two {role} sources share a task name ({', '.join(names)}); set `task:`")
    return sources


@dataclass(frozen=True, kw_only=True)
class HubSuite:
    """Everything that determines a hub-backed suite; equal specs give identical data.

    train: the sources a mixture weights (`data.mixture` by task name); benchmarks: the test split, one task
    each; shots: each benchmark's support set for k-shot evaluation, under the benchmark's task name, kept in
    the training split but given no mixture weight; validation_per_source: rows held out of each training
    source for the validation loss.
    """

    name: str
    train: tuple[Source, ...] = ()
    benchmarks: tuple[Source, ...] = ()
    shots: tuple[Source, ...] = ()
    seed: int = 0
    canvas: int = 384                # longest side an image is stored at: the model's resolution, or above
    validation_per_source: int = 16
    mirror: str | None = None        # a directory of repositories (`<org>/<name>/...`) read instead of the hub
    image_store: str | None = None   # where the images of URL-only documents were downloaded (vlmlab prefetch)
    in_memory = False  # any size: a run reads each sample from the Arrow files in the loader's workers

    def __post_init__(self) -> None:
        object.__setattr__(self, "train", _sources(self.train, "train"))
        object.__setattr__(self, "benchmarks", _sources(self.benchmarks, "benchmark"))
        object.__setattr__(self, "shots", _sources(self.shots, "shots"))
        if not self.train or not self.benchmarks:
            raise ValueError(f"hub suite {self.name}: needs at least one train source and one benchmark")
        unknown = {s.name for s in self.shots} - {b.name for b in self.benchmarks}
        if unknown:
            raise ValueError(f"hub suite {self.name}: shots for no benchmark: {', '.join(sorted(unknown))}")
        unscored = [b.name for b in self.benchmarks if isinstance(adapter(b.adapter), (DocumentSpec, ChatSpec))]
        if unscored:  # a benchmark needs references to score against
            raise ValueError(f"hub suite {self.name}: documents and chats cannot be a benchmark: {', '.join(unscored)}")
        overlap = {s.name for s in self.train} & {b.name for b in self.benchmarks}
        if overlap:  # the shots of a benchmark live in the training split under its name: they must not train
            raise ValueError(f"hub suite {self.name}: a train source and a benchmark share the task name "
                             f"{', '.join(sorted(overlap))}; rename one with `task:`")

    @property
    def version(self) -> str:
        """What a record names as its data: the builder's version, the suite and its spec's digest."""
        return f"{VERSION}:{self.name}-{self.digest()}"

    def digest(self) -> str:
        """Short stable hash of the spec: the cache key of its built splits."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()[:12]

    # The suite interface of a run (vlmlab.data.suite.Suite).
    def load(self, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
        target = Path(cache_dir) / "hub" / f"{self.name}-{self.digest()}"
        build_once(target, self._build)
        return datasets.load_from_disk(str(target / "splits"))

    def task_metrics(self) -> dict[str, str]:
        return {b.name: adapter(b.adapter).metric for b in self.benchmarks}

    def train_tasks(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.train)

    def context_tasks(self) -> dict[str, str]:
        return {}  # each benchmark's shots are in the training split under the benchmark's own name

    def hub_files(self) -> list[HubFiles]:
        """Every file the suite reads: what `vlmlab prefetch` downloads for an offline cluster."""
        sources = (*self.train, *self.shots, *self.benchmarks)
        images = [s.image_files(self.mirror) for s in sources]
        return [s.files(self.mirror) for s in sources] + [files for files in images if files is not None]

    def image_urls(self) -> list[str]:
        """The image URLs of the suite's document sources (OBELICS): what the image store must hold. Read from
        the sources' files (the image column alone), which must be there first."""
        import pyarrow.parquet as pq

        urls: dict[str, None] = {}
        for source in self.train:
            spec = adapter(source.adapter)
            if not isinstance(spec, DocumentSpec):
                continue
            for path in source.files(self.mirror).paths():
                for cells in pq.read_table(path, columns=[spec.images_column]).column(0).to_pylist():
                    urls.update((c, None) for c in cells or () if is_url(c))
        return list(urls)

    def skipped(self, cache_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
        """Rows skipped while building, per source (`train/obelics`, `shots/vqav2`, `test/vqav2`) and reason
        (undecodable image, wrong answer count, image not fetched, ...)."""
        self.load(cache_dir)
        path = Path(cache_dir) / "hub" / f"{self.name}-{self.digest()}" / "skipped.json"
        return json.loads(path.read_text())

    # Building: each source's rows are written to an Arrow file as they are read, then put in a seeded order by
    # an index (nothing of a source is held in memory), and the splits are saved from those files.
    def _build(self, staging: Path) -> None:
        skipped: dict[str, Counter] = {}
        staging.mkdir(parents=True)
        parts: dict[str, list[datasets.Dataset]] = {split: [] for split in SPLITS}
        for source in self.train:
            rows, held = self._source_rows(source, "train", skipped, staging), self.validation_per_source
            if len(rows) <= held:
                raise DatasetFormatError(source.repo, source.split, f"train source {source.name} has "
                                         f"{len(rows)} samples, not more than validation_per_source={held}")
            parts["validation"].append(rows.select(range(held)))
            parts["train"].append(rows.select(range(held, len(rows))))
        parts["train"] += [self._source_rows(source, "shots", skipped, staging) for source in self.shots]
        parts["test"] += [self._source_rows(source, "test", skipped, staging) for source in self.benchmarks]
        splits = datasets.DatasetDict({split: datasets.concatenate_datasets(p) for split, p in parts.items()})
        splits.save_to_disk(str(staging / "splits"))
        counts = {name: dict(sorted(reasons.items())) for name, reasons in sorted(skipped.items()) if reasons}
        (staging / "skipped.json").write_text(json.dumps(counts, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(staging / "sources")  # the splits hold their own copies

    def _source_rows(self, source: Source, role: str, skipped: dict[str, Counter], staging: Path) -> datasets.Dataset:
        """The source's samples as rows, in a seeded order (a fixed subset when it has a limit); its bad rows
        counted under `<role>/<task>` (a benchmark's shots and its questions are different files)."""
        counter = skipped.setdefault(f"{role}/{source.name}", Counter())
        path = staging / "sources" / f"{role}-{len(skipped):03d}.arrow"
        path.parent.mkdir(exist_ok=True)
        with ArrowWriter(features=FEATURES, path=str(path)) as writer:
            for sample in self._read(source, counter):
                writer.write(_row(sample, source.name, self.canvas))
            writer.finalize()
        rows = datasets.Dataset.from_file(str(path))
        key, groups = f"{self.seed}:{source.name}", rows["group"]
        if any(groups):  # a subset must not split what is judged together (MME's image pairs, MMBench's shifts)
            return rows.select(_seeded_group_order(list(groups), key, source.limit))
        return rows.select(_seeded_order(len(rows), key)[: source.limit])

    def _read(self, source: Source, counter: Counter) -> Iterator[Sample | DocumentSample]:
        """The source's samples as its adapter reads them: examples, documents or conversations."""
        files = [str(path) for path in source.files(self.mirror).paths()]
        if source.conversations:
            return load_conversations(source.adapter, source.split, data_files=files, skipped=counter)
        if isinstance(adapter(source.adapter), DocumentSpec):
            return load_documents(source.adapter, source.split, data_files=files, skipped=counter,
                                  image_store=self.image_store)
        images = source.image_files(self.mirror)
        return load_samples(source.adapter, source.split, data_files=files, skipped=counter,
                            image_files=None if images is None else [str(path) for path in images.paths()])


def _seeded_order(n: int, key: str) -> list[int]:
    import random

    order = list(range(n))
    random.Random(hashlib.sha256(key.encode()).hexdigest()).shuffle(order)
    return order


def _seeded_group_order(groups: list[list[str]], key: str, limit: int | None) -> list[int]:
    """Rows in a seeded order of their groups, each group's rows together and in reading order; with a limit, as many
    whole groups as fit in `limit` rows (a row without a group key is a group of its own)."""
    members: dict[tuple, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(tuple(group) if group else ("", str(i)), []).append(i)
    keys = list(members)
    order: list[int] = []
    for k in _seeded_order(len(keys), key):
        rows = members[keys[k]]
        if limit is None or len(order) + len(rows) <= limit:
            order += rows
    return order


def _row(sample: Sample | DocumentSample, task: str, canvas: int) -> dict:
    """A sample in the suite's columns, its images at most `canvas` on their longest side, encoded losslessly."""
    image_id = f"{task}:{sample.sample_id}"
    if isinstance(sample, DocumentSample):
        return {"image": None, "image_id": image_id, "task": task, "prompt": "", "answer": "", "answers": [],
                "images": [None if isinstance(p, str) else _encoded(p, canvas) for p in sample.parts],
                "texts": [p if isinstance(p, str) else None for p in sample.parts],
                "prompts": [i in sample.prompts for i in range(len(sample.parts))], "group": []}
    return {"image": _encoded(sample.image, canvas), "image_id": image_id, "task": task, "prompt": sample.prompt,
            "answer": _target(sample.answers), "answers": list(sample.answers), "images": [], "texts": [],
            "prompts": [], "group": list(sample.group)}


def _encoded(image: Image.Image, canvas: int) -> dict:
    if max(image.size) > canvas:
        scale = canvas / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _target(answers: Sequence[str]) -> str:
    """The answer a shot shows and training learns: the most common reference (VQA's ten), else the first."""
    counts = Counter(answers)
    return max(answers, key=lambda a: (counts[a], -answers.index(a)))

