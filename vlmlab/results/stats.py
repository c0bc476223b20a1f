"""Statistics over seeds: mean, sample std, Student-t confidence intervals and paired t-tests.

Pure functions on plain numbers, with no scipy: the Student t distribution is computed from the
regularised incomplete beta function, evaluated by its continued fraction (modified Lentz), which
is exact to a few units in the last place for the small degrees of freedom a sweep has (seeds − 1).
``tests/test_stats.py`` checks every function here against scipy.

A seed is the unit of replication: an arm's score is one number per seed, its spread is the sample
std over seeds, and two arms are compared on the seeds both finished (a paired design: seed s of
the arm and seed s of the control share their data order and initialisation).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

NAN = float("nan")
ALPHA = 0.05  # a difference to the control is marked when its paired test gives p < ALPHA
_EPS = 1e-16  # relative accuracy the continued fraction is taken to
_TINY = 1e-300  # keeps Lentz's denominators off zero
_MAX_TERMS = 100_000


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 ≤ x ≤ 1."""
    return _betainc(a, b, x, 1.0 - x)


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) with y = 1 − x passed separately, so that x near 1 loses no digits."""
    if not (a > 0 and b > 0) or math.isnan(x) or x < 0 or x > 1:
        raise ValueError(f"betainc needs a, b > 0 and 0 <= x <= 1, got a={a}, b={b}, x={x}")
    if x == 0:
        return 0.0
    if y == 0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); else use the symmetry
    # I_x(a, b) = 1 − I_y(b, a).
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, y) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (Numerical Recipes' betacf), by modified Lentz."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _check_df(df: float) -> None:
    """Degrees of freedom must be a positive finite number."""
    if not (df > 0 and math.isfinite(df)):
        raise ValueError(f"degrees of freedom must be positive and finite, got {df}")


def t_two_sided(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's T with `df` degrees of freedom (the two-sided p-value of t)."""
    _check_df(df)
    if math.isnan(t):
        return NAN
    if math.isinf(t):
        return 0.0
    # P(|T| >= |t|) = I_x(df/2, 1/2) with x = df / (df + t²); 1 − x = t² / (df + t²) exactly.
    denom = df + t * t
    return _betainc(df / 2, 0.5, df / denom, t * t / denom)


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's T with `df` degrees of freedom."""
    tail = t_two_sided(t, df) / 2  # P(T >= |t|)
    if math.isnan(tail):
        return NAN
    return tail if t < 0 else 1.0 - tail


def t_pdf(t: float, df: float) -> float:
    """The density of Student's T with `df` degrees of freedom at `t`."""
    _check_df(df)
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's T with `df` degrees of freedom (inverse of t_cdf)."""
    _check_df(df)
    if math.isnan(q) or q < 0 or q > 1:
        raise ValueError(f"a quantile needs 0 <= q <= 1, got {q}")
    if q in (0.0, 1.0):
        return math.copysign(math.inf, q - 0.5)
    if q == 0.5:
        return 0.0
    tail = min(q, 1.0 - q)  # solve P(T >= t) = tail for t > 0, then mirror
    t = _upper_tail_inverse(tail, df)
    return t if q > 0.5 else -t


def _upper_tail_inverse(tail: float, df: float) -> float:
    """The t > 0 with P(T ≥ t) = tail < 1/2: Newton's method kept inside a bisection bracket."""
    def excess(t: float) -> float:
        return t_two_sided(t, df) / 2 - tail  # decreasing in t

    lo, hi = 0.0, 1.0
    while excess(hi) > 0:
        lo, hi = hi, hi * 2
    t = (lo + hi) / 2
    for _ in range(400):
        f = excess(t)
        if f == 0:
            return t
        if f > 0:
            lo = t
        else:
            hi = t
        step = f / t_pdf(t, df)  # d excess / dt = −pdf
        newton = t + step
        t_next = newton if lo < newton < hi else (lo + hi) / 2
        if abs(t_next - t) <= 4e-16 * t_next or hi - lo <= 4e-16 * hi:
            return t_next
        t = t_next
    return t


@dataclass(frozen=True)
class SeedStats:
    """Mean, sample std, count and 95% Student-t confidence interval of one score over seeds."""

    mean: float
    std: float  # sample std (n − 1 in the denominator): NaN below two values
    n: int
    ci_low: float  # NaN below two values: one seed says nothing about spread
    ci_high: float


def describe(values: Sequence[float], confidence: float = 0.95) -> SeedStats:
    """Statistics of the non-NaN entries of `values` (the scores of one arm, one per seed)."""
    kept = [float(v) for v in values if not math.isnan(float(v))]
    n = len(kept)
    if n == 0:
        return SeedStats(NAN, NAN, 0, NAN, NAN)
    mean = math.fsum(kept) / n
    if n == 1:
        return SeedStats(mean, NAN, 1, NAN, NAN)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    half = t_ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return SeedStats(mean, std, n, mean - half, mean + half)


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired t-test of arm − control over the seeds both have a score for."""

    n: int  # number of paired seeds
    mean_diff: float  # mean over those seeds of arm − control
    t: float  # NaN below two pairs, ±inf when every pair differs by the same non-zero amount
    p: float  # NaN below two pairs (no test), and when every difference is zero

    @property
    def zero_spread(self) -> bool:
        """Whether every paired difference was the same non-zero amount (a degenerate test)."""
        return math.isinf(self.t)


def paired_t_test(arm: Sequence[float], control: Sequence[float]) -> PairedTest:
    """Paired t-test of `arm` against `control`, position by position; pairs with a NaN are dropped."""
    if len(arm) != len(control):
        raise ValueError(f"paired samples need equal lengths, got {len(arm)} and {len(control)}")
    diffs = [float(a) - float(c) for a, c in zip(arm, control)
             if not (math.isnan(float(a)) or math.isnan(float(c)))]
    n = len(diffs)
    if n == 0:
        return PairedTest(0, NAN, NAN, NAN)
    mean = math.fsum(diffs) / n
    if n == 1:
        return PairedTest(1, mean, NAN, NAN)
    std = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    if std == 0:  # identical differences: scipy's convention, t = ±inf (p = 0) or 0/0 (NaN)
        t = NAN if mean == 0 else math.copysign(math.inf, mean)
    else:
        t = mean / (std / math.sqrt(n))
    return PairedTest(n, mean, t, t_two_sided(t, n - 1))


def paired_by_seed(arm: Mapping[Hashable, float], control: Mapping[Hashable, float]) -> PairedTest:
    """Paired t-test of two arms' scores keyed by seed, over the seeds both have."""
    seeds = [seed for seed in arm if seed in control]
    return paired_t_test([arm[s] for s in seeds], [control[s] for s in seeds])


def best_flags(means: Sequence[float], rel_tol: float = 1e-9) -> list[bool]:
    """True for every mean equal (within `rel_tol`) to the largest, when at least two are known."""
    known = [m for m in means if not math.isnan(m)]
    if len(known) < 2:
        return [False] * len(means)
    top = max(known)
    return [not math.isnan(m) and math.isclose(m, top, rel_tol=rel_tol, abs_tol=1e-12) for m in means]
