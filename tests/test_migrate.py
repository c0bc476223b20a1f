"""`vlmlab migrate`: records of an older schema upgraded in place, under the identity a fresh sweep gives them.

The fixture is the `captions` ablation as vlmlab wrote it at schema 1 (tests/fixtures/records_v1, the committed
records before the optimizer became a `_target_` config; the answers beside them are left out for size). What
migrating it must give is tests/fixtures/records_v2: the same runs as `vlmlab migrate` upgraded them in
`results/`, kept here since `results/runs/captions` was swept again on the new defaults.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vlmlab.cli import main
from vlmlab.results.migrate import migrate_results, upgrade
from vlmlab.results.records import load_axis, read_record
from vlmlab.run_record import SCHEMA_VERSION, RecordError

FIXTURE = Path(__file__).parent / "fixtures" / "records_v1"
MIGRATED = Path(__file__).parent / "fixtures" / "records_v2" / "runs" / "captions"


@pytest.fixture
def old_results(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURE, tmp_path / "results")
    return tmp_path / "results"


def test_older_records_are_refused_until_migrated(old_results: Path) -> None:
    (record_file, *_) = sorted(old_results.glob("runs/captions/*/*.json"))
    with pytest.raises(RecordError, match="schema_version is 1, older .*`vlmlab migrate`"):
        read_record(record_file)


def test_migration_gives_the_committed_records_and_is_idempotent(old_results: Path) -> None:
    report = migrate_results(old_results)
    assert (report.records, report.plans, report.warnings) == (4, 1, [])
    assert len(report.renamed) == 4, "the optimizer's new layout is a new config: every run has a new id"
    # The records committed in results/ until the re-sweep were migrated by this code: the same bytes, under the
    # same names. (Their plan was written again since, by a sweep that trained nothing: it names the same runs.)
    migrated = {p.relative_to(old_results / "runs" / "captions"): p.read_bytes()
                for p in (old_results / "runs" / "captions").rglob("*") if p.is_file() and p.name != "plan.json"}
    committed = {p.relative_to(MIGRATED): p.read_bytes() for p in MIGRATED.rglob("*")
                 if p.is_file() and p.name != "plan.json"}
    assert migrated == committed
    plan, runs, warnings = load_axis(old_results, "captions")
    assert warnings == [] and all(run.done and run.schema_version == SCHEMA_VERSION for run in runs)
    committed_plan, committed_runs, _ = load_axis(MIGRATED.parents[1], "captions")
    assert plan.runs == committed_plan.runs and runs == committed_runs
    again = migrate_results(old_results)
    assert (again.records, again.plans, again.renamed) == (0, 0, {})


def test_a_record_whose_config_does_not_hash_to_its_id_keeps_its_id(old_results: Path) -> None:
    (record_file, *_) = sorted(old_results.glob("runs/captions/*/*.json"))
    record = json.loads(record_file.read_text())
    record["config"]["seed"] = 99  # edited by hand: its id no longer says what it is
    record_file.write_text(json.dumps(record))
    report = migrate_results(old_results)
    assert any("does not hash to its run_id; migrated under the same run_id" in w for w in report.warnings)
    assert read_record(record_file).run_id == record["run_id"]


def test_an_unknown_version_is_not_migrated() -> None:
    with pytest.raises(RecordError, match="schema_version 0 cannot be migrated"):
        upgrade({"schema_version": 0, "config": {}, "run_id": "x"})


def test_the_command_reports_what_it_did(old_results: Path, capsys) -> None:
    assert main(["migrate", "--results-dir", str(old_results)]) == 0
    out = capsys.readouterr().out
    assert "4 records and 1 plan migrated to schema 2" in out and "4 runs have a new run_id" in out
    assert main(["migrate", "--results-dir", str(old_results)]) == 0
    assert "nothing to migrate" in capsys.readouterr().out
