"""Turn a dataset split into in-memory samples with images already at the model's resolution.

A row is an example (one `image`, a `prompt`, an `answer`) or, in a split with `texts` and `images` columns, an
interleaved document when its `texts` is not empty. Documents use OBELICS's schema: two aligned lists in
reading order, position i an image when `images[i]` is set and a text segment when `texts[i]` is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import datasets
import torch

from vlmlab.data.collate import Document, Example, Sample
from vlmlab.data.images import ImageProcessor

DOCUMENT_COLUMNS: tuple[str, ...] = ("images", "texts")


def row_document(images: list[dict | None], texts: list[str | None], prompts: list[bool] | None, task: str,
                 pixels: Callable[[dict], torch.Tensor]) -> Document:
    """An OBELICS-style row (aligned `images` and `texts`, None where the other one is; `prompts` marking the
    positions that are prompts, when the split has that column) as a Document, each image made by `pixels`."""
    parts = []
    for image, text in zip(images, texts, strict=True):
        if (image is None) == (text is None):
            raise ValueError(f"a {task} document has a position with {'both' if image else 'neither'} an image "
                             "and a text: exactly one of `images[i]` and `texts[i]` must be set")
        parts.append(pixels(image) if image is not None else text)
    return Document(tuple(parts), task, frozenset(i for i, prompt in enumerate(prompts or ()) if prompt))


def undecoded(split: datasets.Dataset) -> tuple[datasets.Dataset, bool]:
    """`split` with its images left as encoded bytes (decoded where a sample is made), and whether it holds
    documents (the `images` and `texts` columns)."""
    raw = split.cast_column("image", datasets.Image(decode=False))
    documents = all(name in raw.column_names for name in DOCUMENT_COLUMNS)
    if documents:
        raw = raw.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return raw, documents


def split_examples(split: datasets.Dataset, images: ImageProcessor, tasks: Sequence[str] | None = None) -> list[Sample]:
    """Samples of `split` (only `tasks` if given), decoding each distinct image once."""
    raw, documents = undecoded(split)
    # Suites with several references per sample (synthetic v2, hub benchmarks) have an `answers` column.
    names = ["image_id", "task", "prompt", "answer"] + [c for c in ("answers", "group") if c in raw.column_names]
    marked = documents and "prompts" in raw.column_names  # a hub suite's conversations mark their prompts
    columns = raw.select_columns(names + (["texts"] if documents else []) + (["prompts"] if marked else [])).to_dict()
    references = columns.get("answers") or [()] * len(columns["image_id"])
    groups = columns.get("group") or [()] * len(columns["image_id"])  # a hub benchmark's group keys (MME, MMBench)
    texts = columns.get("texts") or [[]] * len(columns["image_id"])
    prompts = columns.get("prompts") or [None] * len(columns["image_id"])
    pixels: dict[str, object] = {}
    keep = set(tasks) if tasks is not None else None
    examples: list[Sample] = []
    for i, image_id in enumerate(columns["image_id"]):
        if keep is not None and columns["task"][i] not in keep:
            continue
        if texts[i]:
            examples.append(row_document(raw[i]["images"], texts[i], prompts[i], columns["task"][i], images.to_uint8))
            continue
        if image_id not in pixels:
            pixels[image_id] = images.to_uint8(raw[i]["image"])
        examples.append(Example(pixels[image_id], columns["task"][i], columns["prompt"][i], columns["answer"][i],
                                tuple(references[i]), group=tuple(groups[i] or ())))
    return examples
