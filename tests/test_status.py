"""`vlmlab status`: each planned run's state from results/ and outputs/, and the time left."""

from __future__ import annotations

import os
import time

from vlmlab.results.records import write_plan, write_record
from vlmlab.sweep.status import axis_status, progress_line, render, time_left

ABLATION = {"name": "toy", "question": "q", "paper_table": None, "control": "a", "arms": ["a", "b"],
            "metrics": ["count"], "seeds": [0, 1]}
RUNS = [{"run_id": f"{i:012x}", "arm": arm, "seed": seed} for i, (arm, seed) in
        enumerate([("a", 0), ("a", 1), ("b", 0), ("b", 1)])]


def record(run, status, seconds):
    return {"schema_version": 1, "run_id": run["run_id"], "ablation": {"name": "toy", "arm": run["arm"]},
            "seed": run["seed"], "status": status, "config": {}, "metrics": {"count": 50.0} if status == "done" else {},
            "cost": {"train_seconds": seconds, "eval_seconds": 1.0}, "provenance": {}, "error": None}


def test_states_and_time_left(tmp_path):
    results, outputs = tmp_path / "results", tmp_path / "outputs"
    write_plan(results, "toy", ABLATION, RUNS)
    write_record(results, record(RUNS[0], "done", 59.0))
    write_record(results, record(RUNS[1], "failed", None))
    running = outputs / "runs" / "toy" / RUNS[2]["run_id"]
    running.mkdir(parents=True)
    (running / "metrics.csv").write_text("step\n")
    stale = outputs / "runs" / "toy" / RUNS[3]["run_id"]
    stale.mkdir(parents=True)
    (stale / "last.ckpt").write_text("x")
    old = time.time() - 3600
    os.utime(stale / "last.ckpt", (old, old))

    statuses = axis_status(results, outputs, "toy")
    assert [s.state for s in statuses] == ["done", "failed", "running", "interrupted"]
    assert statuses[0].seconds == 60.0
    assert time_left(statuses) == 120.0  # two unfinished runs at the median 60 s
    text = render("toy", statuses)
    assert "1 done, 1 failed, 1 running, 1 interrupted" in text and "time left: about 2 min 00 s" in text
    assert progress_line(results, "toy") == "run 3 of 4, about 2 min 00 s left in this sweep"
