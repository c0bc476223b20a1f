"""Tests of the run record store: atomic writes, strict reads, plans and loading an axis."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from vlmlab.results import records
from vlmlab.results.records import (
    RecordError,
    is_done,
    load_axis,
    newer_schema,
    plan_path,
    read_plan,
    read_record,
    record_path,
    write_plan,
    write_record,
)
from vlmlab.run_record import SCHEMA_VERSION, Cost, RunRecord

AXIS = "connector"
ARMS = ["perceiver", "linear"]
SEEDS = [0, 1]


def run_id(arm: str, seed: int) -> str:
    """A stable 12-hex id per (arm, seed), like the sweep's config hash."""
    return hashlib.sha256(f"{arm}/{seed}".encode()).hexdigest()[:12]


def raw_record(arm: str, seed: int, status: str = "done", **metrics: float) -> dict[str, Any]:
    """The JSON object of a record of one run, at the current schema."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id(arm, seed),
        "ablation": {"name": AXIS, "arm": arm},
        "seed": seed,
        "status": status,
        "config": {"model": {"connector": arm}, "seed": seed},
        "metrics": dict(metrics) if status == "done" else {},
        "cost": {"params_total": 1000, "params_trainable": 10, "visual_tokens_per_image": 64,
                 "train_seconds": 1.5, "eval_seconds": 0.5, "train_samples_per_second": 2.0},
        "provenance": {"git_commit": None, "git_dirty": None, "packages": {}, "python": "3.11",
                       "platform": "test", "command": "pytest"},
        "error": None if status == "done" else {"type": "RuntimeError", "message": "boom",
                                                "traceback": ""},
    }


def make_record(arm: str, seed: int, status: str = "done", **metrics: float) -> RunRecord:
    """A record of one run."""
    return RunRecord.from_dict(raw_record(arm, seed, status, **metrics))


def write_raw(tmp_path: Path, raw: dict[str, Any]) -> Path:
    """Write a record's JSON object by hand where the planned run's record belongs (as a copy by hand would)."""
    path = record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw))
    return path


def make_plan(tmp_path: Path) -> list[dict[str, Any]]:
    """Write the plan of a 2-arm x 2-seed ablation; return its runs."""
    ablation = {"name": AXIS, "question": "Which connector?", "paper_table": "Table 11",
                "control": "perceiver", "arms": ARMS, "metrics": ["vqa"], "seeds": SEEDS}
    runs = [{"run_id": run_id(a, s), "arm": a, "seed": s} for a in ARMS for s in SEEDS]
    write_plan(tmp_path, AXIS, ablation, runs)
    return runs


def leftovers(directory: Path) -> list[str]:
    """Names of temp files left in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_round_trip_and_layout(tmp_path: Path) -> None:
    record = make_record("perceiver", 0, vqa=61.25)
    path = write_record(tmp_path, record)
    assert path == tmp_path / "runs" / AXIS / "perceiver" / f"{run_id('perceiver', 0)}.json"
    assert path == record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))
    assert read_record(path) == record
    text = path.read_text()
    # The file holds the record as given, every provenance field named (unknown ones as null).
    assert json.loads(text) == raw_record("perceiver", 0, vqa=61.25) | {"provenance": {
        **raw_record("perceiver", 0)["provenance"], "device": None, "dataset_version": None}}
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    assert leftovers(path.parent) == []


def test_unserialisable_write_keeps_previous_file(tmp_path: Path) -> None:
    path = write_record(tmp_path, make_record("perceiver", 0, vqa=61.0))
    before = path.read_bytes()
    bad = make_record("perceiver", 0, vqa=62.0)
    bad.config["callback"] = object()
    with pytest.raises(RecordError, match="not JSON-serialisable"):
        write_record(tmp_path, bad)
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


def test_failure_during_write_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    path = write_record(tmp_path, make_record("perceiver", 0, vqa=61.0))
    before = path.read_bytes()

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_record(tmp_path, make_record("perceiver", 0, vqa=99.0))
    assert path.read_bytes() == before
    assert leftovers(path.parent) == []


@pytest.mark.parametrize("key", ["status", "run_id", "seed"])
def test_missing_key_is_named(tmp_path: Path, key: str) -> None:
    raw = raw_record("perceiver", 0, vqa=61.0)
    del raw[key]
    path = write_raw(tmp_path, raw)
    with pytest.raises(RecordError, match=f"{path}: missing required key '{key}'"):
        read_record(path)


