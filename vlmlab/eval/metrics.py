"""Scoring functions, computed as the benchmarks' official scorers compute them.

Per-sample metrics take a prediction and its references and return a score in [0, 1]; `METRICS` maps their
names to them under one signature, `(prediction, references) -> float`, and `metric(name)` looks one up.

A task is scored by `task_score(name, predictions, references, groups)`, whatever its metric: `TASK_SCORERS` holds
one `TaskScorer` (vlmlab.eval.task_score) per name, the mean of each per-sample metric, and the metrics that are no
per-sample mean: CIDEr-D (its idf comes from the whole corpus), POPE's F1 (from the task's confusion matrix), MME's
score (per-subtask accuracies over questions and over image pairs, summed) and MMBench's circular accuracy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from vlmlab.eval.choices import circular_accuracy, scienceqa_accuracy
from vlmlab.eval.cider import caption_tokenise, cider_d
from vlmlab.eval.task_score import Group, TaskScore, TaskScorer
from vlmlab.eval.vqa import vqa_accuracy, vqa_normalise
from vlmlab.eval.yes_no import mme_score, pope_accuracy, pope_f1

__all__ = [
    "METRICS", "TASK_SCORERS", "TaskScore", "anls", "caption_tokenise", "cider_d", "exact_match", "gqa_accuracy",
    "gqa_normalise", "levenshtein", "metric", "multiple_choice", "multiple_choice_accuracy", "normalise",
    "task_score", "vqa_accuracy", "vqa_normalise",
]

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case with runs of whitespace collapsed and the ends stripped."""
    return _WHITESPACE.sub(" ", text).strip().lower()


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0."""
    pred = normalise(prediction)
    return float(any(pred == normalise(ref) for ref in references))


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a  # keep the row as short as the shorter string
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """DocVQA's ANLS for one question: the best 1 - normalised edit distance, or 0 below `threshold`."""
    if isinstance(answers, str) or not answers:
        raise ValueError("anls needs a non-empty sequence of answers")
    # As the official DocVQA (RRC) script: distances on lower-cased, whitespace-collapsed strings, but the
    # length divided by is that of the *raw* strings (its `len(s.upper())`), and a similarity equal to the
    # threshold is kept (it zeroes only `1 - NL < threshold`), so NL = 0.5 scores 0.5, not 0.
    pred = " ".join(prediction.strip().lower().split())
    distances = []
    for answer in answers:
        length = max(len(answer.upper()), len(prediction.upper()))
        gt = " ".join(answer.strip().lower().split())
        distances.append(0.0 if length == 0 else levenshtein(gt, pred) / length)
    similarity = 1.0 - min(distances)
    return similarity if similarity >= threshold else 0.0


# An option letter alone or leading the answer: "B", "(B)", "B.", "B)", "B:", "B. the text".
_OPTION_LETTER = re.compile(r"^\(?([a-z])(?:[.):]|\s*$)")


def _option_text(text: str) -> str:
    """Option text compared case- and whitespace-insensitively, ignoring trailing full stops."""
    return normalise(text).rstrip(". ")


def _letter_index(text: str, n_choices: int) -> int | None:
    """The option index a lone letter ("b", "(b)", "b.") stands for, or None if it is no valid letter."""
    found = _OPTION_LETTER.match(normalise(text))
    if found is None:
        return None
    index = ord(found.group(1)) - ord("a")
    return index if index < n_choices else None


def multiple_choice_accuracy(prediction: str, choices: Sequence[str], answer_index: int) -> float:
    """1.0 when the prediction names the right option, by its letter (A, B, ...) or by its text, else 0.0."""
    if not 0 <= answer_index < len(choices):
        raise ValueError(f"answer_index {answer_index} outside the {len(choices)} choices")
    # A letter wins over text: "B. red" picks option B whatever B says.
    picked = _letter_index(prediction, len(choices))
    if picked is not None:
        return float(picked == answer_index)
    return float(_option_text(prediction) == _option_text(choices[answer_index]))


def multiple_choice(prediction: str, references: Sequence[str]) -> float:
    """Multiple choice under the registry signature: references = [correct option, *options in order]."""
    # The correct option may be given by its text or by its letter ("B"), as datasets store either.
    if len(references) < 2:
        raise ValueError("multiple_choice needs references = [correct option, *options]")
    correct, choices = references[0], list(references[1:])
    if correct in choices:
        index = choices.index(correct)
    else:
        letter = _letter_index(correct, len(choices))
        if letter is None:
            raise ValueError(f"correct option {correct!r} is neither one of the options nor an option letter")
        index = letter
    return multiple_choice_accuracy(prediction, choices, index)


