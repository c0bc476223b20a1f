"""Tests of aggregation and rendering: hand-computed statistics, paired tests, failures shown, same bytes out."""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from vlmlab.results import load_axis, render_csv, render_latex, render_markdown, summarise, write_tables
from vlmlab.results.migrate import migrate_results
from vlmlab.results.records import write_plan, write_record
from vlmlab.results.plots import SOFTWARE, png_size
from vlmlab.results.render import human_count, human_flops
from vlmlab.run_record import SCHEMA_VERSION, RunRecord

AXIS = "pooling"
OUTPUTS = (".csv", ".md", ".png", ".tex", "_loss.png")  # what write_tables writes per axis, sorted
ARMS = ["perceiver", "mean", "linear"]
SEEDS = [0, 1]
# Two tasks per run; perceiver is the control.
SCORES = {
    "perceiver": {0: (70.0, 40.0), 1: (80.0, 50.0)},
    "mean": {0: (69.0, 41.0), 1: (81.0, 47.0)},   # within noise of the control
    "linear": {0: (50.0, 20.0), 1: (60.0, 22.0)},  # far below it
}


def run_id(arm: str, seed: int, axis: str = AXIS) -> str:
    """A stable 12-hex id per (arm, seed)."""
    return hashlib.sha256(f"{axis}/{arm}/{seed}".encode()).hexdigest()[:12]


def record(arm: str, seed: int, status: str = "done", message: str = "",
           scores: dict[str, dict[int, tuple[float, float]]] = SCORES, axis: str = AXIS) -> RunRecord:
    """A record with the scores of `scores` (or none, with an error, when not done)."""
    return RunRecord.from_dict(raw_record(arm, seed, status, message, scores, axis))


def raw_record(arm: str, seed: int, status: str = "done", message: str = "",
               scores: dict[str, dict[int, tuple[float, float]]] = SCORES, axis: str = AXIS) -> dict[str, Any]:
    """The JSON object of `record`."""
    done = status == "done"
    vqa, ocr = scores[arm][seed]
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id(arm, seed, axis), "ablation": {"name": axis, "arm": arm},
        "seed": seed, "status": status, "config": {"arm": arm},
        "metrics": {"vqa": vqa, "ocr": ocr} if done else {},
        "cost": {"params_total": 8_300_000_000 if arm == "perceiver" else 1_020_000,
                 "params_trainable": 740_000_000, "visual_tokens_per_image": 64,
                 "train_seconds": 10.0 + seed, "eval_seconds": 1.0,
                 "train_samples_per_second": 5.0},
        "provenance": {"git_commit": "abc", "git_dirty": False, "packages": {},
                       "python": "3.11", "platform": "test", "command": "pytest"},
        "error": None if done else {"type": "RuntimeError", "message": message, "traceback": ""},
    }


def plan_runs() -> list[dict[str, Any]]:
    """The planned runs, arm-major."""
    return [{"run_id": run_id(a, s), "arm": a, "seed": s} for a in ARMS for s in SEEDS]


def write_ablation(root: Path, runs: list[dict[str, Any]] | None = None,
                   skip: tuple[tuple[str, int], ...] = ()) -> None:
    """Write the plan and every record except those in `skip`, in the order `runs` lists them."""
    ablation = {"name": AXIS, "question": "Does the pooling matter?", "paper_table": "Table 4",
                "control": "perceiver", "arms": ARMS, "metrics": ["vqa", "ocr"], "seeds": SEEDS}
    runs = plan_runs() if runs is None else runs
    write_plan(root, AXIS, ablation, runs)
    for run in runs:
        if (run["arm"], run["seed"]) not in skip:
            write_record(root, record(run["arm"], run["seed"]))


def table_row(root: Path, arm: str) -> str:
    """The Markdown table line of `arm`."""
    text = (root / "tables" / f"{AXIS}.md").read_text()
    return next(line for line in text.splitlines() if line.startswith(f"| {arm}"))


