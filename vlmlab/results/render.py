"""Render an ablation summary (see ``tables.summarise``) as a paper-style Markdown table or a CSV.

Markdown is for people: one decimal, ``mean ± std``, the best mean of each column in bold, the
delta to the control in parentheses with a real minus sign, a ``*`` where a paired t-test over
seeds puts it at p < 0.05, a second table of 95% intervals and p-values, and every run without a
result listed under the table. CSV is for programs: fixed four-decimal floats, p-values to six
significant digits, and empty cells for "unknown", so that ``pandas.read_csv`` gets numbers back.
The LaTeX table (``latex.py``) reuses the cells built here with its own ``Style``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vlmlab.results.columns import (
    MINUS, UNKNOWN, caption_sentences, csv_columns, human_count, human_flops, number, table_columns,
)
from vlmlab.eval.metrics import METRIC_LABELS, averaged
from vlmlab.results.corrections import CORRECTIONS
from vlmlab.results.provenance import provenance_lines
from vlmlab.results.bootstrap import RESAMPLES
from vlmlab.results.chance import chance_scores
from vlmlab.results.answers import Collapse, collapse_lines
from vlmlab.results.records import run_sort_key
from vlmlab.results.stats import ALPHA, t_ppf
from vlmlab.run_record import Plan, PlannedAblation, RunRecord

__all__ = ["human_count", "human_flops"]  # re-exported: the cells of counts are part of what renders a table
MARK = "*"
AT_CHANCE = "\u2020"  # dagger: a mean no better than the chance baseline
CHANCE_ROW = "chance (constant answer)"
COLLAPSED = "Collapsed runs (one answer to every test item of a benchmark: the answer prior, not the task):"
# Summary columns of the values `vlmlab tune` chose per arm (tuned:<config key>), shown after Avg. when present.
TUNED_PREFIX = "tuned:"
TUNED_HEADERS = {"optim.lr_scale": "lr ×"}


@dataclass(frozen=True)
class Style:
    """How one output format writes the parts of a table cell."""

    text: Callable[[str], str]  # escapes plain text (names, costs) for the format
    bold: Callable[[str], str]
    plus_minus: str
    minus: str
    mark: str


MARKDOWN = Style(text=lambda s: s.replace("|", "\\|"), bold=lambda s: f"**{s}**",
                 plus_minus=" ± ", minus=MINUS, mark=MARK)


def markdown_from_summary(
    plan: Plan, summary: pd.DataFrame, runs: list[RunRecord], collapses: list[Collapse] = ()
) -> str:
    """Heading, question, caption, tables, the runs that collapsed to one answer and the list of runs without a
    result, as Markdown."""
    ablation = plan.ablation
    blocks = [f"## {ablation.name}"]
    if ablation.question:
        blocks.append(str(ablation.question).strip())
    if ablation.paper_table:
        blocks.append(f"Mirrors {ablation.paper_table} of the Idefics2 paper.")
    blocks.append(caption(ablation, summary))
    header, rows = table_cells(ablation, summary, MARKDOWN)
    blocks.append(_markdown_table(header, rows))
    if (summary["n_done"] > 0).any():
        test = ("the paired item bootstrap (benchmarks) or t-test over seeds (Avg.)" if item_tested(ablation, summary)
                else "the paired t-test")
        blocks.append("95% confidence interval of each mean over seeds (Student t, n − 1 df; none "
                      f"from one seed) and p of {test} of Δ against the control:")
        blocks.append(_markdown_table(*_interval_cells(ablation, summary)))
    if collapses:
        blocks.append(COLLAPSED + "\n\n" + "\n".join(collapse_lines(list(collapses))))
    failures = failure_lines(ablation.arms, runs)
    if failures:
        blocks.append("Runs without a result:\n\n" + "\n".join(failures))
    if footer := provenance_lines(runs):
        blocks.append("Provenance:\n\n" + "\n".join(f"- {line}" for line in footer))
    return "\n\n".join(blocks) + "\n"


def csv_from_summary(plan: Plan, summary: pd.DataFrame) -> str:
    """One CSV row per arm with counts, statistics and test per metric and Avg., and costs."""
    columns = ["arm", "is_control", "n_planned", "n_done", "n_failed"]
    frame = summary.copy()
    for key in [*plan.ablation.metrics, "avg"]:
        columns += [f"{key}_{part}" for part in ("mean", "std", "ci_low", "ci_high", "delta", "p", "p_adj", "n_paired")]
        # p-values span orders of magnitude: six significant digits, not four decimals.
        for part in ("p", "p_adj"):
            frame[f"{key}_{part}"] = [("" if pd.isna(p) else f"{p:.6g}") for p in frame[f"{key}_{part}"]]
    for key, baseline in chance_scores(plan.ablation).items():  # the baseline, and whether each arm is at it
        columns += [f"{key}_chance", f"{key}_at_chance"]
        frame[f"{key}_chance"] = baseline
    if metric_of := plan.ablation.metric_of:  # what each benchmark's numbers are: a column per benchmark
        for key in plan.ablation.metrics:
            columns.append(f"{key}_metric")
            frame[f"{key}_metric"] = metric_of.get(key, "")
    for _, column in tuned_columns(summary):  # learning rates span orders of magnitude too
        columns.append(column)
        frame[column] = [tuned_text(value, "", ".6g") for value in frame[column]]
    columns += csv_columns(summary)
    return frame[columns].to_csv(
        index=False, float_format="%.4f", lineterminator="\n", na_rep=""
    )


def caption(ablation: PlannedAblation, summary: pd.DataFrame) -> str:
    """What the numbers, the bold, the parentheses and the marker mean, and which test gave it."""
    seeds = list(ablation.seeds)
    n_metrics = len(ablation.metrics)
    mean_of = averaged(ablation.metrics, ablation.metric_of or {})
    points = [name for name in ablation.metrics if name not in mean_of]
    left_out = f" ({', '.join(points)} left out: scored in points, not percent)" if points else ""
    plural = "" if len(seeds) == 1 else "s"
    lines = [
        f"Mean ± std over {len(seeds)} seed{plural} ({', '.join(map(str, seeds))}); std is the "
        "sample std, left out where only one seed finished.",
        f"Avg. is each run's plain mean over its {n_metrics - len(points)} scores{left_out}, then mean ± std over "
        "seeds.",
        "Bold: the best mean of each column (higher is better).",
        f"In parentheses: Δ, the arm's mean minus the control arm's ({ablation.control}), in points.",
        *_test_sentences(ablation, summary),
    ]
    if chance_scores(ablation):
        lines.append(f"{CHANCE_ROW}: the score of each benchmark's most frequent training answer given to every "
                     f"test item; {AT_CHANCE}: an arm's mean at or below it. Avg. is over all "
                     f"{n_metrics - len(points)} benchmarks{' it averages' if points else ''}, those at chance "
                     "included.")
    shared, own = caption_sentences(summary)
    lines += [f"{shared}; seeds: finished/planned.", *own]
    if tuned := tuned_columns(summary):
        lr = f"{TUNED_PREFIX}optim.lr_scale"
        named = [f"{header} (optim.lr_scale, the multiplier of every learning rate)" if column == lr else header
                 for header, column in tuned]
        lines.append(f"{', '.join(named)}: the value{'s' if len(tuned) > 1 else ''} each arm trained at, tuned per "
                     f"arm by vlmlab tune (lowest validation loss of short runs; results/tuning/{ablation.name}/).")
    control = summary[summary["is_control"]].iloc[0]
    if control["n_done"] == 0:
        lines.append(f"The control arm has no finished run ({control['status']}), so no Δ is given.")
    return " ".join(lines)


def _test_sentences(ablation: PlannedAblation, summary: pd.DataFrame) -> list[str]:
    """Which test marks a Δ, on how many seeds, and where there was none."""
    keys = [*ablation.metrics, "avg"]
    compared = summary[~summary["is_control"] & (summary["n_done"] > 0)]
    control_done = bool(summary.loc[summary["is_control"], "n_done"].iloc[0])
    if compared.empty or not control_done:
        return []
    paired = {arm: max(int(row[f"{k}_n_paired"]) for k in keys)
              for arm, row in compared.set_index("arm").iterrows()}
    tested = sorted({n for n in paired.values() if n >= 2})
    lines = []
    if tested:
        counts = f"{tested[0]}" if len(tested) == 1 else f"{tested[0]} to {tested[-1]}"
        if item_tested(ablation, summary):
            lines.append(_item_test_sentence(ablation, summary, counts))
        else:
            lines.append(f"`{MARK}`: p < {ALPHA:g} in a two-sided paired t-test of the arm against the "
                         f"control over the seeds both finished ({counts} paired seeds per arm)"
                         f"{_correction_clause(ablation, summary)}.")
        lines.append(f"With {tested[0]} paired seeds that needs |t| > {t_ppf(0.975, tested[0] - 1):.2f} "
                     f"({tested[0] - 1} df).")
        lines += _power_sentence(ablation, summary)
        if any(summary[f"{k}_zero_spread"].any() for k in keys):
            lines.append("Where an arm differs from the control by the same amount in every paired seed, the "
                         "differences have no spread: t is infinite, the test's degenerate case, left unmarked.")
    untested = [arm for arm, n in paired.items() if n < 2]
    if untested:
        why = "(the records hold aggregate scores only, so no per-sample test is possible either)"
        if len(untested) == len(paired):
            lines.append(f"No arm shares two finished seeds with the control, so no Δ has a p-value or a "
                         f"`{MARK}` {why}.")
        else:
            one = len(untested) == 1
            lines.append(f"{', '.join(untested)} share{'s' if one else ''} at most one finished seed with the "
                         f"control, so {'its' if one else 'their'} Δ has no p-value and no `{MARK}` {why}.")
    return lines


def table_cells(
    ablation: PlannedAblation, summary: pd.DataFrame, style: Style
) -> tuple[list[str], list[list[str]]]:
    """Header and one row of cells per arm of the main table, written in `style`."""
    keys = [*ablation.metrics, "avg"]
    tuned = tuned_columns(summary)
    costs = table_columns(summary)
    header = [style.text(h) for h in (ablation.name, *benchmark_headers(ablation), "Avg.", *(h for h, _ in tuned),
                                      *(c.header for c in costs), "seeds")]
    rows = []
    for _, row in summary.iterrows():
        name = f"{row['arm']} (control)" if row["is_control"] else row["arm"]
        cells = [*(tuned_text(row[column]) for _, column in tuned), *(c.cell(row[c.name]) for c in costs),
                 _seeds_cell(row)]
        rows.append([style.text(name), *(_score_cell(row, key, style) for key in keys),
                     *(style.text(cell) for cell in cells)])
    if chance := chance_scores(ablation):
        rows.append([style.text(CHANCE_ROW), *(style.text(number(chance[k]) if k in chance else UNKNOWN) for k in keys),
                     *(style.text(UNKNOWN) for _ in range(len(header) - len(keys) - 1))])
    return header, rows


def benchmark_headers(ablation: PlannedAblation) -> list[str]:
    """Each benchmark's header, naming its metric as the paper's tables do (`synth_caption (CIDEr)`) where the plan
    says which it is."""
    metric_of = ablation.metric_of or {}
    return [f"{name} ({METRIC_LABELS.get(metric_of[name], metric_of[name])})" if name in metric_of else name
            for name in ablation.metrics]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table: first column left-aligned, the others right-aligned."""
    lines = [_line(header), _line([":---"] + ["---:"] * (len(header) - 1))]
    return "\n".join([*lines, *(_line(cells) for cells in rows)])


