"""Aggregate the records of one ablation into a per-arm summary, and write its tables.

The summary is the single source of every output: Markdown (for the README), LaTeX (for the
paper), CSV (for pandas users) and the bar chart are renderings of the same DataFrame (see
``render.py``, ``latex.py``, ``plots.py``), so they cannot disagree. Everything here is a pure
function of the files under ``results_dir``: runs are sorted before any arithmetic, so the order in
which the filesystem or the plan lists them never changes a byte of the output.

Statistics are over seeds (``stats.py``): mean, sample std and a 95% Student-t interval per arm,
and for the difference to the control a two-sided paired t-test over the seeds both finished.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vlmlab.eval.metrics import averaged
from vlmlab.results.records import (
    RecordError,
    StrPath,
    answers_path,
    atomic_write_bytes,
    atomic_write_text,
    load_axis,
    loss_log_path,
    record_path,
    run_sort_key,
)
from vlmlab.results.chance import chance_scores
from vlmlab.results.answers import Collapse, RunAnswers, collapsed, read_answers
from vlmlab.results.bootstrap import paired_bootstrap
from vlmlab.results.columns import COST_COLUMNS, number_or_nan
from vlmlab.results.corrections import CORRECTIONS, Correction
from vlmlab.results.latex import latex_from_summary
from vlmlab.results.render import TUNED_PREFIX, csv_from_summary, markdown_from_summary
from vlmlab.results.zoo_table import render_zoo, zoo_records
from vlmlab.results.stats import ALPHA, PairedTest, best_flags, describe, paired_by_seed, t_ppf
from vlmlab.run_record import Plan, RunRecord

log = logging.getLogger(__name__)

# Scores of one arm: per metric (and "avg"), the (seed, score) of each done run in run order.
Scores = dict[str, list[tuple[str, float]]]


def summarise(plan: Plan, runs: list[RunRecord], answers: list[RunAnswers] | None = None) -> pd.DataFrame:
    """One row per arm, in plan order: run counts, statistics and tests per metric and Avg., costs. With the runs'
    `answers` and every done run's item scores among them, each benchmark is tested over items (a paired
    bootstrap) rather than over seeds."""
    ablation = plan.ablation
    metrics = list(ablation.metrics)
    by_arm = _runs_by_arm(runs, ablation.arms)
    mean_of = averaged(metrics, ablation.metric_of or {})
    scores = {arm: _arm_scores(arm_runs, metrics, mean_of) for arm, arm_runs in by_arm.items()}
    control = scores[ablation.control]
    rows = [
        _row(arm, arm == ablation.control, arm_runs, scores[arm], control, metrics)
        for arm, arm_runs in by_arm.items()
    ]
    frame = pd.DataFrame(rows)
    for key in [*metrics, "avg"]:
        # Higher is better for every score the suite reports; ties are all bold.
        frame[f"{key}_best"] = best_flags([float(m) for m in frame[f"{key}_mean"]])
    if (items := _item_scores(by_arm, answers or [], metrics)) is not None:
        _test_items(frame, metrics, items, _item_groups(answers or []), ablation.control)
    _correct(frame, [*metrics, "avg"], CORRECTIONS[ablation.correction])
    for key, baseline in chance_scores(ablation).items():
        # At chance: no better than the benchmark's most frequent training answer given to every item.
        frame[f"{key}_at_chance"] = [bool(mean <= baseline + 1e-9) for mean in frame[f"{key}_mean"].fillna(np.inf)]
    # Nullable ints: a cost is an integer when known and empty (not 1.0e9 or "nan") when not.
    paired = {f"{key}_n_paired": "Int64" for key in [*metrics, "avg"]}
    return frame.astype({**{c.name: "Int64" for c in COST_COLUMNS if c.integer}, **paired})


ItemScores = dict[str, dict[str, dict[str, list[float]]]]  # arm -> benchmark -> pairing key of a seed -> scores
ItemGroups = dict[str, dict[str, dict[str, list[tuple[str, ...]]]]]  # the same, to each item's group key


def _item_scores(by_arm: dict[str, list[RunRecord]], answers: list[RunAnswers], metrics: list[str]) -> ItemScores | None:
    """Per arm, benchmark and seed, the item scores of the done runs; None unless every done run has them for every
    benchmark (a table tests all its arms one way)."""
    scored = {(a.arm, _seed_key(a.seed)): a.scores for a in answers}
    items: ItemScores = {}
    for arm, arm_runs in by_arm.items():
        for run in (r for r in arm_runs if r.done):
            scores = scored.get((arm, key := _seed_key(run.seed)))
            if not scores or any(not scores.get(m) for m in metrics):
                return None
            for metric in metrics:
                items.setdefault(arm, {}).setdefault(metric, {})[key] = scores[metric]
    return items or None


def _item_groups(answers: list[RunAnswers]) -> ItemGroups:
    """Per arm, benchmark and seed, the group key of each item, where the run's answers name them."""
    groups: ItemGroups = {}
    for run in answers:
        for metric, keys in run.groups.items():
            groups.setdefault(run.arm, {}).setdefault(metric, {})[_seed_key(run.seed)] = keys
    return groups


