"""Evaluation: batched greedy generation on a held-out split, each task scored with its benchmark's metric."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
import random
from dataclasses import dataclass, replace

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.eval.metrics import task_score
from vlmlab.eval.task_score import Group, TaskScore
from vlmlab.models.vlm import VisionLanguageModel


@dataclass
class EvalResult:
    """Scores per task as papers report them (percent; CIDEr x100; MME points), and the predictions behind them."""

    scores: dict[str, float]
    predictions: list[dict[str, str | float]]
    samples: int
    generated_tokens: float = 0.0  # mean new tokens per sample, up to and including its end of sequence


def limit_per_task(examples: list[Example], limit: int | None) -> list[Example]:
    """The first `limit` examples of each task, in order (all of them when `limit` is None), and the rest of the
    group of the last one kept: a group metric (an MME image's question pair, an MMBench question's rotations)
    scores whole groups only."""
    seen: dict[str, int] = defaultdict(int)
    last_group: dict[str, tuple[str, ...]] = {}
    kept = []
    for ex in examples:
        if limit is None or seen[ex.task] < limit or (ex.group and ex.group == last_group.get(ex.task)):
            seen[ex.task] += 1
            last_group[ex.task] = ex.group
            kept.append(ex)
    return kept


def with_context(
    examples: list[Example], pool: list[Example], shots: int, seed: int, sources: Mapping[str, str] | None = None,
) -> list[Example]:
    """Each example with `shots` in-context examples of its task drawn from `pool` (the training split).

    `sources` names the training task of an evaluation task called differently (synth_ocr -> ocr). The draw
    depends only on `seed` and the example's position, so every arm sees the same contexts.
    """
    sources = sources or {}
    if shots <= 0:
        return examples
    by_task: dict[str, list[Example]] = defaultdict(list)
    for ex in pool:
        by_task[ex.task].append(ex)
    out = []
    for index, ex in enumerate(examples):
        source = sources.get(ex.task, ex.task)
        candidates = by_task.get(source, [])
        if len(candidates) < shots:
            raise ValueError(f"eval.shots={shots}: the training split has {len(candidates)} examples of {source}")
        rng = random.Random(f"{seed}:{index}")
        out.append(replace(ex, context=tuple(rng.sample(candidates, shots))))
    return out


def generated_lengths(new_tokens: torch.Tensor, eos_token_id: int) -> list[int]:
    """Tokens each row of a generation generated: up to and including its first eos (padding follows it)."""
    is_eos = new_tokens == eos_token_id
    first = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, new_tokens.shape[1])
    return first.tolist()


def truncate_at(text: str, stops: tuple[str, ...]) -> str:
    """`text` cut at the first stop string (a k-shot model may go on to write the next question)."""
    cut = min((i for i in (text.find(stop) for stop in stops) if i >= 0), default=len(text))
    return text[:cut].strip()


def item_scores(task_metric: str, predictions: list[str], references: list[tuple[str, ...]],
                groups: Sequence[Group] | None = None) -> list[float]:
    """Each answer's share of its task's score (their mean is the score; vlmlab.eval.task_score): what the tables'
    item-level tests pair across arms."""
    return task_score(task_metric, predictions, references, groups).items


def score(task_metric: str, predictions: list[str], references: list[tuple[str, ...]],
          groups: Sequence[Group] | None = None) -> float:
    """One task's score as its benchmark reports it (percent; CIDEr x100; MME points)."""
    return task_score(task_metric, predictions, references, groups).score


def score_tasks(metrics: Mapping[str, str], examples: Sequence[Example],
                predictions: Sequence[str]) -> dict[str, TaskScore]:
    """Each task's score and item scores (in the order of its examples), from one prediction per example."""
    by_task: dict[str, tuple[list[str], list[tuple[str, ...]], list[Group]]] = defaultdict(lambda: ([], [], []))
    for ex, text in zip(examples, predictions, strict=True):
        answers, references, groups = by_task[ex.task]
        answers.append(text)
        references.append(ex.references)
        groups.append(ex.group)
    return {task: task_score(metrics[task], *columns) for task, columns in sorted(by_task.items())}


@torch.no_grad()
def evaluate(
    model: VisionLanguageModel, collator: VLMCollator, examples: list[Example], batch_size: int, max_new_tokens: int,
    metrics: Mapping[str, str],
) -> EvalResult:
    """Greedy answers for `examples`, each task scored with `metrics[task]` (a name from vlmlab.eval.metrics)."""
    # Stop where the template's next turn would begin, and at a line break.
    stops = ("\n", *sorted(collator.turn_prefixes()))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device  # batches go where the model is (a GPU after GPU training)
    tokenizer = collator.tokenizer
    texts: list[str] = []
    lengths: list[int] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        new_tokens = model.generate(
            **move_data_to_device(collator.generation_batch(chunk), device), max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        lengths += generated_lengths(new_tokens, tokenizer.eos_token_id)
        texts += [truncate_at(text, stops) for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    model.train(was_training)
    scored = score_tasks(metrics, examples, texts)
    return EvalResult(scores={task: result.score for task, result in scored.items()},
                      predictions=answer_rows(examples, texts, scored), samples=len(examples),
                      generated_tokens=sum(lengths) / max(1, len(lengths)))


def answer_rows(examples: Sequence[Example], texts: Sequence[str], scored: Mapping[str, TaskScore]) -> list[dict]:
    """The rows a run saves as its `.predictions.jsonl`: each answer with its item score, in the order of the
    examples, and its group key where its benchmark scores items together (the tables' bootstrap draws a group
    as one)."""
    per_item = {task: iter(result.items) for task, result in scored.items()}  # each task's items in turn
    rows = []
    for ex, text in zip(examples, texts, strict=True):
        row = {"task": ex.task, "prompt": ex.prompt, "answer": ex.answer, "prediction": text}
        if ex.group:
            row["group"] = list(ex.group)
        rows.append(row | {"score": round(next(per_item[ex.task]), 4)})
    return rows
