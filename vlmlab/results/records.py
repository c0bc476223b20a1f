"""The run record store: one JSON file per run, written atomically, read back with checks.

Layout under a ``results_dir``::

    runs/<axis>/plan.json                 the current plan of the ablation (written by the sweep)
    runs/<axis>/<arm>/<run_id>.json       one record per run, never edited in place

A record is the only trace a run leaves, so writes go to a temp file in the same directory and
are renamed over the target: a reader (or a killed sweep) sees the old file or the new one, never
half of one. Reads are strict and name the file at fault, because a silently skipped record would
make a table quietly wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from vlmlab.errors import is_int
from vlmlab.results.duplicates import config_hashes_to_run_id, conflicting_records
from vlmlab.run_record import SCHEMA_VERSION, Plan, PlannedRun, RecordError, RunRecord

StrPath = str | os.PathLike[str]


def record_path(results_dir: StrPath, axis: str, arm: str, run_id: str) -> Path:
    """Path of the record of run `run_id` of `arm` in ablation `axis`."""
    for what, part in (("axis", axis), ("arm", arm), ("run_id", run_id)):
        _check_path_part(what, part)
    return Path(results_dir) / "runs" / axis / arm / f"{run_id}.json"


def plan_path(results_dir: StrPath, axis: str) -> Path:
    """Path of the plan of ablation `axis`."""
    _check_path_part("axis", axis)
    return Path(results_dir) / "runs" / axis / "plan.json"


def atomic_write_text(path: StrPath, text: str) -> Path:
    """Write `text` (UTF-8, "\\n" line ends) to `path` atomically, creating parent directories."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: StrPath, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file + rename), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file starts with "." and ends in ".tmp" so that no "*.json" glob ever picks it up.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; records are shared and committed, so make them world-readable.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_record(results_dir: StrPath, record: RunRecord) -> Path:
    """Check `record` and write it atomically to its place under `results_dir`."""
    try:
        path = record_path(results_dir, record.ablation.name, record.arm, record.run_id)
    except RecordError as exc:
        raise RecordError(f"record {record.run_id} under {results_dir}: {exc}") from None
    try:
        text = record.to_json()
        RunRecord.from_dict(json.loads(text))  # what is written must read back: the same checks as a reader's
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None
    return atomic_write_text(path, text)


def read_record(path: StrPath) -> RunRecord:
    """Read and check one record; RecordError naming `path` if it is not a valid record."""
    obj = _read_json_object(path)
    try:
        return RunRecord.from_dict(obj)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def is_done(results_dir: StrPath, axis: str, arm: str, run_id: str, seed: int | None = None) -> bool:
    """Whether the run has a record that says "done" and that load_axis would use for it (`seed` None: any seed)."""
    try:
        path = record_path(results_dir, axis, arm, run_id)
        if seed is None:  # a caller that does not know the seed: take the record's own
            seed = read_record(path).seed
    except (OSError, RecordError):
        return False
    # The very test load_axis applies: a record the table shows as missing must not be skipped as done.
    record, _problem = _planned_record(path, axis, PlannedRun(run_id, arm, seed))
    return record is not None and record.done


