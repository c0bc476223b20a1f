"""What the runs answered, read from the `.predictions.jsonl` each run saves beside its record: which runs collapsed
to one answer, and the per-item scores (and groups of items scored together) the item-level tests pair.

A run that gives one and the same answer to every test item of a benchmark has learnt the answer prior, not the
task, whatever its score. Answers files written before per-item scores were saved have no `score`: their runs
have answers but no item scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vlmlab.run_record import Seed


@dataclass(frozen=True)
class RunAnswers:
    """One run's answers per benchmark, in item order, their scores (None where the file has none) and the group
    key of each (MME's image, MMBench's question; a benchmark whose items are independent has none)."""

    arm: str
    seed: Seed
    answers: dict[str, list[str]]
    scores: dict[str, list[float]] | None
    groups: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Collapse:
    """A run of an arm that answered every item of a benchmark the same way."""

    arm: str
    seed: Seed
    benchmark: str
    answer: str
    items: int


def read_answers(runs: Iterable[tuple[str, Seed, Path]]) -> list[RunAnswers]:
    """The answers of each run (arm, seed, path of its `.predictions.jsonl`), in the order given; a run whose file
    is missing or unreadable is left out (the loss-curve warning names runs without their files)."""
    found = []
    for arm, seed, path in runs:
        try:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, ValueError):
            continue
        answers: dict[str, list[str]] = {}
        scores: dict[str, list[float]] = {}
        groups: dict[str, list[tuple[str, ...]]] = {}
        scored = True
        for row in rows:
            if not isinstance(row, dict) or not isinstance(row.get("task"), str):
                continue
            answers.setdefault(row["task"], []).append(str(row.get("prediction")))
            if isinstance(group := row.get("group"), list) and group:
                groups.setdefault(row["task"], []).append(tuple(str(part) for part in group))
            score = row.get("score")
            scored = scored and isinstance(score, (int, float)) and not isinstance(score, bool)
            if scored:
                scores.setdefault(row["task"], []).append(float(score))
        found.append(RunAnswers(arm, seed, answers, scores if scored else None,
                                {task: keys for task, keys in groups.items() if len(keys) == len(answers[task])}))
    return found


def collapsed(runs: list[RunAnswers], benchmarks: list[str]) -> list[Collapse]:
    """The runs that gave one answer to every item (more than one) of one of `benchmarks`."""
    found = []
    for run in runs:
        for benchmark in benchmarks:
            answers = run.answers.get(benchmark, [])
            if len(answers) > 1 and len(set(answers)) == 1:
                found.append(Collapse(run.arm, run.seed, benchmark, answers[0], len(answers)))
    return found


def collapse_lines(found: list[Collapse]) -> list[str]:
    """`- <arm> seed <s>: <benchmark> ('<answer>' to all N items), ...`, one line per run."""
    by_run: dict[tuple[str, str], list[str]] = {}
    for c in found:
        by_run.setdefault((c.arm, str(c.seed)), []).append(f"{c.benchmark} ('{c.answer}' to all {c.items} items)")
    return [f"- {arm} seed {seed}: {', '.join(parts)}" for (arm, seed), parts in by_run.items()]
