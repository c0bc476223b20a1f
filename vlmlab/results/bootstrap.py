"""A paired bootstrap over test items and seeds: is an arm's score different from the control's?

The seed-level t-test has one degree of freedom at two seeds. The items say much more: each seed of an arm and
the same seed of the control answer the same test items, so their per-item score differences (saved beside each
record) are paired. The statistic is the mean over seeds of the mean item difference, which is Δ. It is
resampled by drawing items with replacement within each seed (stratified by seed, the same draw for both arms,
which keeps the pairing). The generator's seed is fixed, so the same records always give the same numbers.

The two-sided p is the bootstrap's share of resampled Δ on the far side of 0 (twice the smaller tail, plus one
in numerator and denominator so that it is never 0). The 95% interval is the percentile interval. The smallest
difference the design detects with 80% power at α = 0.05 is (z₀.₉₇₅ + z₀.₈) times the bootstrap standard error:
what "no mark" can and cannot mean.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
SEED = 0
Z_975, Z_80 = 1.959963984540054, 0.8416212335729143  # standard normal quantiles


@dataclass(frozen=True)
class BootstrapTest:
    """Δ over the paired seeds and items, its 95% percentile interval, two-sided p and standard error."""

    seeds: int
    items: int  # over all the paired seeds
    delta: float
    low: float
    high: float
    p: float
    se: float

    @property
    def detectable(self) -> float:
        """The smallest |Δ| this many seeds and items detect with 80% power at α = 0.05 (normal approximation)."""
        return (Z_975 + Z_80) * self.se


def paired_bootstrap(arm: Mapping[Hashable, Sequence[float]], control: Mapping[Hashable, Sequence[float]],
                     resamples: int = RESAMPLES, seed: int = SEED) -> BootstrapTest | None:
    """The paired bootstrap of `arm` − `control` over the seeds both have with the same number of items (their
    per-item scores in item order); None when no seed pairs."""
    paired = [np.asarray(arm[s], dtype=float) - np.asarray(control[s], dtype=float)
              for s in sorted(arm, key=repr) if s in control and len(arm[s]) == len(control[s]) and len(arm[s])]
    if not paired:
        return None
    rng = np.random.Generator(np.random.PCG64(seed))
    delta = float(np.mean([d.mean() for d in paired]))
    # One (resamples x items) draw per seed: the same items for the arm and the control, since d pairs them.
    draws = np.mean([d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1) for d in paired], axis=0)
    low, high = np.percentile(draws, [2.5, 97.5])
    below, above = int(np.sum(draws <= 0)), int(np.sum(draws >= 0))
    p = min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))
    return BootstrapTest(len(paired), sum(len(d) for d in paired), delta, float(low), float(high), p,
                         float(np.std(draws, ddof=1)))
