"""Turn a dataset split into in-memory examples with images already at the model's resolution."""

from __future__ import annotations

from collections.abc import Sequence

import datasets

from vlmlab.data.collate import Example
from vlmlab.data.images import ImageProcessor


def split_examples(split: datasets.Dataset, images: ImageProcessor, tasks: Sequence[str] | None = None) -> list[Example]:
    """Examples of `split` (only `tasks` if given), decoding each distinct image once."""
    raw = split.cast_column("image", datasets.Image(decode=False))
    # Suites with several references per sample (synthetic v2, hub benchmarks) have an `answers` column.
    names = ["image_id", "task", "prompt", "answer"] + (["answers"] if "answers" in raw.column_names else [])
    columns = raw.select_columns(names).to_dict()
    references = columns.get("answers") or [()] * len(columns["image_id"])
    pixels: dict[str, object] = {}
    keep = set(tasks) if tasks is not None else None
    examples = []
    for i, image_id in enumerate(columns["image_id"]):
        if keep is not None and columns["task"][i] not in keep:
            continue
        if image_id not in pixels:
            pixels[image_id] = images.to_uint8(raw[i]["image"])
        examples.append(Example(pixels[image_id], columns["task"][i], columns["prompt"][i], columns["answer"][i],
                                tuple(references[i])))
    return examples
