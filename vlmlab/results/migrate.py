"""Upgrade a results directory written by an older vlmlab to the current record schema, in place.

Each schema change is one step, a function from a record of version N to one of version N + 1. A step may change
a run's config and so its identity: the migrated record is then written under its new run_id (with the loss log
and predictions beside it), the old file goes, and the plan of its ablation names the new id. A record whose
config does not hash to its run_id (hand-edited, or from an identity nobody can reproduce) is not vouched for:
it keeps its id, and the report says so. Running the migration again changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vlmlab.results.records import StrPath, atomic_write_text, plan_path, record_path, sibling_paths
from vlmlab.run_record import SCHEMA_VERSION, RecordError, RunRecord
from vlmlab.sweep.identity import hashes_to, run_id
from vlmlab.train.schedules import upgrade_flat_optim

Record = dict[str, Any]


def _optimizer_as_config(record: Record) -> Record:
    """1 -> 2: the optimizer and schedule became `_target_` configs (conf/optim); same values, new layout."""
    config = dict(record["config"])
    if "optim" in config:
        config["optim"] = upgrade_flat_optim(config["optim"])
    return record | {"config": config}


# STEPS[v] turns a record of version v into one of version v + 1.
STEPS: dict[int, Callable[[Record], Record]] = {1: _optimizer_as_config}


def upgrade(record: Record) -> tuple[Record, bool]:
    """`record` at the current schema, with its run_id recomputed where a step changed its config; and whether
    its run_id was vouched for (its config hashed to it before the steps)."""
    version = record.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION or (version < SCHEMA_VERSION and version not in STEPS):
        raise RecordError(f"schema_version {version!r} cannot be migrated to {SCHEMA_VERSION}")
    genuine = hashes_to(record.get("config"), record.get("run_id"))
    while record["schema_version"] < SCHEMA_VERSION:
        record = STEPS[record["schema_version"]](record) | {"schema_version": record["schema_version"] + 1}
    if genuine:
        record = record | {"run_id": run_id(OmegaConf.create(record["config"]))}
    return record, genuine


@dataclass
class MigrationReport:
    """What a migration rewrote, and what it could not vouch for or read."""

    records: int = 0
    plans: int = 0
    renamed: dict[str, str] = field(default_factory=dict)  # old run_id -> new
    warnings: list[str] = field(default_factory=list)


def migrate_results(results_dir: StrPath) -> MigrationReport:
    """Upgrade every record and plan under `results_dir`/runs to the current schema, in place."""
    root, report = Path(results_dir), MigrationReport()
    for axis_dir in sorted(p for p in (root / "runs").glob("*") if p.is_dir()):
        renamed: dict[str, str] = {}
        for path in sorted(axis_dir.glob("*/*.json")):
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
                if old.get("schema_version") == SCHEMA_VERSION:
                    continue
                new, genuine = upgrade(old)
                record = RunRecord.from_dict(new)  # the migrated record must read as the current schema
            except (OSError, ValueError, AttributeError) as exc:
                report.warnings.append(f"{path.relative_to(root)}: not migrated: {exc}")
                continue
            if not genuine:
                report.warnings.append(f"{path.relative_to(root)}: its config does not hash to its run_id; "
                                       "migrated under the same run_id")
            _move(root, path, record)
            renamed[old["run_id"]] = record.run_id
            report.records += 1
        if _migrate_plan(root, axis_dir.name, renamed):
            report.plans += 1
        report.renamed |= {old: new for old, new in renamed.items() if old != new}
    return report


def _move(root: Path, old_path: Path, record: RunRecord) -> None:
    """Write `record` under its (new) path with its siblings, then remove the old files."""
    new_path = record_path(root, record.ablation.name, record.arm, record.run_id)
    old_siblings, new_siblings = sibling_paths(old_path), sibling_paths(new_path)
    if new_path != old_path:
        for suffix, old_sibling in old_siblings.items():
            if old_sibling.exists():
                atomic_write_text(new_siblings[suffix], old_sibling.read_text(encoding="utf-8"))
    atomic_write_text(new_path, record.to_json())  # the record last: siblings never sit beside a missing record
    if new_path != old_path:
        for old_sibling in old_siblings.values():
            old_sibling.unlink(missing_ok=True)
        old_path.unlink()


def _migrate_plan(root: Path, axis: str, renamed: dict[str, str]) -> bool:
    """Rewrite the plan of `axis` at the current schema with its runs' new ids; False when it had none to do."""
    path = plan_path(root, axis)
    if not path.exists():
        return False
    plan = json.loads(path.read_text(encoding="utf-8"))
    if plan.get("schema_version") == SCHEMA_VERSION:
        return False
    runs = [run | {"run_id": renamed.get(run["run_id"], run["run_id"])} for run in plan["runs"]]
    atomic_write_text(path, json.dumps(plan | {"schema_version": SCHEMA_VERSION, "runs": runs},
                                       sort_keys=True, indent=2) + "\n")
    return True
