"""Corrections for multiple comparisons: a table tests every arm against the control on every benchmark, and with
fifteen tests at p < 0.05 about one mark per table is expected from noise alone.

Each correction turns the family's p-values into adjusted p-values (a test is marked where its adjusted p is below
the level), so the tables can print both. Untested comparisons (NaN) are not part of the family.
``tests/test_corrections.py`` checks both against statsmodels' ``multipletests``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


def _tested(pvalues: Sequence[float]) -> list[int]:
    """Positions of the p-values that come from a test (not NaN)."""
    return [i for i, p in enumerate(pvalues) if not math.isnan(p)]


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error rate): the k-th smallest of m is multiplied by
    m − k + 1, made monotone from the smallest up, and capped at 1."""
    adjusted = [math.nan] * len(pvalues)
    order = sorted(_tested(pvalues), key=lambda i: pvalues[i])
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate): the k-th smallest of m is multiplied by m / k,
    made monotone from the largest down, and capped at 1."""
    adjusted = [math.nan] * len(pvalues)
    order = sorted(_tested(pvalues), key=lambda i: pvalues[i])
    m, running = len(order), 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, m / (rank + 1) * pvalues[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def unadjusted(pvalues: Sequence[float]) -> list[float]:
    """The p-values as they are: each test on its own."""
    return [float(p) for p in pvalues]


@dataclass(frozen=True)
class Correction:
    """A correction by name: how it adjusts and how a caption names it."""

    adjust: Callable[[Sequence[float]], list[float]]
    name: str  # as the caption names it
    controls: str  # what it keeps at the level


CORRECTIONS: dict[str, Correction] = {
    "holm": Correction(holm, "Holm–Bonferroni", "the family-wise error rate"),
    "benjamini_hochberg": Correction(benjamini_hochberg, "Benjamini–Hochberg", "the false discovery rate"),
    "none": Correction(unadjusted, "no", "each test's error rate alone"),
}
