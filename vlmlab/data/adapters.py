"""Hugging Face dataset adapters: read a hub benchmark (or local files in its format) into one common `Sample`.

`load_samples("vqav2", "validation")` loads the split with `datasets` and yields samples whose image is
decoded RGB, whose prompt is the question (or a task instruction) and whose answers are the reference
strings the benchmark's metric scores against. Which columns mean what lives in the per-dataset specs
(`vlmlab.data.benchmarks`). Passing `data_files` reads local parquet files in the hub's own columns
instead, which is how the tests (and an offline user with a downloaded shard) stand in for the hub.

Bad input fails early and says where: a missing column or an empty split raises `DatasetFormatError`
before any row is read; a single bad row (undecodable image, wrong number of answers) is skipped,
counted and logged, since one corrupt image should not cost an evaluation; if every row is bad, raise.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasets
from PIL import Image

from vlmlab.data.benchmarks import CAULDRON_SUBSETS, BadRow, DatasetSpec, adapter, cauldron, known

__all__ = [
    "CAULDRON_SUBSETS", "DatasetFormatError", "DatasetSpec", "Sample", "adapter", "cauldron", "known",
    "load_samples", "to_samples",
]

log = logging.getLogger(__name__)

# PIL's ways of saying "these bytes are not an image I can decode" (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class DatasetFormatError(ValueError):
    """A split that does not have the shape its spec expects; names the dataset and split."""

    def __init__(self, dataset: str, split: str, message: str) -> None:
        super().__init__(f"{dataset} split {split!r}: {message}")
        self.dataset = dataset
        self.split = split


@dataclass
class Sample:
    """One benchmark item in vlmlab's common schema."""

    image: Image.Image   # decoded, RGB
    prompt: str          # the question, or a task instruction for captioning
    answers: list[str]   # the reference answers the metric scores against
    task: str            # the registry name, e.g. "vqav2"
    sample_id: str       # stable id from the dataset (question_id, cocoid, row:turn, ...)


def load_samples(
    name: str | DatasetSpec,
    split: str,
    *,
    limit: int | None = None,
    streaming: bool = False,
    data_files: Mapping[str, Any] | str | list[str] | None = None,
    cache_dir: str | None = None,
    skipped: Counter | None = None,
) -> Iterator[Sample]:
    """Samples of one split of a registered dataset, from the hub or from local parquet `data_files`."""
    spec = name if isinstance(name, DatasetSpec) else adapter(name)
    if data_files is None:
        if split not in spec.splits:
            raise ValueError(f"{spec.name} has no split {split!r}; its splits are {', '.join(spec.splits)}")
        args: tuple = (spec.hub_id, spec.config)
        kwargs: dict[str, Any] = {"revision": spec.revision}
    else:
        # Files not keyed by split stand for the split asked for (datasets would otherwise call them "train").
        files = data_files if isinstance(data_files, Mapping) else {split: data_files}
        args, kwargs = ("parquet",), {"data_files": files}
    try:
        data = datasets.load_dataset(*args, split=split, streaming=streaming, cache_dir=cache_dir, **kwargs)
    except ValueError as error:
        # datasets' way of saying that a split exists but has no rows.
        if "corresponds to no data" in str(error):
            raise DatasetFormatError(spec.name, split, "the split is empty") from error
        raise
    return to_samples(spec, data, split, limit, skipped=skipped)


