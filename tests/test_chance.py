"""Chance baselines (a benchmark's most frequent training answer given to every test item) and collapsed runs."""

from __future__ import annotations

import io
import json

import datasets
import pandas as pd
import pytest

from tests.test_tables import ARMS, AXIS, SEEDS, plan_runs, record, table_row
from vlmlab.eval.chance import chance_baselines
from vlmlab.results.records import load_axis, record_path, write_plan, write_record
from vlmlab.results.tables import render_csv, render_markdown, write_tables


def test_the_constant_is_the_most_frequent_training_answer_scored_on_the_first_items():
    # The training rows of a benchmark are its training task's (`sources`); the test rows carry its own name.
    train = datasets.Dataset.from_dict({
        "task": ["count", "count", "count", "count", "ocr", "ocr", "ocr_test_only"],
        "answer": ["2", "3", "3", "2", "cat", "dog", "x"],  # count: a tie of 2 and 3, broken by sort order
    })
    test = datasets.Dataset.from_dict({
        "task": ["synth_count", "synth_ocr", "synth_count", "synth_count", "synth_ocr", "synth_count"],
        "answer": ["2", "cat", "5", "2", "cow", "2"],
        "answers": [["2"], ["cat"], ["5"], ["2"], ["cow"], ["2"]],
    })
    found = chance_baselines(train, test, {"synth_count": "exact_match", "synth_ocr": "anls"}, limit=3,
                             sources={"synth_count": "count", "synth_ocr": "ocr"})
    # count: '2' on the first three count items (2, 5, 2): 2 of 3 right; the fourth item is past the limit.
    assert found["synth_count"].answer == "2" and found["synth_count"].score == pytest.approx(200 / 3)
    # ocr: 'cat' (tie with 'dog', sorted first) against cat (ANLS 1) and cow (edit distance 2 of 3: 1 - 2/3 < 0.5 -> 0).
    assert found["synth_ocr"].answer == "cat" and found["synth_ocr"].score == pytest.approx(50.0)
    assert set(found) == {"synth_count", "synth_ocr"}


def write(root, chance: dict | None) -> None:
    """The fixture's ablation, with chance baselines in its plan when given."""
    ablation = {"name": AXIS, "question": "q", "paper_table": None, "control": "perceiver", "arms": ARMS,
                "metrics": ["vqa", "ocr"], "seeds": SEEDS, "correction": "holm"}
    if chance is not None:
        ablation["chance"] = chance
    write_plan(root, AXIS, ablation, plan_runs())
    for run in plan_runs():
        write_record(root, record(run["arm"], run["seed"]))


def test_the_chance_row_and_the_cells_at_chance(tmp_path):
    # linear's means: vqa 55.0, ocr 21.0; the others' are above 21.5
    write(tmp_path, {"vqa": {"answer": "yes", "score": 30.0}, "ocr": {"answer": "cat", "score": 21.5}})
    plan, runs, _ = load_axis(tmp_path, AXIS)
    markdown = render_markdown(plan, runs)
    assert "| chance (constant answer) | 30.0 | 21.5 | 25.8 | – |" in markdown
    linear = next(line for line in markdown.splitlines() if line.startswith("| linear"))
    assert "21.0 ± 1.4 (−24.0)†" in linear and "55.0 ± 7.1 (−20.0) |" in linear
    assert "†: an arm's mean at or below it. Avg. is over all 2 benchmarks" in markdown
    frame = pd.read_csv(io.StringIO(render_csv(plan, runs))).set_index("arm")
    assert frame.loc["linear", "ocr_at_chance"] and not frame.loc["mean", "ocr_at_chance"]
    assert frame.loc["linear", "ocr_chance"] == 21.5
    write(tmp_path, None)  # an older plan: no row, no mark
    assert "chance" not in render_markdown(*load_axis(tmp_path, AXIS)[:2])


def test_a_run_with_one_answer_for_every_item_is_listed_as_collapsed(tmp_path):
    write(tmp_path, None)
    for run in plan_runs():
        answers = [{"task": "vqa", "prediction": "yes" if run["arm"] == "linear" else str(i)} for i in range(4)]
        answers += [{"task": "ocr", "prediction": str(i)} for i in range(4)]
        path = record_path(tmp_path, AXIS, run["arm"], run["run_id"]).with_suffix(".predictions.jsonl")
        path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    write_tables(tmp_path)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert "Collapsed runs (one answer to every test item of a benchmark" in markdown
    assert "- linear seed 0: vqa ('yes' to all 4 items)\n- linear seed 1: vqa ('yes' to all 4 items)" in markdown
    assert "- mean seed" not in markdown and "- perceiver seed" not in markdown
    assert "% - linear seed 0: vqa ('yes' to all 4 items)" in (tmp_path / "tables" / f"{AXIS}.tex").read_text()
    assert table_row(tmp_path, "linear")  # the arm's row is still there