def test_unknown_key_missing_nested_key_and_bad_status(tmp_path: Path) -> None:
    raw = raw_record("perceiver", 0, vqa=61.0)
    del raw["ablation"]["arm"]
    with pytest.raises(RecordError, match="ablation: .*'arm'"):
        read_record(write_raw(tmp_path, raw))
    raw = raw_record("perceiver", 0, vqa=61.0)
    raw["cost"]["train_secnds"] = 1.0
    with pytest.raises(RecordError, match="cost has unknown key 'train_secnds'"):
        read_record(write_raw(tmp_path, raw))
    with pytest.raises(RecordError, match="status 'finished'"):
        read_record(write_raw(tmp_path, raw_record("perceiver", 0, status="finished")))
    before = write_raw(tmp_path, raw_record("perceiver", 0, vqa=61.0)).read_bytes()
    record = make_record("perceiver", 0, vqa=61.0)
    record.status = "finished"
    with pytest.raises(RecordError, match="status 'finished'"):
        write_record(tmp_path, record)
    assert record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0)).read_bytes() == before


def test_a_cost_round_trips_with_its_stages_and_leaves_unmeasured_fields_out() -> None:
    cost = Cost(train_seconds=2.0, stages=[Cost(stage="align", train_steps=3), Cost(stage="lora", train_steps=4)])
    assert cost.to_dict() == {"train_seconds": 2.0, "stages": [{"stage": "align", "train_steps": 3},
                                                                {"stage": "lora", "train_steps": 4}]}
    assert Cost.from_dict(cost.to_dict()) == cost
    with pytest.raises(RecordError, match=r"cost.stages\[1\] has unknown key 'steps'"):
        Cost.from_dict({"stages": [{"stage": "a"}, {"steps": 1}]})


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    record = make_record("perceiver", 0, vqa=61.0)
    record.ablation = type(record.ablation)(AXIS, "../escape")
    with pytest.raises(RecordError, match="arm"):
        write_record(tmp_path, record)


@pytest.mark.parametrize(
    ("content", "problem"),
    [("{not json", "invalid JSON"), ("[1, 2]", "expected a JSON object"),
     ('{"schema_version": 3}', "schema_version is 3"), ('{"schema_version": 1}', "`vlmlab migrate`")],
)
def test_bad_file_names_path(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(RecordError) as info:
        read_record(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_is_done(tmp_path: Path) -> None:
    write_record(tmp_path, make_record("perceiver", 0, vqa=61.0))
    write_record(tmp_path, make_record("perceiver", 1, status="failed"))
    assert is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))
    assert not is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 1))
    assert not is_done(tmp_path, AXIS, "linear", run_id("linear", 0))
    record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0)).write_text("{")
    assert not is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))


@pytest.mark.parametrize(("key", "value"), [("seed", 5), ("ablation", {"name": AXIS, "arm": "linear"}),
                                            ("ablation", {"name": "other", "arm": "perceiver"})])
def test_is_done_refuses_a_record_altered_by_hand(tmp_path: Path, key: str, value: Any) -> None:
    """A record that load_axis shows as missing (another run's identity) is not done: the sweep trains it again."""
    make_plan(tmp_path)
    record = raw_record("perceiver", 0, vqa=61.0)
    path = write_raw(tmp_path, record)
    assert is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0), seed=0)
    path.write_text(json.dumps(record | {key: value}))
    assert not is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0), seed=0)
    assert load_axis(tmp_path, AXIS)[1][0].status == "missing", "the table agrees"
    # Without a seed (vlmlab/launch/job.py's call) any seed matches, the rest of the identity still counts.
    assert is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0)) == (key == "seed")
    assert not is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0), seed=1)


@pytest.mark.parametrize(("content", "expected"), [
    ('{"schema_version": 3, "status": "done"}', 3), ('{"schema_version": 2}', None), ('{"schema_version": 1}', None),
    ('{"schema_version": true}', None), ('{"schema_version": "3"}', None), ("[3]", None), ("{oops", None),
    (b"\xff\xfe", None), (None, None),
])
def test_newer_schema(tmp_path: Path, content: str | bytes | None, expected: int | None) -> None:
    path = tmp_path / "record.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert newer_schema(path) == expected


