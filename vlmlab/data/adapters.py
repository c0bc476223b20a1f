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

import hashlib
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import datasets
from PIL import Image

from vlmlab.data.benchmarks import CAULDRON_SUBSETS, ChatSpec, DatasetSpec, DocumentSpec, adapter, cauldron, known
from vlmlab.data.image_tables import ImageCells, image_cells, own_images
from vlmlab.data.row_errors import BadRow, DatasetFormatError

__all__ = [
    "CAULDRON_SUBSETS", "DatasetFormatError", "DatasetSpec", "DocumentSample", "DocumentSpec", "Sample", "adapter",
    "cauldron", "image_file_name", "known", "load_conversations", "load_documents", "load_samples", "to_samples",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

# PIL's ways of saying "these bytes are not an image I can decode" (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass
class Sample:
    """One benchmark item in vlmlab's common schema."""

    image: Image.Image   # decoded, RGB
    prompt: str          # the question, or a task instruction for captioning
    answers: list[str]   # the reference answers the metric scores against
    task: str            # the registry name, e.g. "vqav2"
    sample_id: str       # stable id from the dataset (question_id, cocoid, row:turn, ...)
    group: tuple[str, ...] = ()  # the key a group metric judges it by, with its group (MME's image, MMBench's question)


def load_samples(
    name: str | DatasetSpec,
    split: str,
    *,
    limit: int | None = None,
    streaming: bool = False,
    data_files: Mapping[str, Any] | str | list[str] | None = None,
    cache_dir: str | None = None,
    skipped: Counter | None = None,
    image_files: list[str] | None = None,
) -> Iterator[Sample]:
    """Samples of one split of a registered dataset, from the hub or from local parquet `data_files` (and, for a spec
    whose images are a table of their own, `image_files` holding that table)."""
    spec = name if isinstance(name, DatasetSpec) else adapter(name)
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"{spec.name} holds documents: read it with load_documents")
    if spec.image_table is not None and data_files is not None and image_files is None:
        raise ValueError(f"{spec.name} keeps its images in the {spec.image_table.config} table: pass its image_files")
    images = image_cells(spec, split, image_files, cache_dir)
    data = _load_split(spec, split, streaming, data_files, cache_dir)
    return to_samples(spec, data, split, limit, skipped=skipped, images=images)


def _load_split(spec: DatasetSpec | DocumentSpec | ChatSpec, split: str, streaming: bool,
                data_files: Mapping[str, Any] | str | list[str] | None, cache_dir: str | None) -> Any:
    """One split with `datasets`: from the hub, or from local parquet files in the hub's columns."""
    if data_files is None:
        if split not in spec.splits:
            raise ValueError(f"{spec.name} has no split {split!r}; its splits are {', '.join(spec.splits)}")
        args: tuple = (spec.hub_id, getattr(spec, "config", None))
        kwargs: dict[str, Any] = {"revision": getattr(spec, "revision", None)}
    else:
        # Files not keyed by split stand for the split asked for (datasets would otherwise call them "train").
        files = data_files if isinstance(data_files, Mapping) else {split: data_files}
        args, kwargs = ("parquet",), {"data_files": files}
    try:
        return datasets.load_dataset(*args, split=split, streaming=streaming, cache_dir=cache_dir, **kwargs)
    except ValueError as error:
        # datasets' way of saying that a split exists but has no rows.
        if "corresponds to no data" in str(error):
            raise DatasetFormatError(spec.name, split, "the split is empty") from error
        raise


@dataclass
class DocumentSample:
    """One interleaved document in vlmlab's common schema: text segments and decoded RGB images in order;
    `prompts`: the positions of text the model reads but is not trained to write (a conversation's user turns)."""

    parts: list[str | Image.Image]
    task: str
    sample_id: str
    prompts: frozenset[int] = frozenset()


def load_conversations(
    name: str | DatasetSpec, split: str, *, data_files: Mapping[str, Any] | str | list[str] | None = None,
    limit: int | None = None, streaming: bool = False, cache_dir: str | None = None, skipped: Counter | None = None,
) -> Iterator[DocumentSample]:
    """Each row of a conversation dataset (the_cauldron's `texts` turns) as one document: its images, then each
    turn's user text (a prompt) and assistant text (an answer), so that training puts the loss on the answers
    alone and each answer sees the turns before it, as instruction fine-tuning trains on them."""
    spec = name if isinstance(name, (DatasetSpec, ChatSpec)) else adapter(name)
    if not (isinstance(spec, ChatSpec) or isinstance(spec, DatasetSpec) and spec.turns_column is not None):
        raise TypeError(f"{spec.name} has no conversation turns: read it with load_samples or load_documents")
    data = _load_split(spec, split, streaming, data_files, cache_dir)
    columns = getattr(data, "column_names", None)
    if columns is not None:
        _check_columns(spec, split, columns)
        if isinstance(spec, DatasetSpec):
            data = _undecoded_images(spec, data)
    return _conversations(spec, data, split, limit, skipped if skipped is not None else Counter())


