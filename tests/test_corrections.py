"""Multiple-comparison corrections against statsmodels, and what they do to a table's marks and caption."""

from __future__ import annotations

import math
import random

import pytest
from statsmodels.stats.multitest import multipletests

from tests.test_tables import ARMS, AXIS, SEEDS, plan_runs, record
from vlmlab.results.corrections import CORRECTIONS, benjamini_hochberg, holm
from vlmlab.results.records import load_axis, write_plan, write_record
from vlmlab.results.tables import render_csv, render_markdown, summarise
from vlmlab.sweep.ablation_schema import Correction

REFERENCE = {"holm": "holm", "benjamini_hochberg": "fdr_bh"}


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("seed", range(20))
def test_adjusted_p_values_match_statsmodels(name, seed):
    rng = random.Random(seed)
    pvalues = [rng.random() ** rng.choice((1, 3, 8)) for _ in range(rng.randint(1, 30))]
    if seed % 4 == 0 and len(pvalues) > 2:
        pvalues[1] = pvalues[0]  # ties
    _reject, reference, _sidak, _bonf = multipletests(pvalues, alpha=0.05, method=REFERENCE[name])
    assert CORRECTIONS[name].adjust(pvalues) == pytest.approx(list(reference), rel=1e-12, abs=1e-15)


def test_untested_comparisons_are_not_in_the_family():
    nan = float("nan")
    with_gaps = holm([0.01, nan, 0.04, nan, 0.03])
    assert math.isnan(with_gaps[1]) and math.isnan(with_gaps[3])
    assert [with_gaps[0], with_gaps[2], with_gaps[4]] == pytest.approx(holm([0.01, 0.04, 0.03]))
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3 × 0.01, then 2 × 0.03, monotone
    assert benjamini_hochberg([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.04, 0.04])


def test_the_ablation_files_choices_are_the_corrections():
    assert {choice.value for choice in Correction} == set(CORRECTIONS)


def write(root, correction: str, scores) -> None:
    """The fixture's ablation with `correction`, its records scored with `scores`."""
    ablation = {"name": AXIS, "question": "q", "paper_table": None, "control": "perceiver", "arms": ARMS,
                "metrics": ["vqa", "ocr"], "seeds": SEEDS, "correction": correction,
                "metric_of": {"vqa": "vqa_accuracy", "ocr": "exact_match"}}
    write_plan(root, AXIS, ablation, plan_runs())
    for run in plan_runs():
        write_record(root, record(run["arm"], run["seed"], scores=scores))


# linear is below the control on both tasks by a consistent margin; with 2 seeds a paired t needs |t| > 12.71.
SCORES = {
    "perceiver": {0: (70.0, 40.0), 1: (80.0, 50.0)},
    "mean": {0: (69.0, 41.0), 1: (81.0, 47.0)},
    "linear": {0: (50.0, 20.5), 1: (62.0, 30.0)},  # vqa: Δ −20 and −18, t = −19, p = 0.034
}


def test_a_mark_needs_the_adjusted_p_and_the_caption_says_which_correction(tmp_path):
    write(tmp_path / "none", "none", SCORES)
    write(tmp_path / "holm", "holm", SCORES)
    plain = summarise(*load_axis(tmp_path / "none", AXIS)[:2]).set_index("arm")
    corrected = summarise(*load_axis(tmp_path / "holm", AXIS)[:2]).set_index("arm")
    p = plain.loc["linear", "vqa_p"]
    assert p < 0.05 and plain.loc["linear", "vqa_marked"], "marked on its own"
    tested = [plain.loc[arm, f"{k}_p"] for k in ("vqa", "ocr", "avg") for arm in ("mean", "linear")]
    assert corrected.loc["linear", "vqa_p_adj"] == pytest.approx(holm(tested)[tested.index(p)])
    assert corrected.loc["linear", "vqa_p_adj"] >= 0.05 and not corrected.loc["linear", "vqa_marked"]
    plan, runs, _ = load_axis(tmp_path / "holm", AXIS)
    markdown = render_markdown(plan, runs)
    assert "adjusted by the Holm–Bonferroni correction over the table's 6 tests" in markdown
    assert "the family-wise error rate at 0.05" in markdown
    assert f"p = {p:.3f} (adjusted p = {corrected.loc['linear', 'vqa_p_adj']:.3f})" in markdown
    assert "| pooling | vqa (VQA acc.) | ocr (EM) | Avg. |" in markdown
    csv = render_csv(plan, runs)
    assert "vqa_p_adj" in csv.splitlines()[0] and "avg_n_paired,vqa_metric,ocr_metric," in csv.splitlines()[0]
    assert ",vqa_accuracy,exact_match," in csv.splitlines()[1]
    plain_markdown = render_markdown(*load_axis(tmp_path / "none", AXIS)[:2])
    assert "correction" not in plain_markdown and "adjusted" not in plain_markdown