def test_statistics_match_hand_computation(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    plan, runs, warnings = load_axis(tmp_path, AXIS)
    assert warnings == []
    summary = summarise(plan, runs).set_index("arm")
    assert list(summary.index) == ARMS
    linear, control = summary.loc["linear"], summary.loc["perceiver"]
    assert linear["vqa_mean"] == pytest.approx(55.0)
    assert linear["vqa_std"] == pytest.approx(7.0710678)  # sample std of 50, 60
    assert linear["vqa_delta"] == pytest.approx(-20.0)  # 55 - 75
    # Avg. per seed first: linear (35, 41) vs control (55, 65).
    assert linear["avg_mean"] == pytest.approx(38.0)
    assert linear["avg_std"] == pytest.approx(4.2426407)
    assert linear["avg_delta"] == pytest.approx(38.0 - 60.0)
    assert pd.isna(control["vqa_delta"]) and bool(control["is_control"])
    assert summary.loc["perceiver", "params_total"] == 8_300_000_000
    assert summary.loc["mean", "train_seconds_mean"] == pytest.approx(10.5)


def test_avg_leaves_out_a_benchmark_scored_in_points(tmp_path: Path) -> None:
    """MME's score runs to 2,000 points: averaged with percentages it would be nearly the whole Avg."""
    write_ablation(tmp_path)
    plan_file = tmp_path / "runs" / AXIS / "plan.json"
    plan = json.loads(plan_file.read_text())
    plan["ablation"]["metric_of"] = {"vqa": "vqa_accuracy", "ocr": "mme"}
    plan_file.write_text(json.dumps(plan))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    linear = summarise(plan, runs).set_index("arm").loc["linear"]
    assert linear["avg_mean"] == pytest.approx(55.0) and linear["avg_delta"] == pytest.approx(55.0 - 75.0)
    write_tables(tmp_path)
    text = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert "Avg. is each run's plain mean over its 1 scores (ocr left out: scored in points, not percent)" in text


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy on the zero-spread pair
def test_marker_is_a_paired_t_test_at_5_percent(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    summary = summarise(plan, runs).set_index("arm")
    control = {"vqa": [70.0, 80.0], "ocr": [40.0, 50.0], "avg": [55.0, 65.0]}
    arms = {"linear": {"vqa": [50.0, 60.0], "ocr": [20.0, 22.0], "avg": [35.0, 41.0]},
            "mean": {"vqa": [69.0, 81.0], "ocr": [41.0, 47.0], "avg": [55.0, 64.0]}}
    for arm, scores in arms.items():
        for key, values in scores.items():
            reference = scipy_stats.ttest_rel(values, control[key])
            assert summary.loc[arm, f"{key}_n_paired"] == 2
            assert summary.loc[arm, f"{key}_p"] == pytest.approx(reference.pvalue, abs=1e-9), (arm, key)
            degenerate = not np.isfinite(reference.statistic)  # the same difference in every seed
            assert summary.loc[arm, f"{key}_marked"] == (reference.pvalue < 0.05 and not degenerate), (arm, key)
    # linear vqa differs by −20 in both seeds: zero spread, t = −inf, p = 0 (scipy's convention); with two
    # seeds that is a coincidence, not evidence, so it is reported and left unmarked.
    assert not summary.loc["linear", "vqa_marked"] and summary.loc["linear", "vqa_zero_spread"]
    # ocr: −24 is over twice the larger seed std (the old rule marked it) but with 2 seeds (1 df)
    # the paired t = −6 gives p = 0.105; Avg.: t = −11, p = 0.058. Neither is marked.
    assert not summary.loc["linear", "ocr_marked"] and not summary.loc["linear", "avg_marked"]
    assert not summary.loc["mean", "vqa_marked"] and summary.loc["mean", "vqa_p"] == pytest.approx(1.0)
    assert pd.isna(summary.loc["perceiver", "vqa_p"]) and not summary.loc["perceiver", "vqa_marked"]
    markdown = render_markdown(plan, runs)
    assert "| linear | 55.0 ± 7.1 (−20.0) | 21.0 ± 1.4 (−24.0) | 38.0 ± 4.2 (−22.0) |" in markdown
    # Bold: the best mean per column; vqa is a tie (75.0 and 75.0), so both are bold.
    assert "| mean | **75.0** ± 8.5 (0.0) | 44.0 ± 4.2 (−1.0) | 59.5 ± 6.4 (−0.5) |" in markdown
    assert ("| perceiver (control) | **75.0** ± 7.1 | **45.0** ± 7.1 | **60.0** ± 7.1 "
            "| 8.3B | 740M | 64 |") in markdown
    assert "`*`: p < 0.05 in a two-sided paired t-test" in markdown and "(2 paired seeds per arm)" in markdown
    assert "needs |t| > 12.71 (1 df)" in markdown and "degenerate case" in markdown
    assert "twice the larger" not in markdown and "Mirrors Table 4 of the Idefics2 paper." in markdown
    # The interval table: 95% Student-t intervals (t(0.975, 1) = 12.706) and the p of each test.
    assert ("| linear | [−8.5, 118.5]; no test (same Δ in every seed) | [8.3, 33.7]; p = 0.105 "
            "| [−0.1, 76.1]; p = 0.058 |") in markdown


def test_paired_test_finds_what_seed_noise_hides(tmp_path: Path) -> None:
    """Three seeds: a steady +5 is significant when paired, though the seeds spread by more than that."""
    scores = {"base": {0: (70.0, 40.0), 1: (75.0, 45.0), 2: (80.0, 50.0)},
              "steady": {0: (75.0, 41.0), 1: (81.0, 40.0), 2: (84.0, 60.0)},
              "noisy": {0: (80.0, 40.0), 1: (70.0, 45.0), 2: (81.0, 50.0)}}
    axis = "steady"
    ablation = {"name": axis, "question": "", "paper_table": "", "control": "base",
                "arms": list(scores), "metrics": ["vqa", "ocr"], "seeds": [0, 1, 2]}
    planned = [{"run_id": run_id(a, s, axis), "arm": a, "seed": s} for a in scores for s in (0, 1, 2)]
    write_plan(tmp_path, axis, ablation, planned)
    for run in planned:
        write_record(tmp_path, record(run["arm"], run["seed"], scores=scores, axis=axis))
    plan, runs, _ = load_axis(tmp_path, axis)
    summary = summarise(plan, runs).set_index("arm")
    steady = [v[0] for v in scores["steady"].values()]
    base = [v[0] for v in scores["base"].values()]
    reference = scipy_stats.ttest_rel(steady, base)
    assert reference.pvalue < 0.05
    assert summary.loc["steady", "vqa_p"] == pytest.approx(reference.pvalue, rel=1e-9)
    assert summary.loc["steady", "vqa_marked"] and not summary.loc["noisy", "vqa_marked"]
    assert summary.loc["steady", "vqa_delta"] < 2 * summary.loc["base", "vqa_std"]  # the old rule missed it
    half = scipy_stats.t.ppf(0.975, 2) * summary.loc["steady", "vqa_std"] / 3 ** 0.5
    assert summary.loc["steady", "vqa_ci_low"] == pytest.approx(80.0 - half, rel=1e-9)
    assert summary.loc["steady", "vqa_ci_high"] == pytest.approx(80.0 + half, rel=1e-9)
    markdown = render_markdown(plan, runs)
    assert "| steady | **80.0** ± 4.6 (+5.0)* |" in markdown
    assert r"(+5.0)$^{*}$" in render_latex(plan, runs)
    assert "(3 paired seeds per arm)" in markdown and "needs |t| > 4.30 (2 df)" in markdown


def test_single_seed_shows_no_std_and_no_marker(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("linear", 1),))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    summary = summarise(plan, runs).set_index("arm")
    assert not summary.loc["linear", "vqa_marked"]  # −25 but only one seed: no noise estimate
    assert summary.loc["linear", "vqa_n_paired"] == 1 and pd.isna(summary.loc["linear", "vqa_p"])
    assert pd.isna(summary.loc["linear", "vqa_ci_low"]) and pd.isna(summary.loc["linear", "vqa_std"])
    markdown = render_markdown(plan, runs)
    assert "| linear | 50.0 (−25.0) | 20.0 (−25.0) | 35.0 (−25.0) |" in markdown
    # Honest caption: which arm was not tested, and why no per-sample test replaces it.
    assert ("linear shares at most one finished seed with the control, so its Δ has no p-value and no `*` "
            "(the records hold aggregate scores only, so no per-sample test is possible either).") in markdown
    assert "(2 paired seeds per arm)" in markdown  # mean is still tested
    assert "| linear | – | – | – |" in markdown  # no interval from one seed


def test_all_single_seed_caption(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("linear", 1), ("mean", 1), ("perceiver", 1)))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    markdown = render_markdown(plan, runs)
    assert "No arm shares two finished seeds with the control, so no Δ has a p-value" in markdown
    assert "paired t-test of the arm" not in markdown and ")*" not in markdown