def _chat_turns(spec: ChatSpec, row: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """A chat row's messages as (text, is the assistant's); BadRow without an assistant message."""
    messages = row[spec.messages_column] or []
    turns = []
    for message in messages:
        content, role = (message or {}).get("content"), (message or {}).get("role")
        if not isinstance(content, str) or not isinstance(role, str):
            raise BadRow("bad_turn", f"message without role/content text: {message!r}")
        turns.append((content, role == "assistant"))
    if not any(answer for _, answer in turns):
        raise BadRow("no_turns", "no assistant message")
    return turns


def _conversation_parts(spec: DatasetSpec | ChatSpec, row: Mapping[str, Any]) -> tuple[list, frozenset[int]]:
    """A row's images (none for a chat), then its turns; and the positions that are prompts."""
    if isinstance(spec, ChatSpec):
        turns, images = _chat_turns(spec, row), []
    else:
        turns = [(text, answer) for user, (assistant,) in spec.turns(row)
                 for text, answer in ((user, False), (assistant, True))]
        cells = row[spec.image_column]
        images = [_decode(cell) for cell in (cells if isinstance(cells, (list, tuple)) else [cells])]
    parts = [*images, *(text for text, _ in turns)]
    return parts, frozenset(len(images) + i for i, (_, answer) in enumerate(turns) if not answer)


def _conversations(spec: DatasetSpec | ChatSpec, data: Iterable[Mapping[str, Any]], split: str, limit: int | None,
                   skipped: Counter) -> Iterator[DocumentSample]:
    def conversation(row: Mapping[str, Any], index: int) -> list[DocumentSample]:
        parts, prompts = _conversation_parts(spec, row)
        return [DocumentSample(parts=parts, task=spec.name, sample_id=str(index), prompts=prompts)]

    return _read_rows(spec.name, data, split, limit, skipped, conversation)


def load_documents(
    name: str | DocumentSpec, split: str, *, data_files: Mapping[str, Any] | str | list[str] | None = None,
    image_store: str | None = None, limit: int | None = None, streaming: bool = False, cache_dir: str | None = None,
    skipped: Counter | None = None,
) -> Iterator[DocumentSample]:
    """Documents of one split of an interleaved dataset (OBELICS), from the hub or local parquet `data_files`.

    An image that is a URL is read from `image_store` (one file per URL, named by `image_file_name`); one that
    is missing there or does not decode is left out of its document and counted, as the paper's pipeline
    leaves out images that failed to download. A row whose lists do not line up is skipped and counted.
    """
    spec = name if isinstance(name, DocumentSpec) else adapter(name)
    if not isinstance(spec, DocumentSpec):
        raise TypeError(f"{spec.name} is not a document dataset: read it with load_samples")
    data = _load_split(spec, split, streaming, data_files, cache_dir)
    columns = getattr(data, "column_names", None)
    if columns is not None:
        _check_columns(spec, split, columns)
        feature = data.features.get(spec.images_column)
        if isinstance(getattr(feature, "feature", None), datasets.Image):
            data = data.cast_column(spec.images_column, datasets.List(datasets.Image(decode=False)))
    return _documents(spec, data, split, limit, image_store, skipped if skipped is not None else Counter())


def image_file_name(url: str) -> str:
    """The file an image store keeps the image of `url` under."""
    return hashlib.sha256(url.encode()).hexdigest()


def _documents(spec: DocumentSpec, data: Iterable[Mapping[str, Any]], split: str, limit: int | None,
               image_store: str | None, skipped: Counter) -> Iterator[DocumentSample]:
    def document(row: Mapping[str, Any], index: int) -> list[DocumentSample]:
        images, texts = row[spec.images_column] or [], row[spec.texts_column] or []
        if len(images) != len(texts) or any((i is None) == (t is None) for i, t in zip(images, texts)):
            raise BadRow("misaligned_document", "images and texts do not alternate")
        parts: list[str | Image.Image] = []
        for image, text in zip(images, texts):
            if text is not None:
                parts.append(text)
                continue
            try:
                parts.append(_decode(_stored(image, image_store)))
            except BadRow as problem:  # one lost image costs itself, not its document
                skipped[problem.reason] += 1
        if not any(isinstance(part, str) and part.strip() for part in parts):
            raise BadRow("no_text", "no text left to learn from")
        base = str(row[spec.id_column]) if spec.id_column is not None else str(index)
        return [DocumentSample(parts=parts, task=spec.name, sample_id=base)]

    return _read_rows(spec.name, data, split, limit, skipped, document)


def is_url(cell: Any) -> bool:
    """Whether an image cell is a URL (OBELICS's), to be read from an image store."""
    return isinstance(cell, str) and cell.startswith(("http://", "https://"))


def _stored(cell: Any, image_store: str | None) -> Any:
    """An image cell, with a URL replaced by its file in the image store."""
    if not is_url(cell):
        return cell
    path = Path(image_store) / image_file_name(cell) if image_store else None
    if path is None or not path.exists():
        raise BadRow("image_not_fetched", cell)
    return str(path)


def to_samples(
    spec: DatasetSpec,
    data: datasets.Dataset | datasets.IterableDataset | Iterable[Mapping[str, Any]],
    split: str,
    limit: int | None = None,
    *,
    skipped: Counter | None = None,
    images: ImageCells | None = None,
) -> Iterator[Sample]:
    """Samples from an already loaded split (a Dataset, an IterableDataset, or any iterable of row dicts); `images`
    finds each row's image cell where the spec keeps its images in a table of their own (vlmlab.data.image_tables)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if images is None and spec.image_table is not None:
        raise ValueError(f"{spec.name} keeps its images in the {spec.image_table.config} table: pass `images`")
    columns = getattr(data, "column_names", None)
    if columns is not None:
        _check_columns(spec, split, columns)
        data = _undecoded_images(spec, data)
    if isinstance(data, datasets.Dataset) and len(data) == 0:
        raise DatasetFormatError(spec.name, split, "the split is empty")
    # Validation above runs at call time; only row reading is deferred to iteration.
    return _samples(spec, data, split, limit, skipped, checked=columns is not None, images=images or own_images(spec))


def _samples(
    spec: DatasetSpec, data: Iterable[Mapping[str, Any]], split: str, limit: int | None, skipped: Counter | None,
    checked: bool, images: ImageCells,
) -> Iterator[Sample]:
    """Yield the samples of each row, skipping and counting bad rows; raise if the split is empty or all bad."""
    def samples(row: Mapping[str, Any], index: int) -> list[Sample]:
        nonlocal checked
        if not checked:  # an iterable of unknown columns: the first row tells
            _check_columns(spec, split, list(row.keys()))
            checked = True
        if not spec.wanted(row):  # another subset's row (POPE's other settings), or a copy the spec remakes
            return []
        pairs = spec.turns(row)
        image = _decode(images(row))
        base = str(row[spec.id_column]) if spec.id_column is not None else str(index)
        return [Sample(image=image, prompt=prompt, answers=answers, task=spec.name, group=spec.group(row),
                       sample_id=f"{base}:{turn}" if spec.several_per_row else base)
                for turn, (prompt, answers) in enumerate(pairs)]

    return _read_rows(spec.name, data, split, limit, skipped, samples)


def _read_rows(name: str, data: Iterable[Mapping[str, Any]], split: str, limit: int | None, skipped: Counter | None,
               samples_of: Callable[[Mapping[str, Any], int], list[T]]) -> Iterator[T]:
    """The samples `samples_of(row, index)` makes of each row, up to `limit`. A row it refuses (BadRow) is skipped,
    counted in `skipped` under its reason and logged; DatasetFormatError when the split is empty or every row
    was refused, since a source without a usable row is a mistake to stop at, not a count."""
    if limit == 0:
        return
    bad: Counter = Counter()
    rows = produced = 0
    for index, row in enumerate(data):
        rows += 1
        try:
            made = samples_of(row, index)
        except BadRow as problem:
            bad[problem.reason] += 1
            if skipped is not None:
                skipped[problem.reason] += 1
            log.warning("%s split %r row %d skipped (%s)", name, split, index, problem)
            continue
        for sample in made:
            yield sample
            produced += 1
            if limit is not None and produced >= limit:
                return
    if rows == 0:
        raise DatasetFormatError(name, split, "the split is empty")
    if produced == 0 and not bad:
        raise DatasetFormatError(name, split, f"none of its {rows} rows is in the adapter's subset")
    if produced == 0:
        reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(bad.items()))
        raise DatasetFormatError(name, split, f"all {rows} rows were skipped ({reasons})")


def _check_columns(spec: DatasetSpec | DocumentSpec | ChatSpec, split: str, columns: Iterable[str]) -> None:
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