def to_samples(
    spec: DatasetSpec,
    data: datasets.Dataset | datasets.IterableDataset | Iterable[Mapping[str, Any]],
    split: str,
    limit: int | None = None,
    *,
    skipped: Counter | None = None,
) -> Iterator[Sample]:
    """Samples from an already loaded split (a Dataset, an IterableDataset, or any iterable of row dicts)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    columns = getattr(data, "column_names", None)
    if columns is not None:
        _check_columns(spec, split, columns)
        data = _undecoded_images(spec, data)
    if isinstance(data, datasets.Dataset) and len(data) == 0:
        raise DatasetFormatError(spec.name, split, "the split is empty")
    # Validation above runs at call time; only row reading is deferred to iteration.
    return _samples(spec, data, split, limit, skipped, checked=columns is not None)


def _samples(
    spec: DatasetSpec, data: Iterable[Mapping[str, Any]], split: str, limit: int | None, skipped: Counter | None,
    checked: bool,
) -> Iterator[Sample]:
    """Yield the samples of each row, skipping and counting bad rows; raise if the split is empty or all bad."""
    if limit == 0:
        return
    bad: Counter = Counter()
    rows = produced = 0
    for index, row in enumerate(data):
        if not checked:  # an iterable of unknown columns: the first row tells
            _check_columns(spec, split, list(row.keys()))
            checked = True
        rows += 1
        try:
            pairs = spec.turns(row)
            image = _decode(row[spec.image_column])
        except BadRow as problem:
            bad[problem.reason] += 1
            if skipped is not None:
                skipped[problem.reason] += 1
            log.warning("%s split %r row %d skipped (%s)", spec.name, split, index, problem)
            continue
        base = str(row[spec.id_column]) if spec.id_column is not None else str(index)
        for turn, (prompt, answers) in enumerate(pairs):
            sample_id = f"{base}:{turn}" if spec.turns_column is not None else base
            yield Sample(image=image, prompt=prompt, answers=answers, task=spec.name, sample_id=sample_id)
            produced += 1
            if limit is not None and produced >= limit:
                return
    if rows == 0:
        raise DatasetFormatError(spec.name, split, "the split is empty")
    if produced == 0:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(bad.items()))
        raise DatasetFormatError(spec.name, split, f"all {rows} rows were skipped ({reasons})")


def _check_columns(spec: DatasetSpec, split: str, columns: Iterable[str]) -> None:
    """DatasetFormatError naming every column the spec needs that the split lacks."""
    present = set(columns)
    missing = [c for c in spec.columns if c not in present]
    if missing:
        raise DatasetFormatError(
            spec.name, split, f"missing column(s) {', '.join(missing)} (has: {', '.join(sorted(present))})"
        )


def _undecoded_images(spec: DatasetSpec, data: Any) -> Any:
    """The same data with its image column left as bytes, so that one undecodable image fails only its row."""
    features = getattr(data, "features", None)
    feature = features.get(spec.image_column) if features is not None else None
    if isinstance(feature, datasets.Image):
        return data.cast_column(spec.image_column, datasets.Image(decode=False))
    inner = getattr(feature, "feature", None)  # List(Image()) / LargeList(Image()), as the_cauldron's `images`
    if isinstance(inner, datasets.Image):
        kind = datasets.LargeList if isinstance(feature, datasets.LargeList) else datasets.List
        return data.cast_column(spec.image_column, kind(datasets.Image(decode=False)))
    return data


def _decode(cell: Any) -> Image.Image:
    """The RGB image in an image cell (bytes/path dict, bytes, path, PIL image, or a list whose first is one)."""
    if isinstance(cell, (list, tuple)):
        if not cell:
            raise BadRow("no_image", "the image list is empty")
        cell = cell[0]
    if cell is None:
        raise BadRow("no_image", "the image is missing")
    try:
        if isinstance(cell, Image.Image):
            image = cell
        elif isinstance(cell, Mapping) and cell.get("bytes") is not None:
            image = Image.open(io.BytesIO(cell["bytes"]))
        elif isinstance(cell, Mapping) and cell.get("path"):
            image = Image.open(cell["path"])
        elif isinstance(cell, (bytes, bytearray)):
            image = Image.open(io.BytesIO(cell))
        elif isinstance(cell, str):
            image = Image.open(cell)
        else:
            raise BadRow("undecodable_image", f"unexpected image cell of type {type(cell).__name__}")
        image.load()  # Image.open is lazy: force the decode here, inside the try
        return image.convert("RGB")
    except _DECODE_ERRORS as error:
        raise BadRow("undecodable_image", f"{type(error).__name__}: {error}") from error
