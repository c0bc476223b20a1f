"""Scoring functions, computed as the benchmarks' official scorers compute them.

Per-sample metrics take a prediction and its references and return a score in [0, 1]; `METRICS` maps their
names to them under one signature, `(prediction, references) -> float`, and `metric(name)` looks one up.
CIDEr-D is corpus-level (its idf comes from the whole corpus), so it is not in `METRICS`: call `cider_d`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from vlmlab.eval.cider import caption_tokenise, cider_d
from vlmlab.eval.vqa import vqa_accuracy, vqa_normalise

__all__ = [
    "METRICS", "anls", "caption_tokenise", "cider_d", "exact_match", "levenshtein", "metric",
    "multiple_choice", "multiple_choice_accuracy", "normalise", "vqa_accuracy", "vqa_normalise",
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


# Per-sample metrics by name, all with the signature (prediction, references) -> float in [0, 1].
METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "exact_match": exact_match,
    "vqa_accuracy": vqa_accuracy,
    "anls": anls,
    "multiple_choice": multiple_choice,
}


# How a table's header names each metric, as papers print it (CIDEr is corpus-level: vlmlab.eval.cider).
METRIC_LABELS: dict[str, str] = {
    "exact_match": "EM",
    "vqa_accuracy": "VQA acc.",
    "anls": "ANLS",
    "multiple_choice": "MC acc.",
    "cider": "CIDEr",
}


def metric(name: str) -> Callable[[str, Sequence[str]], float]:
    """The per-sample metric called `name`; KeyError naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        hint = " (CIDEr is corpus-level: use cider_d)" if "cider" in name.lower() else ""
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(sorted(METRICS))}{hint}") from None