def _test_items(frame: pd.DataFrame, metrics: list[str], items: ItemScores, groups: ItemGroups,
                control: str) -> None:
    """Replace each benchmark's seed-level test by the paired item bootstrap (vlmlab.results.bootstrap; drawing
    whole groups where the answers name them), and give the difference it could detect (Avg. keeps the t-test
    over seeds: its items are not one population)."""
    for metric in metrics:
        tests = [None if arm == control else paired_bootstrap(items.get(arm, {}).get(metric, {}),
                                                               items.get(control, {}).get(metric, {}),
                                                               groups=groups.get(control, {}).get(metric))
                 for arm in frame["arm"]]
        frame[f"{metric}_p"] = [float("nan") if t is None else t.p for t in tests]
        frame[f"{metric}_n_paired"] = [None if t is None else t.seeds for t in tests]
        frame[f"{metric}_items"] = [None if t is None else t.items for t in tests]
        frame[f"{metric}_detectable"] = [float("nan") if t is None else t.detectable for t in tests]
        frame[f"{metric}_zero_spread"] = False  # a bootstrap has no degenerate case of the t-test's kind


def _correct(frame: pd.DataFrame, keys: list[str], correction: Correction) -> None:
    """Adjust the p-value of every comparison of the table (arms × benchmarks and Avg.) for their number, as one
    family, into `<key>_p_adj`, and mark a difference where its adjusted p is below the level. A degenerate test
    (no spread across seeds) is no evidence: it is left out of the family and unmarked."""
    cells = [(row, key) for key in keys for row in frame.index
             if not np.isnan(frame.at[row, f"{key}_p"]) and not frame.at[row, f"{key}_zero_spread"]]
    adjusted = correction.adjust([float(frame.at[row, f"{key}_p"]) for row, key in cells])
    for key in keys:
        frame[f"{key}_p_adj"] = float("nan")
    for (row, key), p_adj in zip(cells, adjusted):
        frame.at[row, f"{key}_p_adj"] = p_adj
    for key in keys:
        frame[f"{key}_marked"] = [bool(p < ALPHA) for p in frame[f"{key}_p_adj"].fillna(1.0)]


def render_markdown(plan: Plan, runs: list[RunRecord]) -> str:
    """The paper-style Markdown table of one ablation, with heading, caption and failures."""
    return markdown_from_summary(plan, summarise(plan, runs), runs)


def render_csv(plan: Plan, runs: list[RunRecord]) -> str:
    """The machine-friendly CSV table of one ablation, one row per arm."""
    return csv_from_summary(plan, summarise(plan, runs))


def render_latex(plan: Plan, runs: list[RunRecord]) -> str:
    """The booktabs LaTeX tabular of one ablation, caption in a comment, for \\input."""
    return latex_from_summary(plan, summarise(plan, runs), runs)


