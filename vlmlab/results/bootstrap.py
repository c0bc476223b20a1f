"""A paired bootstrap over test items and seeds: is an arm's score different from the control's?

The seed-level t-test has one degree of freedom at two seeds. The items say much more: each seed of an arm and
the same seed of the control answer the same test items, so their per-item score differences (saved beside each
record) are paired. The statistic is the mean over seeds of the mean item difference, which is Δ. It is
resampled by drawing items with replacement within each seed (stratified by seed, the same draw for both arms,
which keeps the pairing). The generator's seed is fixed, so the same records always give the same numbers.

Items that a benchmark scores together are not independent: MMBench's rotations of one question pass or fail as
one, MME's two questions about an image are counted as a pair. Where the answers name such groups, whole groups
are drawn (a cluster bootstrap) and Δ is the ratio of the drawn groups' summed differences to their item count;
with every group a single item this is the item bootstrap above, draw for draw.

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
                     resamples: int = RESAMPLES, seed: int = SEED,
                     groups: Mapping[Hashable, Sequence[Hashable]] | None = None) -> BootstrapTest | None:
    """The paired bootstrap of `arm` − `control` over the seeds both have with the same number of items (their
    per-item scores in item order); None when no seed pairs. `groups` gives, per seed, each item's group key (items
    drawn together); a seed without them draws single items."""
    seeds = [s for s in sorted(arm, key=repr) if s in control and len(arm[s]) == len(control[s]) and len(arm[s])]
    if not seeds:
        return None
    rng = np.random.Generator(np.random.PCG64(seed))
    paired = [np.asarray(arm[s], dtype=float) - np.asarray(control[s], dtype=float) for s in seeds]
    delta = float(np.mean([d.mean() for d in paired]))
    draws = np.mean([_resampled_means(d, _clusters(d, (groups or {}).get(s)), rng, resamples)
                     for s, d in zip(seeds, paired)], axis=0)
    low, high = np.percentile(draws, [2.5, 97.5])
    below, above = int(np.sum(draws <= 0)), int(np.sum(draws >= 0))
    p = min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))
    return BootstrapTest(len(paired), sum(len(d) for d in paired), delta, float(low), float(high), p,
                         float(np.std(draws, ddof=1)))


def _clusters(differences: np.ndarray, keys: Sequence[Hashable] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each group's summed difference and item count, groups in order of first appearance; one group per item
    without keys (or with keys that do not match the items)."""
    if keys is None or len(keys) != len(differences):
        return differences, np.ones(len(differences))
    index: dict[Hashable, int] = {}
    positions = np.array([index.setdefault(key, len(index)) for key in keys])
    sums = np.bincount(positions, weights=differences, minlength=len(index))
    return sums, np.bincount(positions, minlength=len(index)).astype(float)


def _resampled_means(differences: np.ndarray, clusters: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                     resamples: int) -> np.ndarray:
    """`resamples` bootstrap means of one seed's item differences, drawing whole groups with replacement."""
    sums, sizes = clusters
    drawn = rng.integers(0, len(sums), size=(resamples, len(sums)))  # the same draw for both arms: d pairs them
    if len(sums) == len(differences):  # single items: the plain mean (the ratio below, without its rounding)
        return differences[drawn].mean(axis=1)
    return sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1)
