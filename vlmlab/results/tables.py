"""Aggregate the records of one ablation into a per-arm summary, and write its tables.

The summary is the single source of both outputs: Markdown (for the README and the paper) and CSV
(for pandas users) are renderings of the same DataFrame (see ``render.py``), so they cannot
disagree. Everything here is a pure function of the files under ``results_dir``: runs are sorted
before any arithmetic, so the order in which the filesystem or the plan lists them never changes
a byte of the output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlmlab.results.records import StrPath, atomic_write_text, load_axis, run_sort_key
from vlmlab.results.render import csv_from_summary, markdown_from_summary

log = logging.getLogger(__name__)

COST_KEYS = (
    "params_total", "params_trainable", "visual_tokens_per_image",
    # Tokens the image takes in the LM sequence (1 under cross-attention), and visual tokens at evaluation
    # (more with image splitting at inference): shown only in tables where they differ from visual tokens.
    "sequence_tokens_per_image", "visual_tokens_per_image_eval",
)


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (NaN below two values) and number of values of one score over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: np.ndarray) -> "Stat":
        """Statistics of the non-NaN entries of `values`."""
        values = values[~np.isnan(values)]
        n = len(values)
        mean = float(np.mean(values)) if n else float("nan")
        std = float(np.std(values, ddof=1)) if n >= 2 else float("nan")
        return cls(mean, std, n)


def summarise(plan: dict[str, Any], runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per arm, in plan order: run counts, mean/std/delta per metric and Avg., costs."""
    ablation = plan["ablation"]
    metrics = list(ablation["metrics"])
    by_arm = _runs_by_arm(runs, ablation["arms"])
    stats = {arm: _arm_scores(arm_runs, metrics) for arm, arm_runs in by_arm.items()}
    control = stats[ablation["control"]]
    rows = [
        _row(arm, arm == ablation["control"], arm_runs, stats[arm], control, metrics)
        for arm, arm_runs in by_arm.items()
    ]
    frame = pd.DataFrame(rows)
    # Nullable ints: a cost is an integer when known and empty (not 1.0e9 or "nan") when not.
    return frame.astype({key: "Int64" for key in COST_KEYS})


def render_markdown(plan: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The paper-style Markdown table of one ablation, with heading, caption and failures."""
    return markdown_from_summary(plan, summarise(plan, runs), runs)


def render_csv(plan: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """The machine-friendly CSV table of one ablation, one row per arm."""
    return csv_from_summary(plan, summarise(plan, runs))


def write_tables(results_dir: StrPath) -> list[Path]:
    """Write tables/<axis>.md and .csv for every axis with a plan.json; return the paths, sorted."""
    root = Path(results_dir)
    written: list[Path] = []
    for plan_file in sorted((root / "runs").glob("*/plan.json")):
        axis = plan_file.parent.name
        plan, runs, warnings = load_axis(root, axis)
        for warning in warnings:
            log.warning("%s: %s", axis, warning)
        tables = root / "tables"
        written.append(atomic_write_text(tables / f"{axis}.md", render_markdown(plan, runs)))
        written.append(atomic_write_text(tables / f"{axis}.csv", render_csv(plan, runs)))
    return sorted(written)


def _runs_by_arm(runs: list[dict[str, Any]], arms: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The runs of each planned arm, sorted; runs of arms outside the plan are dropped."""
    grouped: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for run in runs:
        arm = run.get("ablation", {}).get("arm")
        if arm in grouped:
            grouped[arm].append(run)
    return {arm: sorted(arm_runs, key=run_sort_key) for arm, arm_runs in grouped.items()}


def _arm_scores(runs: list[dict[str, Any]], metrics: list[str]) -> dict[str, Stat]:
    """Per-metric and Avg. statistics over the arm's done runs."""
    done = [run for run in runs if run["status"] == "done"]
    scores = np.array(
        [[_score(run["metrics"].get(m)) for m in metrics] for run in done], dtype=float
    ).reshape(len(done), len(metrics))
    stats = {m: Stat.of(scores[:, j]) for j, m in enumerate(metrics)}
    # The paper's Avg. score: each run's plain mean over the tasks first, then over seeds. A run
    # missing a task has no Avg. (averaging fewer tasks would not be the same quantity).
    per_run = scores.mean(axis=1) if metrics else np.full(len(done), np.nan)
    stats["avg"] = Stat.of(per_run)
    return stats


def _score(value: Any) -> float:
    """A metric value as a float; anything absent or non-numeric is NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return float("nan")
    return float(value)


def _row(
    arm: str,
    is_control: bool,
    runs: list[dict[str, Any]],
    stats: dict[str, Stat],
    control: dict[str, Stat],
    metrics: list[str],
) -> dict[str, Any]:
    """The summary row of one arm."""
    counts = {s: sum(run["status"] == s for run in runs) for s in ("done", "failed", "diverged")}
    row: dict[str, Any] = {
        "arm": arm,
        "is_control": is_control,
        "n_planned": len(runs),
        "n_done": counts["done"],
        # A diverged run is a failure of the arm too; the Markdown still names it separately.
        "n_failed": counts["failed"] + counts["diverged"],
        "n_diverged": counts["diverged"],
        "n_missing": len(runs) - sum(counts.values()),
        "status": _arm_status(counts),
    }
    for key in [*metrics, "avg"]:
        row.update(_score_columns(key, stats[key], control[key], is_control))
    row.update(_costs(runs))
    return row


def _arm_status(counts: dict[str, int]) -> str:
    """"done" if any seed finished, else what the arm's cells show instead of numbers."""
    if counts["done"]:
        return "done"
    if counts["failed"]:
        return "failed"
    return "diverged" if counts["diverged"] else "missing"


def _score_columns(key: str, arm: Stat, control: Stat, is_control: bool) -> dict[str, Any]:
    """Mean, std, n, delta to control and whether the delta stands out of seed noise."""
    delta = float("nan") if is_control else arm.mean - control.mean
    # Noise is judged only when both arms have a std; one seed says nothing about spread.
    noisy = arm.n < 2 or control.n < 2 or np.isnan(delta)
    marked = not noisy and abs(delta) > 2 * max(arm.std, control.std)
    return {
        f"{key}_mean": arm.mean,
        f"{key}_std": arm.std,
        f"{key}_n": arm.n,
        f"{key}_delta": delta,
        f"{key}_marked": bool(marked),
    }


def _costs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Costs from the arm's done runs: sizes from the first (they match across seeds), mean time."""
    done = [run for run in runs if run["status"] == "done"]
    first = (done[0].get("cost") or {}) if done else {}
    costs: dict[str, Any] = {key: _int_or_none(first.get(key)) for key in COST_KEYS}
    seconds = [_score((run.get("cost") or {}).get("train_seconds")) for run in done]
    costs["train_seconds_mean"] = Stat.of(np.array(seconds, dtype=float)).mean
    return costs


def _int_or_none(value: Any) -> int | None:
    """An integer cost, or None when it is absent or not a number."""
    number = _score(value)
    return None if np.isnan(number) else int(round(number))
