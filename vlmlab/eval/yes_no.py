"""The yes/no benchmarks, scored as their official scripts score them: POPE (F1 of "yes") and MME (acc + acc+).

Each benchmark reads a free-form answer as yes or no by its own rule, reproduced with its quirks, since a score is
only comparable with published ones when answers are read the same way:

- POPE (AoiDragon/POPE `evaluate.py`, copied by LLaVA's `eval_pope.py`): keep the text before the first ".", drop
  commas, split on single spaces; "no" if a word is exactly "No", "no" or "not", else "yes" (so "NO" and "Not" read
  as yes, and an empty answer too).
- MME (its `eval_tool/calculation.py`): lower-case; "yes"/"no" as is; else "yes" if its first four characters hold
  "yes", "no" if they hold "no" (so "not sure" reads as no), else "other", which is wrong whatever the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlmlab.eval.task_score import Group, TaskScore, from_contributions, members

_POPE_NO_WORDS = frozenset({"No", "no", "not"})


def pope_answer(prediction: str) -> str:
    """"yes" or "no", as POPE's evaluation script reads a free-form answer."""
    first_sentence = prediction.split(".")[0]
    return "no" if _POPE_NO_WORDS & set(first_sentence.replace(",", "").split(" ")) else "yes"


def _pope_label(references: Sequence[str]) -> str:
    label = references[0].strip().lower()
    if label not in ("yes", "no"):
        raise ValueError(f"a POPE reference is 'yes' or 'no', not {references[0]!r}")
    return label


@dataclass(frozen=True)
class PopeCounts:
    """POPE's confusion matrix, "yes" (the object is there) being the positive class, and what the script prints."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0  # the script divides by zero here

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float:
        return (self.tp + self.fp) / self.total


def pope_counts(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> PopeCounts:
    """The confusion matrix of POPE answers against their "yes"/"no" labels."""
    pairs = [(pope_answer(p) == "yes", _pope_label(r) == "yes") for p, r in zip(predictions, references, strict=True)]
    return PopeCounts(tp=sum(said and true for said, true in pairs), fp=sum(said and not true for said, true in pairs),
                      tn=sum(not said and not true for said, true in pairs),
                      fn=sum(not said and true for said, true in pairs))


def pope_accuracy(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the answer, read by POPE's rule, is its label."""
    return float(pope_answer(prediction) == _pope_label(references))


def pope_f1(predictions: Sequence[str], references: Sequence[Sequence[str]], groups: Sequence[Group]) -> TaskScore:
    """POPE's F1 in percent, and each answer's share: F1 linearised at the task's counts (its influence), so that
    a false "yes" costs an item points and the shares' mean is F1 exactly.

    With F1 = 2TP / D, D = 2TP + FP + FN = (#labelled yes) + (#said yes), item i's share is
    F1 + n (2 tp_i - F1 (yes_i + said_i)) / D; summed over the n items the bracket is 2TP - F1 D = 0."""
    counts = pope_counts(predictions, references)
    n, f1 = counts.total, counts.f1
    denominator = 2 * counts.tp + counts.fp + counts.fn
    if denominator == 0:  # no "yes" anywhere: F1 is 0, and so is every share
        return TaskScore(0.0, [0.0] * n)
    items = []
    for prediction, refs in zip(predictions, references):
        said, true = pope_answer(prediction) == "yes", _pope_label(refs) == "yes"
        items.append(100.0 * (f1 + n * (2 * (said and true) - f1 * (said + true)) / denominator))
    return TaskScore(100.0 * f1, items)


def mme_answer(prediction: str) -> str:
    """"yes", "no" or "other", as MME's calculation script reads a free-form answer."""
    text = prediction.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    return "yes" if "yes" in prefix else "no" if "no" in prefix else "other"


def mme_score(predictions: Sequence[str], references: Sequence[Sequence[str]], groups: Sequence[Group]) -> TaskScore:
    """MME's score: over the subtasks present, the sum of 100 acc + 100 acc+ (acc over questions, acc+ over images
    whose questions are all right). `groups[i]` is (subtask, image) of item i.

    Each item's share is n times its contribution: 100 / (questions of its subtask) if right, plus, where its image
    is all right, 100 / (images of its subtask) split over the image's questions."""
    if any(len(group) != 2 for group in groups):
        raise ValueError("MME scores need each item's group key to be (subtask, image)")
    right = [mme_answer(p) == _pope_label(r) for p, r in zip(predictions, references, strict=True)]
    images = members(groups)
    questions_of: dict[str, int] = {}
    images_of: dict[str, int] = {}
    for (subtask, _), positions in images.items():
        questions_of[subtask] = questions_of.get(subtask, 0) + len(positions)
        images_of[subtask] = images_of.get(subtask, 0) + 1
    contributions = [0.0] * len(right)
    for (subtask, _), positions in images.items():
        all_right = all(right[i] for i in positions)
        for i in positions:
            contributions[i] = 100.0 * (right[i] / questions_of[subtask]
                                        + all_right / (images_of[subtask] * len(positions)))
    return from_contributions(contributions)
