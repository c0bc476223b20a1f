"""Scoring functions: each takes a prediction and its reference answers and returns a score in [0, 1]."""

from __future__ import annotations

import re
from collections.abc import Sequence

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower case with runs of whitespace collapsed and the ends stripped."""
    return _WHITESPACE.sub(" ", text).strip().lower()


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0."""
    pred = normalise(prediction)
    return float(any(pred == normalise(ref) for ref in references))