def _line(cells: list[str]) -> str:
    """One Markdown table line (cells come escaped)."""
    return "| " + " | ".join(cells) + " |"


def _interval_cells(ablation: PlannedAblation, summary: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the Markdown table of 95% intervals and paired-test p-values."""
    keys = [*ablation.metrics, "avg"]
    header = [MARKDOWN.text(h) for h in (ablation.name, *benchmark_headers(ablation), "Avg.")]
    rows = []
    for _, row in summary.iterrows():
        name = f"{row['arm']} (control)" if row["is_control"] else row["arm"]
        rows.append([MARKDOWN.text(name),
                     *(_interval_cell(row, key, ablation.correction != "none") for key in keys)])
    return header, rows


def item_tested(ablation: PlannedAblation, summary: pd.DataFrame) -> bool:
    """Whether the table's benchmarks were tested over items (every done run saved its item scores)."""
    return bool(ablation.metrics) and f"{ablation.metrics[0]}_items" in summary


def _item_test_sentence(ablation: PlannedAblation, summary: pd.DataFrame, counts: str) -> str:
    """How a benchmark's Δ was tested over items, and the smallest Δ each benchmark could show."""
    compared = summary[~summary["is_control"] & (summary["n_done"] > 0)]
    items = sorted({int(n) for k in ablation.metrics for n in compared[f"{k}_items"].dropna()})
    span = f"{items[0]}" if len(items) == 1 else f"{items[0]} to {items[-1]}"
    return (f"`{MARK}`: p < {ALPHA:g} in a two-sided paired bootstrap over the test items of the seeds both "
            f"finished ({RESAMPLES:,} resamples of the items within each seed; {counts} paired seeds and {span} "
            f"items per arm and benchmark; Avg. by a paired t-test over seeds){_correction_clause(ablation, summary)}.")


def _power_sentence(ablation: PlannedAblation, summary: pd.DataFrame) -> list[str]:
    """The smallest Δ each score's test could detect, so that a reader knows what no mark means."""
    compared = summary[~summary["is_control"] & (summary["n_done"] > 0)]
    keys = [*ablation.metrics, "avg"]
    values = [f"{'Avg.' if k == 'avg' else k} {number(compared[f'{k}_detectable'].median())}" for k in keys
              if f"{k}_detectable" in compared and compared[f"{k}_detectable"].notna().any()]
    if not values:
        return []
    return [f"Power: the smallest Δ each test detects with 80% power at p < {ALPHA:g}, given its seeds (and items) "
            f"and the spread of their differences (each test on its own; the median over arms), in points: "
            f"{', '.join(values)}."]


def _correction_clause(ablation: PlannedAblation, summary: pd.DataFrame) -> str:
    """`, after <name> correction over the table's N tests ...`, or nothing when the plan asks for none."""
    if ablation.correction == "none":
        return ""
    correction = CORRECTIONS[ablation.correction]
    tests = int(sum(summary[f"{key}_p_adj"].notna().sum() for key in [*ablation.metrics, "avg"]))
    return (f", its p adjusted by the {correction.name} correction over the table's {tests} tests (every arm "
            f"against the control on every benchmark and Avg.), which keeps {correction.controls} at {ALPHA:g}")


def _p_text(p: float) -> str:
    """A p-value to three decimals, or `< 0.001`."""
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _interval_cell(row: pd.Series, key: str, corrected: bool = False) -> str:
    """`[low, high]; p = …` for one score of one arm (and the adjusted p, when the table is `corrected`)."""
    if row["n_done"] == 0:
        return str(row["status"])
    low, high, p = row[f"{key}_ci_low"], row[f"{key}_ci_high"], row[f"{key}_p"]
    parts = [UNKNOWN if pd.isna(low) else f"[{number(low)}, {number(high)}]"]
    if row[f"{key}_zero_spread"]:
        parts.append("no test (same Δ in every seed)")  # t = ±inf: the test's degenerate case
    elif not pd.isna(p):
        adjusted = f" (adjusted p {_p_text(row[f'{key}_p_adj'])})" if corrected else ""
        parts.append(f"p {_p_text(p)}{adjusted}")
    elif not row["is_control"] and not pd.isna(paired := row[f"{key}_n_paired"]) and paired >= 2:  # NA: no control
        parts.append("no test: same score as the control in every seed")  # t = 0/0
    return "; ".join(parts)


def _score_cell(row: pd.Series, key: str, style: Style) -> str:
    """`mean ± std (Δ)*` for one score of one arm, the mean bold when best, or why there is no number."""
    if row["n_done"] == 0:
        return style.text(str(row["status"]))
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if pd.isna(mean):
        return style.text(UNKNOWN)
    text = number(mean, style.minus)
    text = style.bold(text) if row[f"{key}_best"] else text
    if not pd.isna(std):
        text += style.plus_minus + number(std, style.minus)
    delta = row[f"{key}_delta"]
    if not pd.isna(delta):
        text += f" ({_signed(delta, style.minus)})" + (style.mark if row[f"{key}_marked"] else "")
    if row.get(f"{key}_at_chance", False):
        text += style.text(AT_CHANCE)
    return text


def tuned_columns(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The (header, summary column) of each tuned config key, by key; none when no arm was tuned."""
    keys = sorted(c[len(TUNED_PREFIX):] for c in summary.columns if str(c).startswith(TUNED_PREFIX))
    return [(TUNED_HEADERS.get(key, key), f"{TUNED_PREFIX}{key}") for key in keys]


def tuned_text(value: Any, unknown: str = UNKNOWN, spec: str = ".3g") -> str:
    """A tuned value: numbers to `spec` (3 significant digits: a search of a few trials is no more precise)."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return unknown
    if isinstance(value, float):
        return format(value, spec)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _seeds_cell(row: pd.Series) -> str:
    """`done/planned`, plus how many of the rest failed, diverged or are missing."""
    others = {
        "failed": row["n_failed"] - row["n_diverged"],
        "diverged": row["n_diverged"],
        "missing": row["n_missing"],
    }
    notes = [f"{count} {status}" for status, count in others.items() if count]
    text = f"{row['n_done']}/{row['n_planned']}"
    return f"{text} ({', '.join(notes)})" if notes else text


def _signed(value: float, minus: str = MINUS) -> str:
    """One decimal with an explicit sign; a delta that rounds to zero gets none."""
    text = f"{value:+.1f}"
    if text in ("+0.0", "-0.0"):
        return "0.0"
    return text.replace("-", minus)


def failure_lines(arms: list[str], runs: list[RunRecord]) -> list[str]:
    """`- <arm> seed <s> (<run_id>): <error>` for every planned run that did not finish."""
    order = {arm: i for i, arm in enumerate(arms)}
    unfinished = [run for run in runs if not run.done and run.arm in order]
    unfinished.sort(key=lambda run: (order[run.arm], run_sort_key(run)))
    return [f"- {run.arm} seed {run.seed} ({run.run_id}): {_what_went_wrong(run)}" for run in unfinished]


def _what_went_wrong(run: RunRecord) -> str:
    """`<error type>: <first line of message>`, or the status when there is no error."""
    error = run.error
    if run.status == "missing":
        return f"record skipped: {error.message}" if error is not None else "missing (no record)"
    if error is None:
        return str(run.status)
    kind = str(error.type or run.status)
    lines = str(error.message or "").strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind
