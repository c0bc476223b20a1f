"""Tests of aggregation and rendering: hand-computed statistics, failures shown, same bytes out."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from vlmlab.results import load_axis, render_csv, render_markdown, summarise, write_tables
from vlmlab.results.records import write_plan, write_record
from vlmlab.results.render import human_count

AXIS = "pooling"
ARMS = ["perceiver", "mean", "linear"]
SEEDS = [0, 1]
# Two tasks per run; perceiver is the control.
SCORES = {
    "perceiver": {0: (70.0, 40.0), 1: (80.0, 50.0)},
    "mean": {0: (69.0, 41.0), 1: (81.0, 47.0)},   # within noise of the control
    "linear": {0: (50.0, 20.0), 1: (60.0, 22.0)},  # far below it
}


def run_id(arm: str, seed: int) -> str:
    """A stable 12-hex id per (arm, seed)."""
    return hashlib.sha256(f"{AXIS}/{arm}/{seed}".encode()).hexdigest()[:12]


def record(arm: str, seed: int, status: str = "done", message: str = "") -> dict[str, Any]:
    """A record with the scores of SCORES (or none, with an error, when not done)."""
    done = status == "done"
    vqa, ocr = SCORES[arm][seed]
    return {
        "schema_version": 1, "run_id": run_id(arm, seed), "ablation": {"name": AXIS, "arm": arm},
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


def test_marker_only_outside_seed_noise(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    summary = summarise(plan, runs).set_index("arm")
    # ocr: linear 21 ± 1.41 vs control 45 ± 7.07 → |−24| > 2 × 7.07.
    assert summary.loc["linear", "ocr_marked"]
    # vqa: linear −20 vs 2 × 7.07 = 14.1 → marked; mean arm −0 → not.
    assert summary.loc["linear", "vqa_marked"] and not summary.loc["mean", "vqa_marked"]
    assert not summary.loc["mean", "ocr_marked"] and not summary.loc["mean", "avg_marked"]
    markdown = render_markdown(plan, runs)
    assert "| linear | 55.0 ± 7.1 (−20.0)* | 21.0 ± 1.4 (−24.0)* | 38.0 ± 4.2 (−22.0)* |" in markdown
    assert "| mean | 75.0 ± 8.5 (0.0) | 44.0 ± 4.2 (−1.0) | 59.5 ± 6.4 (−0.5) |" in markdown
    assert "| perceiver (control) | 75.0 ± 7.1 | 45.0 ± 7.1 | 60.0 ± 7.1 | 8.3B | 740M | 64 |" in markdown
    assert "`*`" in markdown and "Mirrors Table 4 of the Idefics2 paper." in markdown


def test_single_seed_shows_no_std_and_no_marker(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("linear", 1),))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    summary = summarise(plan, runs).set_index("arm")
    assert not summary.loc["linear", "vqa_marked"]  # −25 but only one seed: no noise estimate
    assert "| linear | 50.0 (−25.0) | 20.0 (−25.0) | 35.0 (−25.0) |" in render_markdown(plan, runs)


def test_failed_and_missing_runs_are_shown(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("mean", 1), ("linear", 0), ("linear", 1)))
    write_record(tmp_path, record("linear", 1, "failed", "CUDA out of memory\nat step 3"))
    write_record(tmp_path, record("linear", 0, "failed", "loss is NaN"))
    write_tables(tmp_path)
    assert table_row(tmp_path, "linear").startswith("| linear | failed | failed | failed |")
    assert table_row(tmp_path, "linear").endswith("| 0/2 (2 failed) |")
    assert table_row(tmp_path, "mean").endswith("| 1/2 (1 missing) |")
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert markdown.splitlines()[-3:] == [
        f"- mean seed 1 ({run_id('mean', 1)}): missing (no record)",
        f"- linear seed 0 ({run_id('linear', 0)}): RuntimeError: loss is NaN",
        f"- linear seed 1 ({run_id('linear', 1)}): RuntimeError: CUDA out of memory",
    ]
    csv = pd.read_csv(tmp_path / "tables" / f"{AXIS}.csv").set_index("arm")
    assert csv.loc["linear", "n_failed"] == 2 and csv.loc["linear", "n_done"] == 0
    assert pd.isna(csv.loc["linear", "vqa_mean"]) and pd.isna(csv.loc["linear", "params_total"])


def test_missing_arm_and_stale_records(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("mean", 0), ("mean", 1)))
    stale = record("linear", 0)
    stale["run_id"], stale["seed"] = "0123456789ab", 9
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
    assert header == (
        "arm,is_control,n_planned,n_done,n_failed,vqa_mean,vqa_std,vqa_delta,ocr_mean,ocr_std,"
        "ocr_delta,avg_mean,avg_std,avg_delta,params_total,params_trainable,"
        "visual_tokens_per_image,sequence_tokens_per_image,visual_tokens_per_image_eval,train_seconds_mean"
    )
    assert control == ("perceiver,True,2,2,0,75.0000,7.0711,,45.0000,7.0711,,60.0000,7.0711,,"
                       "8300000000,740000000,64,,,10.5000")
    assert linear.startswith("linear,False,2,2,0,55.0000,7.0711,-20.0000,")
    assert "\r" not in text and text.endswith("\n")


def test_same_files_same_bytes_in_any_order(tmp_path: Path) -> None:
    first = tmp_path / "a"
    write_ablation(first, skip=(("mean", 1),))
    paths = write_tables(first)
    assert [p.name for p in paths] == [f"{AXIS}.csv", f"{AXIS}.md"]
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
    assert sorted(p.name for p in write_tables(tmp_path)) == [f"{AXIS}.csv", f"{AXIS}.md"]


@pytest.mark.parametrize(
    ("count", "text"),
    [(640, "640"), (5_000_000, "5M"), (740_000_000, "740M"), (1_020_000, "1.02M"),
     (8_300_000_000, "8.3B"), (999_999, "1M"), (12_345, "12.3K")],
)
def test_human_count(count: int, text: str) -> None:
    assert human_count(count) == text


def test_committed_tables_regenerate_byte_identically_from_committed_records(tmp_path: Path) -> None:
    """results/tables is exactly what results/runs gives: `make tables` on a fresh clone changes nothing."""
    import shutil

    repo_results = Path(__file__).resolve().parents[1] / "results"
    shutil.copytree(repo_results / "runs", tmp_path / "runs")
    written = write_tables(tmp_path)
    assert written, "the repository commits at least one ablation's records"
    for path in written:
        assert path.read_bytes() == (repo_results / "tables" / path.name).read_bytes(), path.name
    # Cross-attention puts one token per image in the LM sequence: the architecture table shows it.
    architecture = (tmp_path / "tables" / "architecture.md").read_text()
    assert "LM tokens" in architecture and "| 64 | 1 |" in architecture
