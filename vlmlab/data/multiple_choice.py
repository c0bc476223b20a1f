"""Multiple-choice rows: the options lettered in the prompt, and MMBench's circular shifts of them.

A multiple-choice sample's references are `[the right letter, option A, option B, ...]`, so that a scorer
(vlmlab.eval.choices) can read an answer by its letter or by an option's text, as the benchmarks' own parsers do.
The prompt is the evaluation prompt of LLaVA and lmms-eval: an optional hint, the question, one `X. text` line per
option, then the spec's instruction.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vlmlab.data.row_errors import BadRow

LETTERS = string.ascii_uppercase


def is_blank(cell: Any) -> bool:
    """Whether a cell holds no text: None, NaN, "" or "nan" (MMBench's tsv-born way of writing a missing option)."""
    if cell is None or isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and cell.strip().lower() in ("", "nan")


@dataclass(frozen=True)
class Circular:
    """MMBench's CircularEval: a question with N options is asked N times, its options shifted circularly by 0..N-1,
    and counts as right only if every asking is answered right (vlmlab.eval.choices.circular_accuracy).

    The shifts are made here from each question's row. MMBench's own files already hold shifted copies, copy k of
    question i under the id i + k * 1e6: rows whose id is at or above `copies_from` are dropped, so that no question
    is asked twice over."""

    copies_from: int | None = 1_000_000

    def is_copy(self, row_id: Any) -> bool:
        """Whether `row_id` names one of the dataset's own shifted copies."""
        try:
            return self.copies_from is not None and int(row_id) >= self.copies_from
        except (TypeError, ValueError):  # an id that is no number has no copies
            return False


@dataclass(frozen=True, kw_only=True)
class Choices:
    """Where a row keeps its options (one column per option, as MMBench's A-D; or one list column, as ScienceQA's
    `choices`), an optional hint shown before the question, and whether the options are asked in every circular
    shift. The answer cell holds the right option's letter ("B") or its index (1)."""

    option_columns: tuple[str, ...] = ()
    list_column: str | None = None
    hint_column: str | None = None
    hint_format: str = "{hint}\n"         # "Context: {hint}\n" for ScienceQA, as lmms-eval writes it
    circular: Circular | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "option_columns", tuple(self.option_columns))
        if bool(self.option_columns) == (self.list_column is not None):
            raise ValueError("multiple choice: give exactly one of option_columns and list_column")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the options and the hint are read from."""
        return tuple(c for c in (*self.option_columns, self.list_column, self.hint_column) if c is not None)

    def options(self, row: Mapping[str, Any]) -> list[str]:
        """The row's option texts in letter order; with one column per option they end at the first blank one."""
        cells = list(row[self.list_column] or []) if self.list_column is not None else \
            [row[column] for column in self.option_columns]
        options = []
        for cell in cells:
            if is_blank(cell):
                break
            options.append(str(cell))
        if len(options) < 2:
            raise BadRow("no_options", f"{len(options)} option(s) where a multiple-choice question needs two or more")
        return options

    def pairs(self, row: Mapping[str, Any], question: str, answer: Any,
              instruction: str) -> list[tuple[str, list[str]]]:
        """The (prompt, references) of each asking of the row's question: one, or one per circular shift."""
        options = self.options(row)
        right = _answer_index(answer, len(options))
        hint = row[self.hint_column] if self.hint_column is not None else None
        head = ("" if is_blank(hint) else self.hint_format.format(hint=hint)) + question
        shifts = range(len(options)) if self.circular is not None else range(1)
        pairs = []
        for shift in shifts:
            shown = options[shift:] + options[:shift]
            lines = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(shown))
            pairs.append((f"{head}\n{lines}{instruction}", [LETTERS[(right - shift) % len(options)], *shown]))
        return pairs


def _answer_index(answer: Any, n_options: int) -> int:
    """The index of the right option from an answer cell holding its index or its letter; BadRow otherwise."""
    if is_blank(answer):
        raise BadRow("no_answers", "the answer cell is empty")  # MMBench's test split keeps its answers secret
    if isinstance(answer, int) and not isinstance(answer, bool):
        index = answer
    elif isinstance(answer, str) and len(answer.strip()) == 1 and answer.strip().upper() in LETTERS:
        index = LETTERS.index(answer.strip().upper())
    else:
        raise BadRow("bad_answer", f"answer {answer!r} is neither an option letter nor an option index")
    if not 0 <= index < n_options:
        raise BadRow("bad_answer", f"answer {answer!r} is outside the {n_options} options")
    return index