def test_failed_and_missing_runs_are_shown(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("mean", 1), ("linear", 0), ("linear", 1)))
    write_record(tmp_path, record("linear", 1, "failed", "CUDA out of memory\nat step 3"))
    write_record(tmp_path, record("linear", 0, "failed", "loss is NaN"))
    write_tables(tmp_path)
    assert table_row(tmp_path, "linear").startswith("| linear | failed | failed | failed |")
    assert table_row(tmp_path, "linear").endswith("| 0/2 (2 failed) |")
    assert table_row(tmp_path, "mean").endswith("| 1/2 (1 missing) |")
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    failures = markdown.split("Runs without a result:\n\n")[1].split("\n\n")[0].splitlines()
    assert failures == [
        f"- mean seed 1 ({run_id('mean', 1)}): missing (no record)",
        f"- linear seed 0 ({run_id('linear', 0)}): RuntimeError: loss is NaN",
        f"- linear seed 1 ({run_id('linear', 1)}): RuntimeError: CUDA out of memory",
    ]
    assert markdown.index("Provenance:") > markdown.index("Runs without a result:"), "provenance closes the table"
    assert markdown.rstrip().splitlines()[-1].startswith("- commands: ")
    csv = pd.read_csv(tmp_path / "tables" / f"{AXIS}.csv").set_index("arm")
    assert csv.loc["linear", "n_failed"] == 2 and csv.loc["linear", "n_done"] == 0
    assert pd.isna(csv.loc["linear", "vqa_mean"]) and pd.isna(csv.loc["linear", "params_total"])


