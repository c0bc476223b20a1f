"""Where a question row's image cell is: in the row itself, or in an image table joined by a key (GQA's hub layout).

lmms-lab/GQA keeps its 12,578 testdev questions and their 398 images in two configs, `*_instructions` and `*_images`,
as the original release does; a question names its image by `imageId`. The table is read once (memory-mapped
Arrow, its images left encoded) and each question's cell is looked up by key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import datasets

from vlmlab.data.benchmarks import DatasetSpec
from vlmlab.data.row_errors import BadRow, DatasetFormatError

ImageCells = Callable[[Mapping[str, Any]], Any]  # a question row -> its image cell


def own_images(spec: DatasetSpec) -> ImageCells:
    """The image cell of each row from the row's own image column."""
    column = spec.image_column
    return lambda row: row[column]


def image_cells(spec: DatasetSpec, split: str, files: list[str] | None = None,
                cache_dir: str | None = None) -> ImageCells:
    """How the spec's rows find their image cells: their own column, or the spec's image table, read from the hub
    (its config, the same split) or from local parquet `files` in its columns."""
    table = spec.image_table
    if table is None:
        return own_images(spec)
    if files is None:
        data = datasets.load_dataset(spec.hub_id, table.config, split=split, revision=spec.revision,
                                     cache_dir=cache_dir)
    else:
        data = datasets.load_dataset("parquet", data_files={split: list(files)}, split=split, cache_dir=cache_dir)
    return joined_images(spec, data, split)


def joined_images(spec: DatasetSpec, data: datasets.Dataset, split: str) -> ImageCells:
    """The image cell of each question row from `data`, the spec's loaded image table; a row whose key names no image
    is refused (BadRow), so that it is skipped and counted like an undecodable image."""
    join = spec.image_table
    assert join is not None
    where = f"{spec.name} images ({join.config})"
    missing = [c for c in (join.id_column, spec.image_column) if c not in data.column_names]
    if missing:
        raise DatasetFormatError(where, split, f"missing column(s) {', '.join(missing)}")
    images = data.select_columns([spec.image_column])
    if isinstance(images.features[spec.image_column], datasets.Image):
        images = images.cast_column(spec.image_column, datasets.Image(decode=False))  # decoded per sample
    position = {str(key): i for i, key in enumerate(data[join.id_column])}

    def cell(row: Mapping[str, Any]) -> Any:
        key = str(row[join.key_column])
        if key not in position:
            raise BadRow("image_not_found", f"no image {key!r} in {join.config}")
        return images[position[key]][spec.image_column]

    return cell
