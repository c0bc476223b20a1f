"""Evaluation: batched greedy generation on a held-out split, each task scored with its benchmark's metric."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.eval.metrics import cider_d, metric
from vlmlab.models.vlm import VisionLanguageModel


@dataclass
class EvalResult:
    """Scores per task (percent; CIDEr x100 as papers report it), and the predictions behind them."""

    scores: dict[str, float]
    predictions: list[dict[str, str]]
    samples: int


def limit_per_task(examples: list[Example], limit: int | None) -> list[Example]:
    """The first `limit` examples of each task, in order (all of them when `limit` is None)."""
    seen: dict[str, int] = defaultdict(int)
    kept = []
    for ex in examples:
        if limit is None or seen[ex.task] < limit:
            seen[ex.task] += 1
            kept.append(ex)
    return kept


def score(task_metric: str, predictions: list[str], references: list[tuple[str, ...]]) -> float:
    """One task's score in percent: the mean per-sample metric, or corpus-level CIDEr-D."""
    if task_metric == "cider":  # CIDEr's idf comes from the whole corpus of references: not a per-sample mean
        return 100.0 * cider_d(predictions, references)[0]
    scorer = metric(task_metric)
    return 100.0 * sum(scorer(p, r) for p, r in zip(predictions, references)) / len(predictions)


@torch.no_grad()
def evaluate(
    model: VisionLanguageModel, collator: VLMCollator, examples: list[Example], batch_size: int, max_new_tokens: int,
    metrics: Mapping[str, str],
) -> EvalResult:
    """Greedy answers for `examples`, each task scored with `metrics[task]` (a name from vlmlab.eval.metrics)."""
    was_training = model.training
    model.eval()
    tokenizer = collator.tokenizer
    by_task: dict[str, tuple[list[str], list[tuple[str, ...]]]] = defaultdict(lambda: ([], []))
    predictions = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        new_tokens = model.generate(
            **collator.generation_batch(chunk), max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        for ex, text in zip(chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            by_task[ex.task][0].append(text.strip())
            by_task[ex.task][1].append(ex.references)
            predictions.append({"task": ex.task, "prompt": ex.prompt, "answer": ex.answer, "prediction": text.strip()})
    model.train(was_training)
    scores = {task: score(metrics[task], preds, refs) for task, (preds, refs) in sorted(by_task.items())}
    return EvalResult(scores=scores, predictions=predictions, samples=len(examples))