def test_missing_arm_and_stale_records(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("mean", 0), ("mean", 1)))
    stale = record("linear", 0)
    stale.run_id, stale.seed = "0123456789ab", 9
    write_record(tmp_path, stale)
    plan, runs, warnings = load_axis(tmp_path, AXIS)
    assert warnings == ["1 records not in plan.json ignored"]
    assert len(runs) == len(plan_runs())
    assert "| mean | missing | missing | missing |" in render_markdown(plan, runs)
    assert summarise(plan, runs).set_index("arm").loc["linear", "n_done"] == 2


def test_csv_columns_and_format(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    text = render_csv(plan, runs)
    header, control, _, linear = text.splitlines()
    per_key = ("mean", "std", "ci_low", "ci_high", "delta", "p", "p_adj", "n_paired")
    assert header == ",".join(
        ["arm", "is_control", "n_planned", "n_done", "n_failed"]
        + [f"{key}_{part}" for key in ("vqa", "ocr", "avg") for part in per_key]
        + ["params_total", "params_trainable", "visual_tokens_per_image", "sequence_tokens_per_image",
           "visual_tokens_per_image_eval", "train_seconds_mean", "train_flops", "inference_flops_per_sample",
           "train_samples_per_second_mean", "peak_memory_mb_mean", "peak_memory_kind"]
    )
    # Records without FLOPs or peak memory (written before they were measured): empty cells.
    assert control == ("perceiver,True,2,2,0,75.0000,7.0711,11.4690,138.5310,,,,,"
                       "45.0000,7.0711,-18.5310,108.5310,,,,,60.0000,7.0711,-3.5310,123.5310,,,,,"
                       "8300000000,740000000,64,,,10.5000,,,5.0000,,")
    # vqa's Δ is the same in both seeds: the degenerate test (p 0) is no evidence, and has no adjusted p.
    assert linear.startswith("linear,False,2,2,0,55.0000,7.0711,-8.5310,118.5310,-20.0000,0,,2,"
                             "21.0000,1.4142,8.2938,33.7062,-24.0000,0.105137,0.105137,2,")
    assert "\r" not in text and text.endswith("\n")
    frame = pd.read_csv(io.StringIO(text)).set_index("arm")
    assert frame.loc["linear", "ocr_p"] == pytest.approx(scipy_stats.ttest_rel([20, 22], [40, 50]).pvalue, rel=1e-5)


def test_same_files_same_bytes_in_any_order(tmp_path: Path) -> None:
    first = tmp_path / "a"
    write_ablation(first, skip=(("mean", 1),))
    paths = write_tables(first)
    assert [p.name for p in paths] == [f"{AXIS}{end}" for end in OUTPUTS]
    once = {p.name: p.read_bytes() for p in paths}
    assert {p.name: p.read_bytes() for p in write_tables(first)} == once

    shuffled = plan_runs()
    random.Random(3).shuffle(shuffled)
    second = tmp_path / "b"
    write_ablation(second, runs=shuffled, skip=(("mean", 1),))
    assert {p.name: p.read_bytes() for p in write_tables(second)} == once

    # And the records themselves are identical bytes, whatever order they were written in.
    for path in (first / "runs" / AXIS).glob("*/*.json"):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()
    shutil.rmtree(first / "tables")
    write_tables(first)
    assert (first / "tables" / f"{AXIS}.md").read_bytes() == once[f"{AXIS}.md"]


def test_only_axes_with_a_plan_get_tables(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    (tmp_path / "runs" / "orphan" / "arm").mkdir(parents=True)
    assert [p.name for p in write_tables(tmp_path)] == [f"{AXIS}{end}" for end in OUTPUTS]


@pytest.mark.parametrize(
    ("count", "text"),
    [(640, "640"), (5_000_000, "5M"), (740_000_000, "740M"), (1_020_000, "1.02M"),
     (8_300_000_000, "8.3B"), (999_999, "1M"), (12_345, "12.3K")],
)
def test_human_count(count: int, text: str) -> None:
    assert human_count(count) == text


@pytest.mark.parametrize(("flops", "text"), [(999, "999"), (340e9, "340G"), (1.2e12, "1.2T"), (6.3e15, "6.3P"),
                                             (155_011_195, "155M"), (999_999e9, "1P")])
def test_human_flops(flops: float, text: str) -> None:
    assert human_flops(flops) == text


def write_with_costs(root: Path, extra_cost: Callable[[str, int], dict[str, Any]]) -> None:
    """The plan and every record, each record's cost updated with `extra_cost(arm, seed)`."""
    ablation = {"name": AXIS, "question": "", "paper_table": "", "control": "perceiver", "arms": ARMS,
                "metrics": ["vqa", "ocr"], "seeds": SEEDS}
    write_plan(root, AXIS, ablation, plan_runs())
    for run in plan_runs():
        raw = raw_record(run["arm"], run["seed"])
        raw["cost"] |= extra_cost(run["arm"], run["seed"])
        write_record(root, RunRecord.from_dict(raw))


def test_compute_and_memory_columns(tmp_path: Path) -> None:
    """New records carry FLOPs and peak memory; an arm of older records shows empty cells beside them."""
    def cost(arm: str, seed: int) -> dict[str, Any]:
        if arm == "linear":  # linear keeps the older record's cost, without these keys
            return {}
        return {"train_flops": 6.31e12, "inference_flops_per_sample": 1.55e8 + 1e6 * seed,
                "train_samples_per_second": 20.0 + seed, "peak_memory_mb": 58.0, "peak_memory_kind": "cpu_rss_delta"}

    write_with_costs(tmp_path, cost)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    markdown = render_markdown(plan, runs)
    assert "| visual tokens | train FLOPs | infer FLOPs | train s | samples/s | peak MB | seeds |" in markdown
    assert table_row_of(markdown, "perceiver").endswith("| 740M | 64 | 6.31T | 156M | 10.5 | 20.5 | 58.0 | 2/2 |")
    assert table_row_of(markdown, "linear").endswith("| 1.02M | 740M | 64 | – | – | 10.5 | 5.0 | – | 2/2 |")
    assert "a multiply-add being 2 FLOPs" in markdown and "resident memory grew during training" in markdown
    assert "CUDA" not in markdown
    frame = pd.read_csv(io.StringIO(render_csv(plan, runs))).set_index("arm")
    assert frame.loc["perceiver", "train_flops"] == 6_310_000_000_000
    assert frame.loc["perceiver", "inference_flops_per_sample"] == 155_500_000
    assert frame.loc["perceiver", "peak_memory_kind"] == "cpu_rss_delta"
    assert pd.isna(frame.loc["linear", "train_flops"]) and pd.isna(frame.loc["linear", "peak_memory_mb_mean"])
    assert r"& 6.31T & 156M & 10.5 & 20.5 & 58.0 & 2/2 \\" in render_latex(plan, runs)


def test_lm_tokens_column_only_where_an_arm_differs(tmp_path: Path) -> None:
    """Cross-attention puts one token per image in the LM sequence: the table shows it beside visual tokens."""
    write_with_costs(tmp_path, lambda arm, seed: {"sequence_tokens_per_image": 1 if arm == "linear" else 64})
    write_tables(tmp_path)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert "LM tokens" in markdown
    assert "| 64 | 1 |" in table_row_of(markdown, "linear") and "| 64 | 64 |" in table_row_of(markdown, "mean")
    # where no arm differs, the column stays out
    write_with_costs(tmp_path, lambda arm, seed: {"sequence_tokens_per_image": 64})
    write_tables(tmp_path)
    assert "LM tokens" not in (tmp_path / "tables" / f"{AXIS}.md").read_text()


def test_checkpoint_columns_appear_once_a_record_measures_them(tmp_path: Path) -> None:
    """A cost column added to the registry (vlmlab.results.columns) shows in every output, and only in tables
    whose records measure it: older tables keep their bytes."""
    write_with_costs(tmp_path, lambda arm, seed: {})
    plan, runs, _ = load_axis(tmp_path, AXIS)
    before = render_markdown(plan, runs), render_csv(plan, runs)
    assert "ckpt" not in before[0] and "checkpoint" not in before[1]
    write_with_costs(tmp_path, lambda arm, seed: {} if arm == "linear" else {
        "checkpoint_seconds": 1.5 + seed, "checkpoint_saves": 3, "checkpoint_bytes": 3 * 2**20})
    plan, runs, _ = load_axis(tmp_path, AXIS)
    markdown = render_markdown(plan, runs)
    assert "| peak MB | ckpt s | ckpt MB | seeds |" in markdown
    assert table_row_of(markdown, "perceiver").endswith("| 2.0 | 3.0 | 2/2 |")
    assert table_row_of(markdown, "linear").endswith("| – | – | 2/2 |")
    assert "ckpt s: seconds spent writing checkpoints" in markdown
    frame = pd.read_csv(io.StringIO(render_csv(plan, runs))).set_index("arm")
    assert list(frame.columns[-2:]) == ["checkpoint_seconds_mean", "checkpoint_bytes_mean"]
    assert frame.loc["mean", "checkpoint_bytes_mean"] == 3 * 2**20 and pd.isna(frame.loc["linear", "checkpoint_seconds_mean"])
    assert r"ckpt s & ckpt MB & seeds \\" in render_latex(plan, runs)


def table_row_of(markdown: str, arm: str) -> str:
    """The main table's line of `arm` in a rendered Markdown table."""
    return next(line for line in markdown.splitlines() if line.startswith(f"| {arm}"))


def test_committed_tables_regenerate_byte_identically_from_committed_records(tmp_path: Path) -> None:
    """results/tables is exactly what results/runs gives: `make tables` on a fresh clone changes nothing."""
    repo_results = Path(__file__).resolve().parents[1] / "results"
    shutil.copytree(repo_results / "runs", tmp_path / "runs")
    assert not migrate_results(tmp_path).records, "the committed records are at the current schema"
    written = write_tables(tmp_path)
    assert written, "the repository commits at least one ablation's records"
    axes = sorted(p.parent.name for p in (repo_results / "runs").glob("*/plan.json"))
    assert [p.name for p in written] == sorted(f"{axis}{end}" for axis in axes for end in OUTPUTS)
    for path in written:
        committed = (repo_results / "tables" / path.name).read_bytes()
        if path.suffix == ".png" and _png_software(committed) != SOFTWARE:
            # Another matplotlib draws other pixels: then the chart only has to be a chart of that size.
            assert png_size(path.read_bytes()) == png_size(committed), path.name
            continue
        assert path.read_bytes() == committed, path.name


def _png_software(data: bytes) -> str | None:
    """The Software text of a PNG, if it has one."""
    marker = b"tEXtSoftware\x00"
    start = data.find(marker)
    if start < 0:
        return None
    length = int.from_bytes(data[start - 4:start], "big")
    return data[start + len(marker):start + 4 + length].decode("latin-1")
