"""The paired item bootstrap against long-run simulation: its interval covers, its test holds its level."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.test_tables import AXIS, plan_runs, record
from vlmlab.results.answers import read_answers
from vlmlab.results.bootstrap import paired_bootstrap
from vlmlab.results.records import load_axis, record_path, write_plan, write_record
from vlmlab.results.tables import summarise, write_tables


def simulated(rng: np.random.Generator, true_gain: float, items: int = 100, seeds: int = 2):
    """Per-item 0/100 scores of an arm and a control on the same items: the control right with p = 0.5, the arm
    right with p = 0.5 + gain, correlated through item difficulty as two models on one test set are."""
    arm, control = {}, {}
    for s in range(seeds):
        difficulty = rng.random(items)
        control[s] = 100.0 * (rng.random(items) < 0.5 * (0.5 + difficulty))
        arm[s] = 100.0 * (rng.random(items) < np.clip(0.5 * (0.5 + difficulty) + true_gain, 0, 1))
    return arm, control


def test_the_interval_covers_the_true_difference_about_95_times_in_100():
    rng = np.random.Generator(np.random.PCG64(1))
    true_gain = 0.08  # +8 points in expectation (the clip never binds: 0.5 * 1.5 + 0.08 < 1)
    covered, replicates = 0, 300
    for _ in range(replicates):
        result = paired_bootstrap(*simulated(rng, true_gain), resamples=2000)
        covered += result.low <= 100 * true_gain <= result.high
    assert 0.91 <= covered / replicates <= 0.985, covered / replicates


def test_without_a_difference_it_rejects_about_5_in_100_and_with_one_nearly_always():
    rng = np.random.Generator(np.random.PCG64(2))
    null = [paired_bootstrap(*simulated(rng, 0.0), resamples=2000).p < 0.05 for _ in range(300)]
    assert 0.02 <= sum(null) / len(null) <= 0.09, sum(null) / len(null)
    strong = [paired_bootstrap(*simulated(rng, 0.25), resamples=2000).p < 0.05 for _ in range(50)]
    assert sum(strong) >= 48


def test_its_standard_error_is_that_of_the_mean_difference_and_the_detectable_difference_follows():
    rng = np.random.Generator(np.random.PCG64(3))
    diffs = rng.normal(3.0, 20.0, size=400)
    result = paired_bootstrap({0: diffs}, {0: np.zeros(400)}, resamples=20_000)
    analytic = diffs.std(ddof=1) / math.sqrt(len(diffs))
    assert result.se == pytest.approx(analytic, rel=0.03)
    assert result.delta == pytest.approx(diffs.mean())
    assert result.detectable == pytest.approx(2.8016 * result.se, rel=1e-3)


def test_same_scores_same_numbers_and_only_seeds_that_pair_count():
    arm = {0: [100.0, 0.0, 100.0, 100.0], 1: [0.0, 0.0, 100.0, 0.0], 7: [100.0]}
    control = {0: [0.0, 0.0, 100.0, 0.0], 1: [0.0, 100.0, 100.0, 0.0], 2: [0.0, 0.0, 0.0, 0.0]}
    first, again = paired_bootstrap(arm, control), paired_bootstrap(dict(reversed(arm.items())), control)
    assert first == again, "the order the seeds come in changes nothing"
    assert (first.seeds, first.items) == (2, 8) and first.delta == pytest.approx((50.0 - 25.0) / 2)
    assert paired_bootstrap({0: [1.0]}, {1: [1.0]}) is None


def test_whole_groups_are_drawn_where_the_items_name_them():
    """Four items answered as one (rotations of a question) carry the information of one: the standard error of
    a cluster bootstrap is twice the item bootstrap's; groups of one item change nothing, draw for draw."""
    rng = np.random.Generator(np.random.PCG64(5))
    per_question = rng.normal(3.0, 20.0, size=(2, 100))
    arm = {s: np.repeat(per_question[s], 4) for s in (0, 1)}
    control = {s: np.zeros(400) for s in (0, 1)}
    questions = {s: [f"q{i // 4}" for i in range(400)] for s in (0, 1)}
    items, grouped = paired_bootstrap(arm, control), paired_bootstrap(arm, control, groups=questions)
    assert grouped.delta == pytest.approx(items.delta) and grouped.items == items.items == 800
    assert grouped.se == pytest.approx(2 * items.se, rel=0.1)
    assert paired_bootstrap(arm, control, groups={s: list(range(400)) for s in (0, 1)}) == items
    assert paired_bootstrap(arm, control, groups={0: questions[0][:10]}) == items, "keys that do not fit: items"


