"""Tests of the statistics over seeds against scipy (a test-only dependency) and closed forms."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

from vlmlab.results.stats import (
    best_flags,
    betainc,
    describe,
    paired_by_seed,
    paired_t_test,
    t_cdf,
    t_pdf,
    t_ppf,
    t_two_sided,
)

DFS = [0.5, 1, 1.5, 2, 3, 4, 5, 7, 9, 10, 19, 30, 100, 1000, 1e5]
TS = [0.0, 1e-6, 0.01, 0.1, 0.5, 1.0, 1.96, 2.5, 3.0, 4.303, 6.0, 12.706, 30.0, 100.0, 1e4]
QS = [1e-10, 1e-6, 1e-3, 0.005, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95, 0.975, 0.995, 0.999999]


@pytest.mark.parametrize("a", [0.5, 1.0, 2.5, 10.0, 250.0])
@pytest.mark.parametrize("b", [0.5, 1.0, 3.0, 40.0])
def test_incomplete_beta_matches_scipy(a: float, b: float) -> None:
    for x in [0.0, 1e-12, 1e-4, 0.05, 0.3, 0.5, 0.77, 0.95, 0.9999, 1.0]:
        assert betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10, abs=1e-13), x


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_and_two_sided_p_match_scipy(df: float) -> None:
    for magnitude in TS:
        for t in (magnitude, -magnitude):
            assert abs(t_cdf(t, df) - stats.t.cdf(t, df)) < 1e-9, (t, df)
            assert t_two_sided(t, df) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-8, abs=1e-12)
            assert t_pdf(t, df) == pytest.approx(stats.t.pdf(t, df), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("df", DFS)
def test_t_ppf_matches_scipy(df: float) -> None:
    for q in QS:
        expected = stats.t.ppf(q, df)
        assert t_ppf(q, df) == pytest.approx(expected, rel=1e-9, abs=1e-12), (q, df)
        # and it inverts our own CDF
        assert t_cdf(t_ppf(q, df), df) == pytest.approx(q, rel=1e-9)


def test_t_distribution_closed_forms() -> None:
    """df = 1 is Cauchy and df = 2 has a closed form: exact to rounding, with no scipy in the loop."""
    for t in [-50.0, -3.0, -1e-8, 0.0, 1e-8, 0.7, 12.0, 1e6]:
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-13, abs=1e-16)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), rel=1e-13, abs=1e-16)
    for q in [0.001, 0.2, 0.975, 0.999]:
        assert t_ppf(q, 1) == pytest.approx(math.tan(math.pi * (q - 0.5)), rel=1e-12)
        assert t_ppf(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-12)
    assert t_ppf(0.975, 1) == pytest.approx(12.706204736174698, rel=1e-12)  # the 2-seed critical value


def test_t_edges_and_refusals() -> None:
    assert t_ppf(0.5, 3) == 0.0 and t_ppf(1.0, 3) == math.inf and t_ppf(0.0, 3) == -math.inf
    assert t_two_sided(math.inf, 4) == 0.0 and t_two_sided(0.0, 4) == 1.0
    assert math.isnan(t_two_sided(math.nan, 4)) and math.isnan(t_cdf(math.nan, 4))
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="degrees of freedom"):
            t_cdf(1.0, bad)
    with pytest.raises(ValueError, match="quantile"):
        t_ppf(1.5, 3)
    with pytest.raises(ValueError, match="betainc"):
        betainc(1.0, 1.0, 1.5)


@pytest.mark.parametrize(
    "values", [[70.0, 80.0], [61.0, 63.5, 59.0], [1.0, 2.0, 4.0, 8.0, 16.0], [5.0, 5.0, 5.0]]
)
def test_describe_matches_numpy_and_scipy(values: list[float]) -> None:
    result = describe(values + [math.nan])  # a NaN (a run without that score) is left out
    n = len(values)
    assert result.n == n and result.mean == pytest.approx(np.mean(values))
    assert result.std == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    low, high = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values)) \
        if np.std(values) > 0 else (values[0], values[0])
    assert result.ci_low == pytest.approx(low, rel=1e-9) and result.ci_high == pytest.approx(high, rel=1e-9)


def test_describe_one_and_no_value() -> None:
    one = describe([42.0])
    assert one.n == 1 and one.mean == 42.0
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    none = describe([math.nan])
    assert none.n == 0 and math.isnan(none.mean)


@pytest.mark.parametrize(
    ("arm", "control"),
    [([50.0, 60.0], [70.0, 80.1]), ([20.0, 22.0], [40.0, 50.0]), ([35.0, 41.0], [55.0, 65.0]),
     ([75.0, 81.0, 84.0], [70.0, 75.0, 80.0]), ([80.0, 70.0, 81.0], [70.0, 75.0, 80.0]),
     ([0.61, 0.64, 0.59, 0.66, 0.60], [0.58, 0.60, 0.61, 0.62, 0.55])],
)
def test_paired_t_test_matches_scipy(arm: list[float], control: list[float]) -> None:
    reference = stats.ttest_rel(arm, control)
    result = paired_t_test(arm, control)
    assert result.n == len(arm) and result.mean_diff == pytest.approx(np.mean(np.subtract(arm, control)))
    assert result.t == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p == pytest.approx(reference.pvalue, rel=1e-8)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy warns on the degenerate inputs
def test_paired_t_test_degenerate_cases_follow_scipy() -> None:
    same_shift = paired_t_test([50.0, 60.0], [70.0, 80.0])  # −20 in both seeds: no spread
    reference = stats.ttest_rel([50.0, 60.0], [70.0, 80.0])
    assert same_shift.t == reference.statistic == -math.inf and same_shift.p == reference.pvalue == 0.0
    assert same_shift.zero_spread
    identical = paired_t_test([5.0, 6.0], [5.0, 6.0])
    assert math.isnan(identical.t) and math.isnan(identical.p) and not identical.zero_spread
    assert math.isnan(stats.ttest_rel([5.0, 6.0], [5.0, 6.0]).pvalue)
    single = paired_t_test([5.0], [3.0])
    assert single.n == 1 and single.mean_diff == 2.0 and math.isnan(single.p)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_t_test([1.0], [1.0, 2.0])


def test_pairing_is_by_seed_not_by_position() -> None:
    arm = {"2": 81.0, "0": 75.0, "1": 78.0, "7": 10.0}  # seed 7 has no control run
    control = {"0": 70.0, "1": 75.0, "2": 80.0, "3": 99.0, "9": math.nan}
    result = paired_by_seed(arm, control)
    reference = stats.ttest_rel([75.0, 78.0, 81.0], [70.0, 75.0, 80.0])
    assert result.n == 3 and result.p == pytest.approx(reference.pvalue, rel=1e-9)
    nan_pair = paired_t_test([1.0, math.nan, 3.0, 4.0], [0.0, 5.0, 1.0, 1.0])
    assert nan_pair.n == 3 and nan_pair.p == pytest.approx(stats.ttest_rel([1, 3, 4], [0, 1, 1]).pvalue)


def test_best_flags() -> None:
    assert best_flags([1.0, 3.0, 2.0]) == [False, True, False]
    assert best_flags([3.0, math.nan, 3.0 + 1e-12, 2.0]) == [True, False, True, False]  # ties are all best
    assert best_flags([math.nan, 4.0]) == [False, False]  # one number is not a comparison
    assert best_flags([]) == []


def test_library_does_not_import_scipy() -> None:
    """scipy is a test extra: no module of the results package may need it."""
    package = Path(__file__).resolve().parents[1] / "vlmlab" / "results"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0] == "scipy" for name in names), module.name
