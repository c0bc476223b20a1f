"""The two ways a hub split can be wrong: one row that cannot become a sample, or a split that cannot be read at all."""

from __future__ import annotations


class BadRow(Exception):
    """A row that cannot become a sample; `reason` is the key it is counted under in `skipped`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DatasetFormatError(ValueError):
    """A split that does not have the shape its spec expects; names the dataset and split."""

    def __init__(self, dataset: str, split: str, message: str) -> None:
        super().__init__(f"{dataset} split {split!r}: {message}")
        self.dataset = dataset
        self.split = split
