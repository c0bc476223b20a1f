"""A split's samples read from its Arrow files when asked for: how a hub suite of any size trains.

`ArrowSamples[i]` reads row i from the memory-mapped Arrow files and decodes and resizes its image(s) there and
then, so in a DataLoader the work happens in the loader's workers and memory holds no pixels but the batches
in flight. Which rows each rank and worker reads is the sampler's business (ResumableSampler shards one seeded
order over ranks; the DataLoader gives each worker whole batches of it), so no sample is read twice.

What the run needs before training (each sample's task, answer, text and image shapes, for the mixture, the
loss normaliser and the cost) comes from `described()`: the same samples with their pixels on the meta device,
shaped as the processor would resize them, read from the image headers without decoding a pixel.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import datasets
import torch
from PIL import Image

from vlmlab.data.collate import Example, Sample
from vlmlab.data.examples import row_document, undecoded
from vlmlab.data.images import ImageProcessor

class Samples(Protocol):
    """Training samples as the data module takes them: indexable, and described without decoding images."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def described(self) -> Sequence[Sample]: ...


class ArrowSamples(Sequence[Sample]):
    """The samples of one split, decoded one at a time from its Arrow files."""

    def __init__(self, split: datasets.Dataset, images: ImageProcessor) -> None:
        self.split, self.documents = undecoded(split)
        self.images = images
        self._described: list[Sample] | None = None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        return self._sample(self.split[int(index)], self.images.to_uint8)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def described(self) -> list[Sample]:
        """Every sample with its text and its images' shapes, the pixels on the meta device (nothing decoded);
        read once (the data module and the run's cost both ask)."""
        if self._described is None:
            columns = [c for c in ("image", "images") if c in self.split.column_names]
            text, headers = self.split.remove_columns(columns), self.split.select_columns(columns)
            self._described = [self._sample(dict(row, **header), self._shape_only) for row, header in zip(text, headers)]
        return self._described

    def __getstate__(self) -> dict[str, Any]:
        # A loader worker started by spawn (not fork) is sent the files' dataset, not the run's descriptions.
        return {**self.__dict__, "_described": None}

    def _shape_only(self, cell: dict) -> torch.Tensor:
        width, height = Image.open(io.BytesIO(cell["bytes"])).size  # the header alone: no pixel is decoded
        target_width, target_height = self.images.target_size(width, height)
        return torch.empty(3, target_height, target_width, dtype=torch.uint8, device="meta")

    def _sample(self, row: dict[str, Any], pixels) -> Sample:
        if self.documents and row["texts"]:
            return row_document(row["images"], row["texts"], row.get("prompts"), row["task"], pixels)
        return Example(pixels(row["image"]), row["task"], row["prompt"], row["answer"],
                       tuple(row.get("answers") or ()))


class InMemorySamples(list):
    """Samples already decoded (a generated suite's, which fits in memory): each is its own description."""

    def described(self) -> list[Sample]:
        return self
