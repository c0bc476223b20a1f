"""The interface every dataset suite offers the run: what it is, how to load it, how each task is scored."""

from __future__ import annotations

import os
from typing import Protocol

import datasets


class Suite(Protocol):
    """A spec that deterministically names a dataset suite (synthetic v1, v2, or a hub mixture)."""

    version: str
    canvas: int  # longest side of the source images, px
    # True: a run decodes the whole split into memory once (a generated suite); False: the loader's workers read
    # each sample from the split's Arrow files as training draws it (a hub suite of any size).
    in_memory: bool

    def load(self, cache_dir: str | os.PathLike) -> datasets.DatasetDict:
        """Splits "train", "validation", "test" with image, task, prompt, answer (and optionally answers)."""

    def task_metrics(self) -> dict[str, str]:
        """Metric name (vlmlab.eval.metrics, or "cider") of each task that can be evaluated."""

    def train_tasks(self) -> tuple[str, ...]:
        """Tasks of the training split, which a data mixture weights."""

    def context_tasks(self) -> dict[str, str]:
        """The training task whose examples serve as in-context shots for each evaluation task named differently."""


def skipped_rows(spec: Suite, cache_dir: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Rows a suite skipped while building, per source and reason: hub suites count their bad rows
    (vlmlab.data.hub_suite); a generated suite has none."""
    skipped = getattr(spec, "skipped", None)
    return skipped(cache_dir) if skipped is not None else {}
