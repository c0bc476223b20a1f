"""Render an ablation summary (see ``tables.summarise``) as a paper-style Markdown table or a CSV.

Markdown is for people: one decimal, ``mean ± std``, the delta to the control in parentheses with
a real minus sign, a ``*`` where the delta stands out of seed noise, and every run without a result
listed under the table. CSV is for programs: fixed four-decimal floats and empty cells for
"unknown", so that ``pandas.read_csv`` gets numbers back.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from vlmlab.results.records import run_sort_key

MINUS = "\u2212"  # a real minus sign, the width of "+", so columns of deltas line up
UNKNOWN = "\u2013"  # en dash: a value that no finished run reports
MARK = "*"
COST_HEADERS = ("params", "trainable", "visual tokens", "train s", "seeds")
# Token columns that appear only when some arm's value differs from its visual tokens per image.
OPTIONAL_TOKENS = (("LM tokens", "sequence_tokens_per_image"), ("eval tokens", "visual_tokens_per_image_eval"))


def markdown_from_summary(
    plan: dict[str, Any], summary: pd.DataFrame, runs: list[dict[str, Any]]
) -> str:
    """Heading, question, caption, table and the list of runs without a result, as Markdown."""
    ablation = plan["ablation"]
    blocks = [f"## {ablation['name']}"]
    if ablation.get("question"):
        blocks.append(str(ablation["question"]).strip())
    if ablation.get("paper_table"):
        blocks.append(f"Mirrors {ablation['paper_table']} of the Idefics2 paper.")
    blocks.append(_caption(ablation, summary))
    blocks.append(_table(ablation, summary))
    failures = _failure_lines(ablation["arms"], runs)
    if failures:
        blocks.append("Runs without a result:\n\n" + "\n".join(failures))
    return "\n\n".join(blocks) + "\n"


def csv_from_summary(plan: dict[str, Any], summary: pd.DataFrame) -> str:
    """One CSV row per arm with counts, mean/std/delta per metric and Avg., and costs."""
    columns = ["arm", "is_control", "n_planned", "n_done", "n_failed"]
    for key in [*plan["ablation"]["metrics"], "avg"]:
        columns += [f"{key}_mean", f"{key}_std", f"{key}_delta"]
    columns += ["params_total", "params_trainable", "visual_tokens_per_image", "sequence_tokens_per_image",
                "visual_tokens_per_image_eval", "train_seconds_mean"]
    return summary[columns].to_csv(
        index=False, float_format="%.4f", lineterminator="\n", na_rep=""
    )


def human_count(value: Any) -> str:
    """A parameter count the way papers print it: 5M, 740M, 1.02M, 8.3B."""
    if pd.isna(value):
        return UNKNOWN
    count = int(value)
    if abs(count) < 1000:
        return str(count)
    for unit, scale in (("K", 1e3), ("M", 1e6), ("B", 1e9)):
        text = f"{count / scale:.3g}"
        # 999,999 rounds to "1e+03" thousand: that is 1M, so let the next unit print it.
        if abs(float(text)) < 1000:
            return text + unit
    return f"{count / 1e12:.3g}T"


def _caption(ablation: dict[str, Any], summary: pd.DataFrame) -> str:
    """What the numbers, the parentheses and the marker mean."""
    seeds = list(ablation["seeds"])
    n_metrics = len(ablation["metrics"])
    plural = "" if len(seeds) == 1 else "s"
    lines = [
        f"Mean ± std over {len(seeds)} seed{plural} ({', '.join(map(str, seeds))}); std is the "
        "sample std, left out where only one seed finished.",
        f"Avg. is each run's plain mean over its {n_metrics} scores, then mean ± std over seeds.",
        f"In parentheses: Δ, the difference to the control arm ({ablation['control']}) in points. "
        f"`{MARK}`: |Δ| exceeds twice the larger seed std of the two arms (both with ≥ 2 "
        "finished seeds), so it stands out of seed noise.",
        "params / trainable: total and trainable parameters; visual tokens: per image; "
        "train s: mean training time in seconds; seeds: finished/planned.",
    ]
    meaning = {"LM tokens": "LM tokens: tokens an image takes in the language model's sequence (1 under "
                            "cross-attention, whose blocks attend to the visual tokens)",
               "eval tokens": "eval tokens: visual tokens per image at evaluation (image splitting at inference)"}
    lines += [meaning[header] + "." for header, _ in _optional_token_columns(summary)]
    control = summary[summary["is_control"]].iloc[0]
    if control["n_done"] == 0:
        lines.append(f"The control arm has no finished run ({control['status']}), so no Δ is given.")
    return " ".join(lines)


def _table(ablation: dict[str, Any], summary: pd.DataFrame) -> str:
    """The Markdown table itself: one row per arm."""
    keys = [*ablation["metrics"], "avg"]
    extra = _optional_token_columns(summary)
    costs = [*COST_HEADERS[:3], *(header for header, _ in extra), *COST_HEADERS[3:]]
    header = [ablation["name"], *ablation["metrics"], "Avg.", *costs]
    lines = [_line(header), _line([":---"] + ["---:"] * (len(header) - 1))]
    for _, row in summary.iterrows():
        name = f"{row['arm']} (control)" if row["is_control"] else row["arm"]
        cells = _cost_cells(row)
        cells[3:3] = [_count(row[key]) for _, key in extra]
        cells = [name, *(_score_cell(row, key) for key in keys), *cells]
        lines.append(_line(cells))
    return "\n".join(lines)


def _line(cells: list[str]) -> str:
    """One Markdown table line; a "|" inside a cell would split it, so it is escaped."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _score_cell(row: pd.Series, key: str) -> str:
    """`mean ± std (Δ)*` for one score of one arm, or why there is no number."""
    if row["n_done"] == 0:
        return str(row["status"])
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if pd.isna(mean):
        return UNKNOWN
    text = _number(mean) if pd.isna(std) else f"{_number(mean)} ± {_number(std)}"
    delta = row[f"{key}_delta"]
    if not pd.isna(delta):
        text += f" ({_signed(delta)})" + (MARK if row[f"{key}_marked"] else "")
    return text


