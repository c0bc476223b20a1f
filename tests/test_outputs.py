"""Tests of the LaTeX table, the PNG charts, and tables written from damaged or contradictory records."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.test_tables import AXIS, OUTPUTS, record, run_id, write_ablation
from vlmlab.cli import main
from vlmlab.launch.provenance import provenance
from vlmlab.results import load_axis, render_latex, summarise, write_all_tables, write_tables
from vlmlab.results.latex import latex_escape
from vlmlab.results.plots import (
    PIXELS,
    loss_figure,
    loss_png,
    png_size,
    read_loss_curves,
    scores_figure,
    scores_png,
)
from vlmlab.results.records import loss_log_path, record_path, write_plan, write_record
from vlmlab.sweep.identity import run_id as science_run_id
from vlmlab.run_record import ArmLabel, Provenance, RunRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- LaTeX -------------------------------------------------------------------------------------------

def test_latex_escape() -> None:
    assert latex_escape("vqa_acc 50% R&D #1") == r"vqa\_acc 50\% R\&D \#1"
    assert latex_escape("{x} $5 ~a^b \\") == r"\{x\} \$5 \~{}a\^{}b \textbackslash{}"
    assert latex_escape("75.0 ± 7.1 (−20.0) Δ – |t| > 2") == (
        r"75.0 $\pm$ 7.1 ($-$20.0) $\Delta$ -- $|$t$|$ $>$ 2")


def test_latex_is_a_booktabs_tabular(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("mean", 1),))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    text = render_latex(plan, runs)
    lines = text.splitlines()
    body = [line for line in lines if not line.startswith("%")]
    assert body[0] == r"\begin{tabular}{lrrrrrrrrrrrr}" and body[-1] == r"\end{tabular}"
    assert body[1] == r"\toprule" and body[3] == r"\midrule" and body[-2] == r"\bottomrule"
    assert body[2] == (r"pooling & vqa & ocr & Avg. & params & trainable & visual tokens & train FLOPs & infer FLOPs "
                       r"& train s & samples/s & peak MB & seeds \\")
    rows = body[4:-2]
    assert len(rows) == 3 and all(row.count("&") == 12 and row.endswith(r" \\") for row in rows)
    assert rows[0].endswith(r"& 64 & -- & -- & 10.5 & 5.0 & -- & 2/2 \\")  # no FLOPs or memory in these records
    assert rows[0].startswith(r"perceiver (control) & \textbf{75.0} $\pm$ 7.1 & \textbf{45.0} $\pm$ 7.1 & ")
    assert rows[2].startswith(r"linear & 55.0 $\pm$ 7.1 ($-$20.0) & 21.0 $\pm$ 1.4 ($-$24.0) & ")
    assert rows[1].endswith(r"& 1/2 (1 missing) \\")
    # Ready for \input: no preamble, no float, and no character TeX would choke on outside comments.
    assert r"\documentclass" not in text and r"\begin{table}" not in text and r"\caption{" not in text
    assert not re.search(r"[±−Δ–_%#&]", "\n".join(body).replace(r"\_", "").replace(r"\%", "")
                         .replace(r"\#", "").replace("&", ""))
    caption = next(line for line in lines if line.startswith("% caption: "))
    assert r"$^{*}$: p $<$ 0.05 in a two-sided paired t-test" in caption and "±" not in caption
    assert f"% - mean seed 1 ({run_id('mean', 1)}): missing (no record)" in lines
    assert lines.index("% Provenance:") > lines.index("% Runs without a result:")


def test_latex_escapes_names(tmp_path: Path) -> None:
    ablation = {"name": "my_axis", "question": "50% & more?", "paper_table": "", "control": "a_1",
                "arms": ["a_1", "b#2"], "metrics": ["vqa_acc"], "seeds": [0]}
    write_plan(tmp_path, "my_axis", ablation, [{"run_id": "r1", "arm": "a_1", "seed": 0},
                                               {"run_id": "r2", "arm": "b#2", "seed": 0}])
    plan, runs, _ = load_axis(tmp_path, "my_axis")
    text = render_latex(plan, runs)
    assert r"my\_axis & vqa\_acc & Avg." in text
    assert r"a\_1 (control) & missing" in text and r"b\#2 & missing" in text


# --- PNG charts --------------------------------------------------------------------------------------

def write_loss_logs(root: Path, shift: dict[str, float]) -> None:
    """A three-point Lightning-style log beside every record of the fixture, offset per arm and seed."""
    for path in sorted((root / "runs" / AXIS).glob("*/*.json")):
        rec = json.loads(path.read_text())
        base = shift[rec["ablation"]["arm"]] + rec["seed"]
        rows = ["epoch,step,test/vqa,train/loss,val/loss", f"0,9,,{base + 3},", "0,10,,,9.9",
                f"0,19,,{base + 2},", f"0,29,,{base + 1},", "0,30,55.0,,"]
        loss_log_path(path).write_text("\n".join(rows) + "\n")


def test_png_bytes_are_deterministic_and_sized(tmp_path: Path) -> None:
    write_ablation(tmp_path, skip=(("linear", 0), ("linear", 1)))
    write_record(tmp_path, record("linear", 0, "failed", "boom"))
    plan, runs, _ = load_axis(tmp_path, AXIS)
    summary = summarise(plan, runs)
    first, second = scores_png(plan, summary), scores_png(plan, summarise(plan, runs))
    assert first[:8] == PNG_MAGIC and first == second and png_size(first) == PIXELS == (800, 450)
    assert first.endswith(b"IEND\xaeB`\x82")
    assert read_loss_curves({"perceiver": []}) == ({}, [])
    empty = loss_png(plan, {})  # no logs at all: a chart that says so, same size
    assert empty == loss_png(plan, {}) and png_size(empty) == PIXELS and empty != first
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(b"GIF89a" + bytes(30))


def test_score_chart_bars_error_bars_and_control(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    plan, runs, _ = load_axis(tmp_path, AXIS)
    fig = scores_figure(plan, summarise(plan, runs))
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["vqa", "ocr", "Avg."]
    bar_sets = [c for c in ax.containers if hasattr(c, "patches")]
    assert len(bar_sets) == 3  # one bar set per arm, three bars (vqa, ocr, Avg.) each
    heights = {c.get_label(): [p.get_height() for p in c.patches] for c in bar_sets}
    assert heights == {"perceiver (control)": [75.0, 45.0, 60.0], "mean": [75.0, 44.0, 59.5],
                       "linear": [55.0, 21.0, 38.0]}
    hatches = {c.get_label(): {p.get_hatch() for p in c.patches} for c in bar_sets}
    assert hatches == {"perceiver (control)": {"//"}, "mean": {None}, "linear": {None}}
    linear = next(c for c in bar_sets if c.get_label() == "linear")
    (segments,) = linear.errorbar.lines[2]  # the vertical error-bar segments: mean ± sample std
    spans = [abs(seg[1][1] - seg[0][1]) / 2 for seg in segments.get_segments()]
    assert spans == pytest.approx([7.0710678, 1.4142136, 4.2426407])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["perceiver (control)", "mean", "linear"]


def test_loss_curves_mean_over_seeds_and_skip_bad_logs(tmp_path: Path) -> None:
    write_ablation(tmp_path)
    write_loss_logs(tmp_path, {"perceiver": 0.0, "mean": 10.0, "linear": 20.0})
    truncated = loss_log_path(record_path(tmp_path, AXIS, "linear", run_id("linear", 1)))
    truncated.write_bytes(b"epoch,step,train/loss\n0,9,\"4.")  # killed mid-write: an unterminated quote
    loss_log_path(record_path(tmp_path, AXIS, "mean", run_id("mean", 0))).unlink()
    report = write_all_tables(tmp_path)
    assert [p.name for p in report.written] == [f"{AXIS}{end}" for end in OUTPUTS]
    assert any(f"{truncated.name}: loss log unreadable" in w for w in report.warnings)
    assert f"{AXIS}: 1 finished runs have no .metrics.csv beside their record; left out of the loss chart" \
        in report.warnings
    plan, runs, _ = load_axis(tmp_path, AXIS)
    logs = {arm: [loss_log_path(record_path(tmp_path, AXIS, arm, run_id(arm, s))) for s in (0, 1)]
            for arm in plan.ablation.arms}
    curves, _ = read_loss_curves(logs)
    perceiver = curves["perceiver"]  # seeds 0 and 1: losses 3, 2, 1 and 4, 3, 2
    assert perceiver["step"].tolist() == [9, 19, 29] and perceiver["loss"].tolist() == [3.5, 2.5, 1.5]
    assert perceiver["runs"].tolist() == [2, 2, 2]
    assert curves["mean"]["loss"].tolist() == [14.0, 13.0, 12.0]  # seed 1 alone
    fig = loss_figure(plan, curves)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"perceiver (control), 2 runs", "mean, 1 run", "linear, 1 run"}
    assert lines["perceiver (control), 2 runs"].get_linewidth() > lines["mean, 1 run"].get_linewidth()
    once = (tmp_path / "tables" / f"{AXIS}_loss.png").read_bytes()
    write_tables(tmp_path)
    assert (tmp_path / "tables" / f"{AXIS}_loss.png").read_bytes() == once


# --- damaged or contradictory records ----------------------------------------------------------------

def test_tables_survive_damaged_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_ablation(tmp_path)
    truncated = record_path(tmp_path, AXIS, "mean", run_id("mean", 0))
    truncated.write_text(truncated.read_text()[:57])
    old = record_path(tmp_path, AXIS, "linear", run_id("linear", 1))
    old.write_text(json.dumps(dict(json.loads(old.read_text()), schema_version=0)))
    (tmp_path / "runs" / "broken" / "arm").mkdir(parents=True)  # a second axis whose plan is damaged
    (tmp_path / "runs" / "broken" / "plan.json").write_text('{"schema_version": 1, "abl')
    with caplog.at_level(logging.WARNING, logger="vlmlab.results.tables"):
        written = write_tables(tmp_path)
    assert [p.name for p in written] == [f"{AXIS}{end}" for end in OUTPUTS]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("broken: no tables written:") and "invalid JSON" in m for m in messages)
    assert any(f"mean/{run_id('mean', 0)}.json: unreadable (invalid JSON" in m for m in messages)
    assert any("schema_version is 0, older than this vlmlab's 2; `vlmlab migrate`" in m for m in messages)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert f"- mean seed 0 ({run_id('mean', 0)}): record skipped: unreadable (invalid JSON" in markdown
    assert "| mean | **81.0** (+6.0) | **47.0** (+2.0) | **64.0** (+4.0) |" in markdown  # seed 1 only
    assert "No arm shares two finished seeds with the control, so no Δ has a p-value" in markdown


def genuine(arm: str, seed: int, **config: object) -> RunRecord:
    """A record whose run_id is the sweep's hash of its config, as a real sweep writes it."""
    rec = record(arm, seed)
    rec.config = {"model": {"connector": arm}, "seed": seed, **config}
    rec.run_id = science_run_id(OmegaConf.create(rec.config))
    return rec