@dataclass
class TablesReport:
    """What `write_all_tables` wrote (sorted) and everything it skipped or distrusted, and why."""

    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def write_all_tables(results_dir: StrPath) -> TablesReport:
    """Write tables/<axis>.{md,csv,tex,png} and <axis>_loss.png for every axis with a plan.json."""
    from vlmlab.results.plots import read_loss_curves  # matplotlib: imported only to draw

    root = Path(results_dir)
    report = TablesReport()
    for plan_file in sorted((root / "runs").glob("*/plan.json")):
        axis = plan_file.parent.name
        try:
            plan, runs, warnings = load_axis(root, axis)
            answers = read_answers([(run.arm, run.seed, answers_path(record_path(root, axis, run.arm, run.run_id)))
                                    for arm_runs in _runs_by_arm(runs, plan.ablation.arms).values()
                                    for run in arm_runs if run.done])
            summary = summarise(plan, runs, answers)
        except (OSError, RecordError) as exc:
            report.warnings.append(f"{axis}: no tables written: {exc}")
            continue
        except Exception as exc:  # one axis with records nobody foresaw must not cost the others theirs
            report.warnings.append(f"{axis}: no tables written: {type(exc).__name__}: {exc}")
            continue
        report.warnings += [f"{axis}: {warning}" for warning in warnings]
        curves, curve_warnings = read_loss_curves(_loss_logs(root, axis, plan, runs))
        report.warnings += [f"{axis}: {warning}" for warning in curve_warnings]
        renderers = _renderers(axis, plan, runs, summary, curves, collapsed(answers, list(plan.ablation.metrics)))
        for name, render in renderers.items():
            try:
                report.written.append(atomic_write_bytes(root / "tables" / name, render()))
            except Exception as exc:  # a broken renderer or a full disk loses one file, not the rest
                report.warnings.append(f"{axis}: {name} not written: {type(exc).__name__}: {exc}")
    try:  # the pretrained backbones' qualities, which the backbone tables refer to
        if zoo := zoo_records(root):
            report.written.append(atomic_write_text(root / "tables" / "zoo.md", render_zoo(zoo)))
    except Exception as exc:
        report.warnings.append(f"zoo: zoo.md not written: {type(exc).__name__}: {exc}")
    report.written.sort()
    return report


def write_tables(results_dir: StrPath) -> list[Path]:
    """Write every table of every axis with a plan.json, log what was skipped; return the paths, sorted."""
    report = write_all_tables(results_dir)
    for warning in report.warnings:
        log.warning("%s", warning)
    return report.written


def _renderers(
    axis: str, plan: Plan, runs: list[RunRecord], summary: pd.DataFrame,
    curves: dict[str, pd.DataFrame], collapses: list[Collapse],
) -> dict[str, Callable[[], bytes]]:
    """File name -> renderer of its bytes, for the five outputs of one axis."""
    from vlmlab.results.plots import loss_png, scores_png

    return {
        f"{axis}.md": lambda: markdown_from_summary(plan, summary, runs, collapses).encode(),
        f"{axis}.csv": lambda: csv_from_summary(plan, summary).encode(),
        f"{axis}.tex": lambda: latex_from_summary(plan, summary, runs, collapses).encode(),
        f"{axis}.png": lambda: scores_png(plan, summary),
        f"{axis}_loss.png": lambda: loss_png(plan, curves),
    }


def _loss_logs(
    root: Path, axis: str, plan: Plan, runs: list[RunRecord]
) -> dict[str, list[Path]]:
    """Per arm (plan order), the CSV logs beside the records of its done runs, in run order."""
    by_arm = _runs_by_arm(runs, plan.ablation.arms)
    return {
        arm: [loss_log_path(record_path(root, axis, arm, run.run_id)) for run in arm_runs if run.done]
        for arm, arm_runs in by_arm.items()
    }


def _runs_by_arm(runs: list[RunRecord], arms: list[str]) -> dict[str, list[RunRecord]]:
    """The runs of each planned arm, sorted; runs of arms outside the plan are dropped."""
    grouped: dict[str, list[RunRecord]] = {arm: [] for arm in arms}
    for run in runs:
        if run.arm in grouped:
            grouped[run.arm].append(run)
    return {arm: sorted(arm_runs, key=run_sort_key) for arm, arm_runs in grouped.items()}


def _seed_key(seed: Any) -> str:
    """A seed as the hashable key that pairs an arm's run with the control's."""
    return json.dumps(seed, sort_keys=True)


def _arm_scores(runs: list[RunRecord], metrics: list[str], mean_of: list[str]) -> Scores:
    """Per metric and Avg. (the mean over `mean_of`), the (seed, score) of each of the arm's done runs."""
    done = [run for run in runs if run.done]
    seeds = [_seed_key(run.seed) for run in done]
    scores = np.array(
        [[number_or_nan(run.metrics.get(m)) for m in metrics] for run in done], dtype=float
    ).reshape(len(done), len(metrics))
    by_key = {m: list(zip(seeds, scores[:, j].tolist())) for j, m in enumerate(metrics)}
    # The paper's Avg. score: each run's plain mean over the tasks first, then over seeds. A run
    # missing a task has no Avg. (averaging fewer tasks would not be the same quantity).
    columns = [metrics.index(m) for m in mean_of]
    per_run = scores[:, columns].mean(axis=1) if columns else np.full(len(done), np.nan)
    by_key["avg"] = list(zip(seeds, per_run.tolist()))
    return by_key


