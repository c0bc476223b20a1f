"""What scoring one task gives: the score its benchmark reports, and each answer's share of it.

Every metric of `vlmlab.eval.metrics.TASK_SCORERS` is a `TaskScorer`: given the task's predictions, their references
and each item's group key (MME: its subtask and image; MMBench: its question; empty where a benchmark has none), it
returns a `TaskScore`. Its `items` have the task score as their mean, exactly: the tables' paired bootstrap
(vlmlab.results.bootstrap) takes the mean item difference between two arms as their Δ, so an item must carry its
share of the score, not merely whether it was right, when the score is no plain mean (see each scorer for its share).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Group = tuple[str, ...]


@dataclass(frozen=True)
class TaskScore:
    """A task's score as its benchmark reports it (percent, CIDEr x100, MME points) and one score per item, in the
    items' order, whose mean is `score`."""

    score: float
    items: list[float]


class TaskScorer(Protocol):
    """Scores one task from its predictions, references and the items' group keys (one per item, maybe empty)."""

    def __call__(self, predictions: Sequence[str], references: Sequence[Sequence[str]],
                 groups: Sequence[Group]) -> TaskScore: ...


def from_contributions(contributions: Sequence[float]) -> TaskScore:
    """The TaskScore of a score that is the sum of per-item contributions (MME's, MMBench's): each item's share is
    its contribution times the number of items, so that the shares' mean is the sum."""
    n = len(contributions)
    return TaskScore(sum(contributions), [n * value for value in contributions])


def members(groups: Sequence[Group]) -> dict[Group, list[int]]:
    """The positions of each group's items, in order; an item with an empty key is a group of its own."""
    found: dict[Group, list[int]] = {}
    for i, group in enumerate(groups):
        found.setdefault(tuple(group) if group else ("", str(i)), []).append(i)
    return found