def gqa_normalise(answer: str) -> str:
    """An answer as LLaVA's GQA pipeline hands it to GQA's official eval.py (`convert_gqa_for_eval.py`): trailing
    full stops dropped, lower case. eval.py then compares strings exactly: no article or punctuation removal."""
    return answer.strip().rstrip(".").lower()


def gqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """GQA's accuracy for one question: 1.0 when the normalised answer is the reference, exactly."""
    return float(any(gqa_normalise(prediction) == reference for reference in references))


# Per-sample metrics by name, all with the signature (prediction, references) -> float in [0, 1].
METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact_match": exact_match,
    "vqa_accuracy": vqa_accuracy,
    "anls": anls,
    "multiple_choice": multiple_choice,
}
# Per-sample rules of one benchmark each, whose references have that benchmark's shape (a yes/no label; the right
# letter and the options): task metrics only, since they score no free-form reference list.
_BENCHMARK_RULES: dict[str, Callable[[str, Sequence[str]], float]] = {
    "pope_accuracy": pope_accuracy,
    "scienceqa_accuracy": scienceqa_accuracy,
    "gqa_accuracy": gqa_accuracy,
}


def _mean_of(scorer: Callable[[str, Sequence[str]], float]) -> TaskScorer:
    """A per-sample metric as a TaskScorer: the mean in percent, each item its own score."""
    def score(predictions: Sequence[str], references: Sequence[Sequence[str]], groups: Sequence[Group]) -> TaskScore:
        items = [100.0 * scorer(p, r) for p, r in zip(predictions, references)]
        return TaskScore(sum(items) / len(items), items)
    return score


def _cider(predictions: Sequence[str], references: Sequence[Sequence[str]], groups: Sequence[Group]) -> TaskScore:
    """Corpus CIDEr-D x100; each image's CIDEr-D within the corpus is its share (their mean is the corpus score)."""
    mean, per_image = cider_d(predictions, references)
    return TaskScore(100.0 * mean, [100.0 * value for value in per_image])


# Every task metric by name: the per-sample means, and those computed over the whole task.
TASK_SCORERS: dict[str, TaskScorer] = {
    **{name: _mean_of(scorer) for name, scorer in {**METRICS, **_BENCHMARK_RULES}.items()},
    "cider": _cider,
    "pope_f1": pope_f1,
    "mme": mme_score,
    "mmbench_circular": circular_accuracy,
}


# How a table's header names each metric, as papers print it.
METRIC_LABELS: dict[str, str] = {
    "exact_match": "EM",
    "vqa_accuracy": "VQA acc.",
    "anls": "ANLS",
    "multiple_choice": "MC acc.",
    "cider": "CIDEr",
    "pope_f1": "F1",
    "pope_accuracy": "acc.",
    "mme": "score",
    "mmbench_circular": "circ. acc.",
    "scienceqa_accuracy": "IMG acc.",
    "gqa_accuracy": "acc.",
}


# Metrics on a points scale rather than percent: MME's sum of acc and acc+ runs to 200 per subtask (2,000 for
# perception). A table's Avg. leaves them out, or one benchmark would outweigh all the others together.
POINTS_METRICS: frozenset[str] = frozenset({"mme"})


def averaged(benchmarks: Sequence[str], metric_of: Mapping[str, str]) -> list[str]:
    """The benchmarks a table's Avg. is the mean of: all but those scored in points (`metric_of`: their metrics)."""
    return [name for name in benchmarks if metric_of.get(name) not in POINTS_METRICS]


def metric(name: str) -> Callable[[str, Sequence[str]], float]:
    """The per-sample metric called `name`; KeyError naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        hint = " (CIDEr is corpus-level: use cider_d or task_score)" if "cider" in name.lower() else \
            " (it is task-level: use task_score)" if name in TASK_SCORERS else ""
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}{hint}") from None


def task_score(name: str, predictions: Sequence[str], references: Sequence[Sequence[str]],
               groups: Sequence[Group] | None = None) -> TaskScore:
    """One task's score and item scores under the metric called `name`; `groups` gives each item's group key (none:
    every item its own group). KeyError naming the known metrics for an unknown name."""
    if name not in TASK_SCORERS:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(TASK_SCORERS))}")
    groups = [()] * len(predictions) if groups is None else [tuple(g) for g in groups]
    if not len(predictions) == len(references) == len(groups):
        raise ValueError(f"{len(predictions)} predictions, {len(references)} reference sets, {len(groups)} groups")
    if not predictions:
        raise ValueError(f"{name}: no predictions to score")
    return TASK_SCORERS[name](predictions, references, groups)
