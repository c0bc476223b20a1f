"""Evaluation: batched greedy generation on a held-out split, scored per task."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.eval.metrics import exact_match
from vlmlab.models.vlm import VisionLanguageModel


@dataclass
class EvalResult:
    """Scores per task in percent, and the predictions behind them."""

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


@torch.no_grad()
def evaluate(
    model: VisionLanguageModel, collator: VLMCollator, examples: list[Example], batch_size: int, max_new_tokens: int
) -> EvalResult:
    """Greedy answers for `examples`, scored by exact match after normalising case and whitespace."""
    was_training = model.training
    model.eval()
    tokenizer = collator.tokenizer
    per_task: dict[str, list[float]] = defaultdict(list)
    predictions = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = collator.generation_batch(chunk)
        new_tokens = model.generate(
            **batch, max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        for ex, text in zip(chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            per_task[ex.task].append(exact_match(text, [ex.answer]))
            predictions.append({"task": ex.task, "prompt": ex.prompt, "answer": ex.answer, "prediction": text.strip()})
    model.train(was_training)
    scores = {task: 100.0 * sum(v) / len(v) for task, v in sorted(per_task.items())}
    return EvalResult(scores=scores, predictions=predictions, samples=len(examples))