def test_load_axis_says_a_record_comes_from_a_newer_vlmlab(tmp_path: Path) -> None:
    make_plan(tmp_path)
    path = record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(raw_record("perceiver", 0, vqa=61.0) | {"schema_version": 3}))
    _, loaded, warnings = load_axis(tmp_path, AXIS)
    assert loaded[0].status == "missing"
    assert warnings == [f"runs/{AXIS}/perceiver/{run_id('perceiver', 0)}.json: written by a newer vlmlab "
                        "(schema_version 3; this one reads 2); upgrade vlmlab to use it; treated as missing"]
    assert not is_done(tmp_path, AXIS, "perceiver", run_id("perceiver", 0), seed=0)


def test_plan_round_trip_and_checks(tmp_path: Path) -> None:
    runs = make_plan(tmp_path)
    plan = read_plan(tmp_path, AXIS)
    assert plan.schema_version == SCHEMA_VERSION and [vars(run) for run in plan.runs] == runs
    assert plan_path(tmp_path, AXIS).read_text() == plan.to_json(), "what is read writes back to the same bytes"
    ablation = dict(vars(plan.ablation), control="mlp")
    with pytest.raises(RecordError, match="control 'mlp'"):
        write_plan(tmp_path, AXIS, ablation, runs)
    with pytest.raises(RecordError, match="planned twice"):
        write_plan(tmp_path, AXIS, plan.ablation.to_dict(), runs + runs[:1])
    assert read_plan(tmp_path, AXIS) == plan


def test_load_axis(tmp_path: Path) -> None:
    runs = make_plan(tmp_path)
    write_record(tmp_path, make_record("perceiver", 0, vqa=61.0))
    write_record(tmp_path, make_record("perceiver", 1, status="failed"))
    broken = record_path(tmp_path, AXIS, "linear", run_id("linear", 0))
    broken.parent.mkdir(parents=True)
    broken.write_text("{oops")
    for seed in (7, 8, 9):  # records of an older plan
        write_record(tmp_path, make_record("linear", seed, vqa=1.0))

    plan, loaded, warnings = load_axis(tmp_path, AXIS)
    assert [(r.run_id, r.status) for r in loaded] == [
        (runs[0]["run_id"], "done"), (runs[1]["run_id"], "failed"),
        (runs[2]["run_id"], "missing"), (runs[3]["run_id"], "missing"),
    ]
    assert plan.ablation.control == "perceiver"
    assert "3 records not in plan.json ignored" in warnings
    unreadable = [w for w in warnings if "unreadable" in w]
    assert len(unreadable) == 1 and f"linear/{run_id('linear', 0)}.json" in unreadable[0]
    assert len(warnings) == 2
    # The stand-in says why the record was not used; a run with no record at all has no such note.
    assert loaded[2].error.type == "record skipped"
    assert loaded[2].error.message.startswith("unreadable (invalid JSON")
    assert loaded[3].error is None


def test_record_for_another_run_is_not_trusted(tmp_path: Path) -> None:
    make_plan(tmp_path)
    record = raw_record("perceiver", 0, vqa=61.0)
    record["seed"] = 5  # same file name, different run: e.g. copied by hand
    write_raw(tmp_path, record)
    _, loaded, warnings = load_axis(tmp_path, AXIS)
    assert loaded[0].status == "missing"
    assert any("plan says" in w for w in warnings)


def test_written_files_are_readable_by_others(tmp_path: Path) -> None:
    path = write_record(tmp_path, make_record("perceiver", 0, vqa=61.0))
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_atomic_write_bytes(tmp_path: Path, monkeypatch) -> None:
    path = records.atomic_write_bytes(tmp_path / "deep" / "chart.png", b"\x89PNG\r\n\x00")
    assert path.read_bytes() == b"\x89PNG\r\n\x00" and os.stat(path).st_mode & 0o777 == 0o644
    assert records.atomic_write_text(tmp_path / "t.md", "a\nb\n").read_bytes() == b"a\nb\n"

    def fail(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(records.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        records.atomic_write_bytes(path, b"other")
    assert path.read_bytes() == b"\x89PNG\r\n\x00" and leftovers(path.parent) == []


def test_cost_must_be_an_object(tmp_path: Path) -> None:
    raw = raw_record("perceiver", 0, vqa=61.0)
    raw["cost"] = [1, 2]
    with pytest.raises(RecordError, match="cost must be an object"):
        read_record(write_raw(tmp_path, raw))


def test_loss_log_sits_beside_the_record(tmp_path: Path) -> None:
    path = record_path(tmp_path, AXIS, "perceiver", run_id("perceiver", 0))
    assert records.loss_log_path(path) == path.parent / f"{run_id('perceiver', 0)}.metrics.csv"
