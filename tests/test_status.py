"""`vlmlab status`: each planned run's state from results/ and outputs/, and the time left."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
from pathlib import Path

from vlmlab.results.records import write_plan, write_record
from vlmlab.run_record import ArmLabel, Cost, RunRecord
from vlmlab.launch.lock import RunLock, holder, lock_path
from vlmlab.launch.status import axis_status, progress_line, render, time_left

ABLATION = {"name": "toy", "question": "q", "paper_table": None, "control": "a", "arms": ["a", "b"],
            "metrics": ["count"], "seeds": [0, 1]}
RUNS = [{"run_id": f"{i:012x}", "arm": arm, "seed": seed} for i, (arm, seed) in
        enumerate([("a", 0), ("a", 1), ("b", 0), ("b", 1)])]


def record(run, status, seconds):
    return RunRecord(run_id=run["run_id"], ablation=ArmLabel("toy", run["arm"]), seed=run["seed"], status=status,
                     metrics={"count": 50.0} if status == "done" else {}, cost=Cost(train_seconds=seconds, eval_seconds=1.0))


def _hold_and_die(path: str) -> None:
    RunLock(Path(path)).acquire()
    os._exit(0)  # killed mid-run: the lock stays behind


def test_states_and_time_left(tmp_path):
    results, outputs = tmp_path / "results", tmp_path / "outputs"
    write_plan(results, "toy", ABLATION, RUNS)
    write_record(results, record(RUNS[0], "done", 59.0))
    write_record(results, record(RUNS[1], "failed", None))
    lock = RunLock(lock_path(outputs / "runs" / "toy" / RUNS[2]["run_id"]))
    assert lock.acquire() is None  # a live trainer in this process
    interrupted = outputs / "runs" / "toy" / RUNS[3]["run_id"]
    interrupted.mkdir(parents=True)
    (interrupted / "last.ckpt").write_text("x")  # fresh files, yet nobody trains it: the lock decides
    child = mp.get_context("fork").Process(target=_hold_and_die, args=(str(lock_path(interrupted)),))
    child.start()
    child.join(timeout=30)
    assert holder(lock_path(interrupted)).pid == child.pid

    try:
        statuses = axis_status(results, outputs, "toy")
        text = render("toy", statuses)
    finally:
        lock.release()
    assert [s.state for s in statuses] == ["done", "failed", "running", "interrupted"]
    assert statuses[2].holder.pid == os.getpid() and statuses[3].holder is None
    assert statuses[0].seconds == 60.0
    assert time_left(statuses) == 120.0  # two unfinished runs at the median 60 s
    line = next(line for line in text.splitlines() if RUNS[2]["run_id"] in line)
    assert " running " in line and line.endswith(f"held by host {platform.node()} pid {os.getpid()}, heartbeat 0 s ago")
    assert "1 done, 1 failed, 1 running, 1 interrupted" in text and "time left: about 2 min 00 s" in text
    assert progress_line(results, "toy") == "run 3 of 4, about 2 min 00 s left in this sweep"
    assert axis_status(results, outputs, "toy")[2].state == "interrupted"  # released, no record: resumes


def test_missing_without_a_run_dir(tmp_path):
    results, outputs = tmp_path / "results", tmp_path / "outputs"
    write_plan(results, "toy", ABLATION, RUNS)
    assert {s.state for s in axis_status(results, outputs, "toy")} == {"missing"}
    assert {s.state for s in axis_status(results, None, "toy")} == {"missing"}
