"""Chance baselines: what a model scores that gives every item of a benchmark one constant answer.

The constant is the most frequent answer of the benchmark's training task (the suite's `context_tasks()` names it
where it has another name; ties: the first in sorted order), scored with the
benchmark's own metric on the very test items the runs are scored on (the first `limit` of each task, as
`harness.limit_per_task` takes them). A score at or below it means the model has learnt nothing it could not have
got by ignoring the image and the question.

Computed from the dataset's rows alone (answers and references, no image), so a sweep can put it in its plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import datasets

from vlmlab.eval.harness import score


@dataclass(frozen=True)
class ChanceBaseline:
    """The constant answer of one benchmark and its score (percent, as the benchmark's score is)."""

    answer: str
    score: float


def chance_baselines(train: datasets.Dataset, test: datasets.Dataset, metrics: Mapping[str, str],
                     limit: int | None, sources: Mapping[str, str]) -> dict[str, ChanceBaseline]:
    """Per benchmark of `metrics` (name -> metric) with training answers (those of its training task `sources`
    names, else its own), its constant answer and that answer's score on the benchmark's first `limit` test items."""
    benchmark_of = {sources.get(name, name): name for name in metrics}
    answers: dict[str, Counter[str]] = {}
    for task, answer in zip(train["task"], train["answer"]):
        if task in benchmark_of and answer:
            answers.setdefault(benchmark_of[task], Counter())[answer] += 1
    references: dict[str, list[tuple[str, ...]]] = {}
    groups: dict[str, list[tuple[str, ...]]] = {}  # the group metrics' keys (MME's images, MMBench's questions)
    has_answers = "answers" in test.column_names
    optional = [c for c in ("answers", "group") if c in test.column_names]
    columns = test.select_columns(["task", "answer", *optional]).to_dict()
    for i, task in enumerate(columns["task"]):
        items = references.setdefault(task, [])
        if task in metrics and (limit is None or len(items) < limit):
            items.append(tuple(columns["answers"][i]) if has_answers and columns["answers"][i]
                         else (columns["answer"][i],))
            groups.setdefault(task, []).append(tuple(columns["group"][i] or ()) if "group" in columns else ())
    baselines = {}
    for task, counts in answers.items():
        if not references.get(task):
            continue
        top = max(counts.values())
        constant = min(answer for answer, n in counts.items() if n == top)
        refs = references[task]
        baselines[task] = ChanceBaseline(constant, score(metrics[task], [constant] * len(refs), refs, groups[task]))
    return baselines
