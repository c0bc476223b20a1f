"""Where an ablation stands: every planned run as done, running, failed, diverged or missing, and time left.

Read from results/ (plan and records) and outputs/: a run without a record is running while a live
process holds its lock (`outputs/runs/<axis>/<run_id>/run.lock`, see `vlmlab.launch.lock`); a run with a
run directory but no live lock was interrupted and resumes from its checkpoint; any other is missing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from vlmlab.results.records import load_axis
from vlmlab.run_record import RunRecord
from vlmlab.launch.lock import Holder, holder, is_stale, lock_path


@dataclass(frozen=True)
class RunStatus:
    """One planned run: arm, seed, id, state, wall time (training + evaluation) when done, holder when running."""

    arm: str
    seed: int
    run_id: str
    state: str
    seconds: float | None
    holder: Holder | None = None


def _wall_seconds(record: RunRecord) -> float | None:
    """Training plus evaluation time of a run, None before it trained."""
    cost = record.cost
    if cost.train_seconds is None:
        return None
    return float(cost.train_seconds) + float(cost.eval_seconds or 0.0)


def _unfinished_state(output_dir: Path | None, axis: str, run_id: str) -> tuple[str, Holder | None]:
    run_dir = output_dir / "runs" / axis / run_id if output_dir is not None else None
    if run_dir is None or not run_dir.exists():
        return "missing", None
    current = holder(lock_path(run_dir))
    if current is not None and not is_stale(current):  # a live trainer, here or on another node
        return "running", current
    return "interrupted", None


def axis_status(results_dir: Path, output_dir: Path | None, axis: str) -> list[RunStatus]:
    """The state of every planned run of `axis`, in plan order (without `output_dir`, unfinished runs are missing)."""
    _plan, runs, _warnings = load_axis(results_dir, axis)
    out = []
    for run in runs:
        state, held_by = run.status, None
        if state == "missing":
            state, held_by = _unfinished_state(output_dir, axis, run.run_id)
        out.append(RunStatus(run.arm, run.seed, run.run_id, state, _wall_seconds(run), held_by))
    return out


def time_left(statuses: list[RunStatus]) -> float | None:
    """Seconds to finish the runs not done, at the median wall time of the finished ones (None before any)."""
    finished = [s.seconds for s in statuses if s.state == "done" and s.seconds is not None]
    if not finished:
        return None
    return statistics.median(finished) * sum(s.state in ("running", "interrupted", "missing") for s in statuses)


def progress_line(results_dir: Path, axis: str) -> str:
    """'run k of N, estimate' for the run about to start (k counts the planned runs with a record, plus one)."""
    statuses = axis_status(results_dir, None, axis)
    k = sum(s.state != "missing" for s in statuses) + 1
    left = time_left(statuses)
    estimate = f", about {_duration(left)} left in this sweep" if left is not None else ""
    return f"run {min(k, len(statuses))} of {len(statuses)}{estimate}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def render(axis: str, statuses: list[RunStatus]) -> str:
    """A plain-text status table with totals and the time left."""
    lines = [f"{axis}: {len(statuses)} planned runs", f"{'arm':24} {'seed':>4}  {'run_id':12}  {'state':11} {'wall':>10}"]
    for s in statuses:
        wall = _duration(s.seconds) if s.seconds is not None else ""
        held = f"  held by {s.holder.describe()}" if s.holder is not None else ""
        lines.append(f"{s.arm:24} {s.seed:>4}  {s.run_id:12}  {s.state:11} {wall:>10}{held}")
    counts = {state: sum(s.state == state for s in statuses) for state in dict.fromkeys(s.state for s in statuses)}
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    left = time_left(statuses)
    if left:
        lines.append(f"time left: about {_duration(left)} (median wall time of the finished runs)")
    return "\n".join(lines)
