"""The interface every dataset suite offers the run: what it is, how to load it, how each task is scored."""

from __future__ import annotations

import os
from typing import Protocol

import datasets


class Suite(Protocol):
    """A spec that deterministically names a dataset suite (synthetic v1, v2, or a hub mixture)."""

    version: str
    canvas: int  # longest side of the source images, px

    def load(self, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
        """Splits "train", "validation", "test" with image, task, prompt, answer (and optionally answers)."""

    def task_metrics(self) -> dict[str, str]:
        """Metric name (vlmlab.eval.metrics, or "cider") of each task that can be evaluated."""

    def train_tasks(self) -> tuple[str, ...]:
        """Tasks of the training split, which a data mixture weights."""

    def context_tasks(self) -> dict[str, str]:
        """The training task whose examples serve as in-context shots for each evaluation task named differently."""