def plan_of(root: Path, records: list[RunRecord]) -> None:
    """Write the fixture's ablation with exactly these records' runs planned."""
    ablation = {"name": AXIS, "question": "", "paper_table": "", "control": "perceiver",
                "arms": ["perceiver", "mean", "linear"], "metrics": ["vqa", "ocr"], "seeds": [0, 1]}
    write_plan(root, AXIS, ablation, [{"run_id": r.run_id, "arm": r.arm, "seed": r.seed} for r in records])


def test_duplicate_run_id_with_another_config(tmp_path: Path) -> None:
    recs = [genuine(arm, seed) for arm in ("perceiver", "mean", "linear") for seed in (0, 1)]
    plan_of(tmp_path, recs)
    for rec in recs:
        write_record(tmp_path, rec)
    target = recs[2]  # mean seed 0: a copy under another arm's folder, config edited by hand
    forged = replace(target, ablation=ArmLabel(AXIS, "linear"), config={**target.config, "seed": 5})
    forged_path = write_record(tmp_path, forged)
    # A byte-identical copy somewhere else is only a stale file, not a contradiction.
    write_record(tmp_path, replace(recs[4], ablation=ArmLabel(AXIS, "mean")))
    report = write_all_tables(tmp_path)
    assert len(report.written) == len(OUTPUTS)
    where = f"runs/{AXIS}/mean/{target.run_id}.json"
    assert f"{AXIS}: runs/{AXIS}/linear/{forged_path.name}: same run_id as {where} but a different config " \
           f"that does not hash to it; ignored, {where} kept" in report.warnings
    assert f"{AXIS}: 2 records not in plan.json ignored" in report.warnings
    assert f"{AXIS}: 6 finished runs have no .metrics.csv beside their record; left out of the loss chart" \
        in report.warnings and len(report.warnings) == 3
    plan, runs, _ = load_axis(tmp_path, AXIS)
    assert all(run.done for run in runs)

    # Now the planned record is the one whose config does not hash to its run_id: neither is trusted.
    record_path(tmp_path, AXIS, "mean", target.run_id).write_text(
        replace(forged, ablation=ArmLabel(AXIS, "mean"), seed=0).to_json())
    forged_path.write_text(replace(target, ablation=ArmLabel(AXIS, "linear")).to_json())
    plan, runs, warnings = load_axis(tmp_path, AXIS)
    skipped = [run for run in runs if run.status == "missing"]
    assert [run.run_id for run in skipped] == [target.run_id]
    assert any(w.startswith(where) and "cannot tell which is right" in w for w in warnings)
    write_tables(tmp_path)
    markdown = (tmp_path / "tables" / f"{AXIS}.md").read_text()
    assert f"- mean seed 0 ({target.run_id}): record skipped: runs/{AXIS}/linear/" in markdown