def _optional_token_columns(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The (header, key) of each optional token column whose values differ from the visual tokens somewhere."""
    visual = summary["visual_tokens_per_image"]
    return [(header, key) for header, key in OPTIONAL_TOKENS
            if key in summary and ((summary[key] != visual) & summary[key].notna()).any()]


def _count(value: Any) -> str:
    """An integer cell, or the unknown mark."""
    return UNKNOWN if pd.isna(value) else str(int(value))


def _cost_cells(row: pd.Series) -> list[str]:
    """params, trainable, visual tokens, train s and seeds cells of one arm."""
    tokens = row["visual_tokens_per_image"]
    seconds = row["train_seconds_mean"]
    return [
        human_count(row["params_total"]),
        human_count(row["params_trainable"]),
        UNKNOWN if pd.isna(tokens) else str(int(tokens)),
        UNKNOWN if pd.isna(seconds) else _number(seconds),
        _seeds_cell(row),
    ]


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


def _number(value: float) -> str:
    """One decimal, with a real minus sign."""
    return f"{value:.1f}".replace("-", MINUS)


def _signed(value: float) -> str:
    """One decimal with an explicit sign; a delta that rounds to zero gets none."""
    text = f"{value:+.1f}"
    if text in ("+0.0", "-0.0"):
        return "0.0"
    return text.replace("-", MINUS)


def _failure_lines(arms: list[str], runs: list[dict[str, Any]]) -> list[str]:
    """`- <arm> seed <s> (<run_id>): <error>` for every planned run that did not finish."""
    order = {arm: i for i, arm in enumerate(arms)}
    unfinished = [
        run for run in runs
        if run["status"] != "done" and run.get("ablation", {}).get("arm") in order
    ]
    unfinished.sort(key=lambda run: (order[run["ablation"]["arm"]], run_sort_key(run)))
    return [
        f"- {run['ablation']['arm']} seed {run['seed']} ({run['run_id']}): {_what_went_wrong(run)}"
        for run in unfinished
    ]


def _what_went_wrong(run: dict[str, Any]) -> str:
    """`<error type>: <first line of message>`, or the status when there is no error."""
    error = run.get("error")
    if run["status"] == "missing":
        return "missing (no record)"
    if not isinstance(error, dict):
        return str(run["status"])
    kind = str(error.get("type") or run["status"])
    lines = str(error.get("message") or "").strip().splitlines()
    return f"{kind}: {lines[0]}" if lines else kind
