"""Multiple-choice benchmarks, scored as their own evaluations read an answer: MMBench (circular) and ScienceQA.

A multiple-choice item's references are `[right letter, option A, option B, ...]` (vlmlab.data.multiple_choice).

- MMBench's exact-matching stage (VLMEvalKit `vlmeval/utils/matching_util.py`, `can_infer`, as it stood through
  2024, before its August 2025 change): replace each of `.()[],:;!*#{}` by a space and split on whitespace; if
  exactly one word is an option's letter (upper case, as written), that option; else, if exactly one option's text
  is inside the lower-cased answer, that option; else no option, which is wrong (vlmlab has no GPT judge for the
  answers this rule cannot read, as VLMEvalKit has none when run with exact matching). So "(B) cat" is B and a
  lone "b" is no option. The "Z" that VLMEvalKit gives refusals is left out: it is wrong either way.
- CircularEval (MMBench's paper; VLMEvalKit `eval_circular`): a question counts right only if every circular
  shift of its options is answered right.
- ScienceQA as LLaVA's `llava/eval/eval_science_qa.py` reads it: newlines become ". "; the answer is a letter A-E
  alone, or starts with "X. ", or says "The answer is X"; anything else ("(B)", "b") fails.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

from vlmlab.eval.task_score import Group, TaskScore, from_contributions, members

LETTERS = string.ascii_uppercase
_MMBENCH_SEPARATORS = re.compile(r"[.()\[\],:;!*#{}]")
_SCIENCEQA_LETTERS = ("A", "B", "C", "D", "E")  # LLaVA's `--options`
_THE_ANSWER_IS = (re.compile(r"The answer is ([A-E])\."), re.compile(r"The answer is ([A-E])"))


def _options(references: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The right letter and the {letter: option text} of a multiple-choice item's references."""
    if len(references) < 3:
        raise ValueError("a multiple-choice item's references are [right letter, option A, option B, ...]")
    return references[0], dict(zip(LETTERS, references[1:]))


def mmbench_option(prediction: str, options: Mapping[str, str]) -> str | None:
    """The option letter MMBench's exact matching reads in an answer, or None where it reads none."""
    words = _MMBENCH_SEPARATORS.sub(" ", prediction).split()
    letters = [letter for letter in options if letter in words]
    if len(letters) == 1:
        return letters[0]
    answer = prediction.lower()
    named = [letter for letter, text in options.items() if text.lower() in answer]
    return named[0] if len(named) == 1 else None


def circular_accuracy(predictions: Sequence[str], references: Sequence[Sequence[str]],
                      groups: Sequence[Group]) -> TaskScore:
    """MMBench's circular accuracy in percent: the share of questions (items sharing a group key: a question's
    circular shifts) whose every shift is read as its right option. A question of N shifts right in N - 1 scores 0.

    Each shift's share is its question's 100 / (questions), split over the question's shifts, times n."""
    right = []
    for prediction, refs in zip(predictions, references, strict=True):
        letter, options = _options(refs)
        right.append(mmbench_option(prediction, options) == letter)
    questions = members(groups)
    contributions = [0.0] * len(right)
    for positions in questions.values():
        all_right = all(right[i] for i in positions)
        for i in positions:
            contributions[i] = 100.0 * all_right / (len(questions) * len(positions))
    return from_contributions(contributions)


def scienceqa_option(prediction: str, n_options: int) -> int | None:
    """The option index LLaVA's ScienceQA evaluation reads in an answer, or None where it reads none."""
    text = prediction.replace("\n", ". ")
    letter = None
    if text.strip() in _SCIENCEQA_LETTERS:
        letter = text.strip()
    elif len(text) >= 3 and text[0] in _SCIENCEQA_LETTERS and text[1:3] == ". ":
        letter = text[0]
    else:
        found = next((m for m in (p.search(text) for p in _THE_ANSWER_IS) if m is not None), None)
        letter = found.group(1) if found is not None else None
    index = LETTERS.index(letter) if letter is not None else n_options
    return index if index < n_options else None


def scienceqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """1.0 when LLaVA's ScienceQA rule reads the right option in the answer."""
    letter, options = _options(references)
    return float(scienceqa_option(prediction, len(options)) == LETTERS.index(letter))