def _row(
    arm: str,
    is_control: bool,
    runs: list[RunRecord],
    scores: Scores,
    control: Scores,
    metrics: list[str],
) -> dict[str, Any]:
    """The summary row of one arm."""
    counts = {s: sum(run.status == s for run in runs) for s in ("done", "failed", "diverged")}
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
        row.update(_score_columns(key, scores[key], control[key], is_control))
    row.update({f"{TUNED_PREFIX}{key}": value for key, value in _tuned(runs).items()})
    row.update(_costs(runs))
    return row


def _tuned(runs: list[RunRecord]) -> dict[str, Any]:
    """The values `vlmlab tune` chose for the arm (its records' `ablation.tuned` label), from its first run that
    has them, done runs first; empty when the arm was not tuned."""
    for run in sorted(runs, key=lambda run: not run.done):
        tuned = (run.config.get("ablation") or {}).get("tuned")
        if isinstance(tuned, dict) and tuned:
            return tuned
    return {}


def _arm_status(counts: dict[str, int]) -> str:
    """"done" if any seed finished, else what the arm's cells show instead of numbers."""
    if counts["done"]:
        return "done"
    if counts["failed"]:
        return "failed"
    return "diverged" if counts["diverged"] else "missing"


def _score_columns(
    key: str, arm: list[tuple[str, float]], control: list[tuple[str, float]], is_control: bool
) -> dict[str, Any]:
    """Statistics over seeds, the delta to the control and its paired test, for one score of one arm."""
    mine, theirs = describe([v for _, v in arm]), describe([v for _, v in control])
    delta = float("nan") if is_control else mine.mean - theirs.mean
    test = paired_by_seed(_pairable(arm), _pairable(control))
    tested = not is_control and test.n >= 2 and not np.isnan(test.p)
    return {
        f"{key}_mean": mine.mean,
        f"{key}_std": mine.std,
        f"{key}_n": mine.n,
        f"{key}_ci_low": mine.ci_low,
        f"{key}_ci_high": mine.ci_high,
        # Δ is the difference of the means the table shows; the test pairs the seeds both finished.
        f"{key}_delta": delta,
        f"{key}_n_paired": None if is_control else test.n,
        f"{key}_t": test.t if tested else float("nan"),
        f"{key}_p": test.p if tested else float("nan"),
        # A difference with no spread across seeds (t infinite) is the test's degenerate case, not evidence:
        # with two seeds it happens by coincidence, so it is reported but never marked (_correct marks the rest).
        f"{key}_zero_spread": bool(tested and test.zero_spread),
        f"{key}_detectable": _detectable(test) if tested else float("nan"),
    }


def _detectable(test: PairedTest) -> float:
    """The smallest |Δ| a paired t-test over this many seeds, with the spread of their differences, detects with
    80% power at p < ALPHA: (t of the two-sided level + t of the power) times the standard error of the mean
    difference. NaN where the differences have no spread."""
    if not np.isfinite(test.t) or test.t == 0:
        return float("nan")
    df = test.n - 1
    return (t_ppf(1 - ALPHA / 2, df) + t_ppf(0.8, df)) * abs(test.mean_diff / test.t)


def _pairable(scores: list[tuple[str, float]]) -> dict[str, float]:
    """Score by seed, for the seeds that occur once with a number (a repeated seed cannot be paired)."""
    counts: dict[str, int] = {}
    for seed, _ in scores:
        counts[seed] = counts.get(seed, 0) + 1
    return {seed: value for seed, value in scores if counts[seed] == 1 and not np.isnan(value)}


def _costs(runs: list[RunRecord]) -> dict[str, Any]:
    """The arm's value of every cost column (vlmlab.results.columns), from its done runs.

    A field that older records lack is NaN / None here, an empty cell in the tables.
    """
    done = [run.cost for run in runs if run.done]
    return {column.name: column.value(done) for column in COST_COLUMNS}