def newer_schema(path: StrPath) -> int | None:
    """The record's schema_version if `path` holds a JSON object from a newer vlmlab (a higher version), else None."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable or not JSON (JSONDecodeError, UnicodeDecodeError)
        return None
    version = obj.get("schema_version") if isinstance(obj, dict) else None
    return version if is_int(version) and version > SCHEMA_VERSION else None


def write_plan(
    results_dir: StrPath, axis: str, ablation: dict[str, Any], runs: list[dict[str, Any]]
) -> Path:
    """Check the plan of ablation `axis` (its `ablation` object and planned runs as plain data, as the sweep
    builds them) and write it atomically to runs/<axis>/plan.json."""
    path = plan_path(results_dir, axis)
    plan = _checked_plan({"schema_version": SCHEMA_VERSION, "ablation": ablation, "runs": runs}, axis, path)
    return atomic_write_text(path, plan.to_json())


def read_plan(results_dir: StrPath, axis: str) -> Plan:
    """Read and check the plan of ablation `axis`."""
    path = plan_path(results_dir, axis)
    return _checked_plan(_read_json_object(path), axis, path)


def load_axis(results_dir: StrPath, axis: str) -> tuple[Plan, list[RunRecord], list[str]]:
    """The plan of `axis`, one record (or a "missing" stand-in) per planned run, and warnings.

    A record that cannot be used (unreadable, truncated, another schema version, another run's
    identity, or contradicted by another record of the same run_id with a different config) is
    replaced by a "missing" stand-in that says why, and named in a warning.
    """
    root = Path(results_dir)
    plan = read_plan(root, axis)
    warnings: list[str] = []
    runs: list[RunRecord] = []
    planned: dict[Path, int] = {}
    for run in plan.runs:
        path = record_path(root, axis, run.arm, run.run_id)
        planned[path] = len(runs)
        record, problem = _planned_record(path, axis, run)
        if problem:
            warnings.append(f"{path.relative_to(root).as_posix()}: {problem}; treated as missing")
        runs.append(record if record is not None else missing_record(axis, run, problem))
    stale = sorted(p for p in (root / "runs" / axis).glob("*/*.json") if p not in planned)
    if stale:
        warnings.append(f"{len(stale)} records not in plan.json ignored")
    others = []
    for path in stale:
        try:
            others.append((path, read_record(path)))
        except (OSError, RecordError):
            continue  # an unreadable stale file is counted as stale and contradicts nothing
    for path, other in conflicting_records(planned, runs, others):
        index = planned[path]
        record, where = runs[index], path.relative_to(root).as_posix()
        others = ", ".join(o.relative_to(root).as_posix() for o in other)
        if config_hashes_to_run_id(record):
            warnings.append(f"{others}: same run_id as {where} but a different config that does not "
                            f"hash to it; ignored, {where} kept")
            continue
        problem = f"{others} has the same run_id and a different config; cannot tell which is right"
        warnings.append(f"{where}: {problem}; treated as missing")
        runs[index] = missing_record(axis, plan.runs[index], problem)
    # Warnings follow the files, not the order the plan happens to list its runs in.
    return plan, runs, sorted(warnings)


def missing_record(axis: str, run: PlannedRun, problem: str | None = None) -> RunRecord:
    """A stand-in record for a planned run that has no usable record (`problem` says why, if it has one)."""
    return RunRecord.missing(axis, run.arm, run.run_id, run.seed, problem)


# The files a run leaves beside its record: its loss log and its answers.
LOSS_LOG, ANSWERS = ".metrics.csv", ".predictions.jsonl"


def loss_log_path(record_file: StrPath) -> Path:
    """The Lightning CSV log (step, train/loss, ...) that the sweep copies beside a record."""
    return Path(record_file).with_suffix(LOSS_LOG)


def answers_path(record_file: StrPath) -> Path:
    """The answers (`.predictions.jsonl`, one JSON object per test item) that the sweep writes beside a record."""
    return Path(record_file).with_suffix(ANSWERS)


def sibling_paths(record_file: StrPath) -> dict[str, Path]:
    """Each file a run leaves beside its record, by its suffix."""
    return {LOSS_LOG: loss_log_path(record_file), ANSWERS: answers_path(record_file)}


def run_sort_key(run: RunRecord) -> tuple[bool, int, str, str]:
    """Order of runs within an arm: integer seeds numerically, then anything else, then run_id."""
    seed = run.seed
    numeric = is_int(seed)
    return not numeric, seed if numeric else 0, str(seed), str(run.run_id)


def _planned_record(
    path: Path, axis: str, run: PlannedRun
) -> tuple[RunRecord | None, str | None]:
    """The record of one planned run and, when it cannot be used, why."""
    if not path.exists():
        return None, None
    if (version := newer_schema(path)) is not None:
        return None, (f"written by a newer vlmlab (schema_version {version}; this one reads {SCHEMA_VERSION}); "
                      "upgrade vlmlab to use it")
    try:
        record = read_record(path)
    except (OSError, RecordError) as exc:
        return None, f"unreadable ({_problem_only(exc, path)})"
    claimed = (record.ablation.name, record.arm, record.run_id, record.seed)
    expected = (axis, run.arm, run.run_id, run.seed)
    if claimed != expected:
        return None, f"record says (axis, arm, run_id, seed) = {claimed}, plan says {expected}"
    return record, None


def _problem_only(exc: Exception, path: Path) -> str:
    """The message of `exc` without the path it starts with (the warning names the file already)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _read_json_object(path: StrPath) -> dict[str, Any]:
    """Parse `path` as a JSON object with the current schema version."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RecordError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version")
    if isinstance(version, int) and version < SCHEMA_VERSION:
        raise RecordError(f"{path}: schema_version is {version}, older than this vlmlab's {SCHEMA_VERSION}; "
                          "`vlmlab migrate` upgrades the results directory")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{path}: schema_version is {version!r}, expected {SCHEMA_VERSION}")
    return obj


def _checked_plan(data: dict[str, Any], axis: str, path: Path) -> Plan:
    """`data` as the Plan of ablation `axis`; RecordError naming `path` and the key unless it is consistent."""
    try:
        plan = Plan.from_dict(data)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None
    ablation = plan.ablation
    if ablation.name != axis:
        raise RecordError(f"{path}: ablation.name is {ablation.name!r}, expected {axis!r}")
    arms, metrics = list(ablation.arms), list(ablation.metrics)
    if ablation.control not in arms:
        raise RecordError(f"{path}: ablation.control {ablation.control!r} is not in arms {arms}")
    # Metric names become CSV column prefixes; a duplicate or "avg" would collide there.
    if len(set(metrics)) != len(metrics) or "avg" in metrics or len(set(arms)) != len(arms):
        raise RecordError(f"{path}: arms and metrics must be unique, and no metric may be 'avg'")
    seen: set[str] = set()
    for i, run in enumerate(plan.runs):
        if run.arm not in arms:
            raise RecordError(f"{path}: runs[{i}].arm {run.arm!r} is not in arms {arms}")
        if run.run_id in seen:
            raise RecordError(f"{path}: runs[{i}].run_id {run.run_id!r} is planned twice")
        seen.add(run.run_id)
    return plan


def _check_path_part(what: str, part: str) -> None:
    """Refuse names that would escape or alias their directory when used as a path component."""
    if not isinstance(part, str) or part in ("", ".", "..") or "/" in part or "\\" in part:
        raise RecordError(f"{what} {part!r} cannot be used as a file or directory name")