def test_cli_exit_code_is_non_zero_only_when_nothing_is_written(tmp_path: Path, capsys) -> None:
    (tmp_path / "runs" / "broken").mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "plan.json").write_text("{")
    assert main(["tables", "--results-dir", str(tmp_path)]) == 1
    write_ablation(tmp_path)
    record_path(tmp_path, AXIS, "mean", run_id("mean", 1)).write_text("")
    assert main(["tables", "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("wrote ") == len(OUTPUTS)


def test_provenance_footer_counts_code_packages_device_data_and_commands() -> None:
    from vlmlab.results.provenance import provenance_lines

    base = {"git_commit": "abcdef1234567890", "git_dirty": False, "packages": {"torch": "2.13.0"},
            "dataset_version": "synthetic-v1", "command": "vlmlab sweep toy", "device": "cpu (x86_64, 2 threads)"}
    runs = [RunRecord(run_id="a", ablation=ArmLabel("toy", "a"), seed=0, status=status,
                      provenance=None if prov is None else Provenance(**prov))
            for status, prov in (("done", base), ("failed", base | {"git_dirty": True}), ("missing", None))]
    lines = provenance_lines(runs)
    assert lines[0] == "code: abcdef1234 (1 run), abcdef1234 (uncommitted changes) (1 run)"
    assert lines[1].startswith("packages: torch 2.13.0 transformers ? ") and lines[1].endswith("(2 runs)")
    assert lines[2:] == ["device: cpu (x86_64, 2 threads) (2 runs)", "data: synthetic-v1 (2 runs)",
                         "commands: vlmlab sweep toy (2 runs)"]
    assert provenance_lines([runs[-1]]) == []


def _committed_repo(root: Path, files: dict[str, str]) -> None:
    """A git repository at `root` with `files` committed."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for args in (("init", "-q"), ("add", "."), ("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_deleted_records_under_the_results_dir_do_not_make_the_code_dirty(tmp_path, monkeypatch) -> None:
    """A sweep that re-runs an axis deletes its committed records: the run's code is still the commit's."""
    _committed_repo(tmp_path, {"results/runs/old.json": "{}", "code.py": "x = 1\n"})
    monkeypatch.chdir(tmp_path)
    cfg = OmegaConf.create({"paths": {"results_dir": "results"}})
    (tmp_path / "results" / "runs" / "old.json").unlink()
    assert provenance(cfg)["git_dirty"] is False
    assert provenance(None)["git_dirty"] is True  # without a config, every tracked file counts
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance(cfg)["git_dirty"] is True


def test_the_whole_checkout_counts_when_run_from_a_subdirectory(tmp_path, monkeypatch) -> None:
    _committed_repo(tmp_path, {"sub/keep": "", "code.py": "x = 1\n"})
    (tmp_path / "code.py").write_text("x = 2\n")
    monkeypatch.chdir(tmp_path / "sub")
    assert provenance(OmegaConf.create({"paths": {"results_dir": "results"}}))["git_dirty"] is True
