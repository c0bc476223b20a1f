"""Collapsed runs: a run that gives one and the same answer to every test item of a benchmark has learnt the answer
prior, not the task, whatever its score. Read from the answers each run saves beside its record."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Collapse:
    """A run of an arm that answered every item of a benchmark the same way."""

    arm: str
    seed: object
    benchmark: str
    answer: str
    items: int


def collapsed(answers_by_run: Iterable[tuple[str, object, Path]], benchmarks: list[str]) -> list[Collapse]:
    """The collapses among the runs (arm, seed, path of its `.predictions.jsonl`) on `benchmarks`, in the order
    given; a run whose answers file is missing or unreadable is skipped (the loss-curve warning names it)."""
    found = []
    for arm, seed, path in answers_by_run:
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError):
            continue
        by_task: dict[str, list[str]] = {}
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("task"), str):
                by_task.setdefault(row["task"], []).append(str(row.get("prediction")))
        for benchmark in benchmarks:
            answers = by_task.get(benchmark, [])
            if len(answers) > 1 and len(set(answers)) == 1:
                found.append(Collapse(arm, seed, benchmark, answers[0], len(answers)))
    return found


def collapse_lines(found: list[Collapse]) -> list[str]:
    """`- <arm> seed <s>: <benchmark> ('<answer>' to all N items), ...`, one line per run."""
    by_run: dict[tuple[str, str], list[str]] = {}
    for c in found:
        by_run.setdefault((c.arm, str(c.seed)), []).append(f"{c.benchmark} ('{c.answer}' to all {c.items} items)")
    return [f"- {arm} seed {seed}: {', '.join(parts)}" for (arm, seed), parts in by_run.items()]