def write_item_scored_axis(root, arms_with_runs=("perceiver", "mean", "linear"), group_size=1):
    """The fixture axis with 100 item scores per benchmark and run, for the arms given: perceiver (the control)
    and mean answer half the items right, linear three quarters. With `group_size` > 1, items come in named groups
    of that many, right or wrong together (MMBench's rotations of one question)."""
    rng = np.random.Generator(np.random.PCG64(4))
    ablation = {"name": AXIS, "question": "q", "paper_table": None, "control": "perceiver",
                "arms": ["perceiver", "mean", "linear"], "metrics": ["vqa", "ocr"], "seeds": [0, 1]}
    write_plan(root, AXIS, ablation, plan_runs())
    right = {"perceiver": 0.5, "mean": 0.5, "linear": 0.75}
    for run in (r for r in plan_runs() if r["arm"] in arms_with_runs):
        path = write_record(root, record(run["arm"], run["seed"]))
        rows = [{"task": task, "prediction": str(i), "score": 100.0 * float(rng.random() < right[run["arm"]])}
                for task in ("vqa", "ocr") for i in range(100)]
        if group_size > 1:
            for i, row in enumerate(rows):
                row.update(score=rows[i - i % group_size]["score"], group=[f"q{i // group_size}"])
        path.with_suffix(".predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_table_whose_runs_saved_item_scores_is_tested_over_items(tmp_path):
    """Two seeds cannot separate the arms by a t-test (1 df); a hundred items per seed can."""
    write_item_scored_axis(tmp_path)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    answers = read_answers([(r.arm, r.seed, record_path(tmp_path, AXIS, r.arm, r.run_id).with_suffix(
        ".predictions.jsonl")) for r in runs])
    summary = summarise(plan, runs, answers).set_index("arm")
    assert summary.loc["linear", "vqa_items"] == 200 and summary.loc["linear", "vqa_n_paired"] == 2
    assert summary.loc["linear", "vqa_p"] < 0.01 and summary.loc["mean", "vqa_p"] > 0.01
    assert 10 < summary.loc["linear", "vqa_detectable"] < 20  # 2.8 x the SE of a mean of 200 0/100 differences
    write_tables(tmp_path)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert "paired bootstrap over the test items of the seeds both finished (10,000 resamples" in markdown
    assert "2 paired seeds and 200 items per arm and benchmark; Avg. by a paired t-test over seeds" in markdown
    assert "Power: the smallest Δ each test detects with 80% power at p < 0.05" in markdown and "points: vqa " in markdown
    assert "vqa_items" not in summarise(plan, runs), "without item scores: the t-test over seeds"


def test_a_table_draws_the_groups_its_answers_name(tmp_path):
    """Answers saved with group keys (MME's image, MMBench's question) are tested by drawing whole groups: four
    items right or wrong together detect no more than 25 independent ones would."""
    def detectable(root, group_size):
        write_item_scored_axis(root, group_size=group_size)
        plan, runs, _ = load_axis(root, AXIS)
        answers = read_answers([(r.arm, r.seed, record_path(root, AXIS, r.arm, r.run_id).with_suffix(
            ".predictions.jsonl")) for r in runs])
        assert all(len(a.groups.get("vqa", [])) == (100 if group_size > 1 else 0) for a in answers)
        return summarise(plan, runs, answers).set_index("arm").loc["linear", "vqa_detectable"]

    ungrouped, grouped = detectable(tmp_path / "items", 1), detectable(tmp_path / "groups", 4)
    assert 1.5 < grouped / ungrouped < 2.6, (grouped, ungrouped)


def test_a_table_with_item_scores_and_no_finished_control_shows_the_arms_untested(tmp_path):
    """An axis part-way through its sweep, the control not yet run: the arms' scores, and no test to read."""
    write_item_scored_axis(tmp_path, arms_with_runs=("mean", "linear"))
    write_tables(tmp_path)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert "The control arm has no finished run (missing), so no Δ is given." in markdown
    intervals = markdown.split("of Δ against the control:", 1)[1].split("Runs without a result", 1)[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in intervals.splitlines() if line.startswith("| ")}
    assert rows["perceiver (control)"].count("missing") == 3
    for arm in ("mean", "linear"):
        assert rows[arm].count("[") == 3 and "p " not in rows[arm] and "no test" not in rows[arm]


def test_the_default_seeds_and_items_detect_5_points_on_synth_vqa(make_cfg):
    """The defaults (three seeds; eval.limit_per_task items of each benchmark, as many as the suite draws) detect
    a 5-point difference when items disagree as the committed synth_vqa answers did at worst (variance 0.33 of
    the per-item difference, i.e. two arms disagreeing on a third of the items)."""
    from vlmlab.sweep.plan import DEFAULT_SEEDS

    cfg = make_cfg()
    items = min(cfg.eval.limit_per_task, cfg.data.suite.eval_images)
    rng = np.random.Generator(np.random.PCG64(3))
    arm, control = {}, {}
    for s in range(DEFAULT_SEEDS):
        control[s] = 100.0 * (rng.random(items) < 0.5)
        flip = rng.random(items) < 0.33  # the arm answers the other way on a third of the items
        arm[s] = np.where(flip, 100.0 - control[s], control[s])
    result = paired_bootstrap(arm, control, resamples=2000)
    assert result.items == DEFAULT_SEEDS * items
    assert result.detectable <= 5.0, result.detectable
    # and the old defaults (two seeds of 100 items) could not
    old = paired_bootstrap({s: arm[s][:100] for s in (0, 1)}, {s: control[s][:100] for s in (0, 1)}, resamples=2000)
    assert old.detectable > 10.0, old.detectable
