"""A run another ablation already finished: the same science config, so the same run_id, under another axis.

Ablation files share arms on purpose (connector's MLP and perceiver arms are architecture's frozen arms;
perceiver_depth's depth_3 is architecture's LoRA arm). A run's identity leaves out which ablation it belongs to
(vlmlab.sweep.identity), and a run is deterministic on one device, so training it again only spends the time:
the sweep copies the finished record instead. The copy is relabelled with its own axis and arm (`ablation` and
`config.ablation`, both outside the identity); its scores, cost, answers and loss curve are the original's, and
so is its provenance, whose command names the sweep that trained it.

Only a record that proves its identity is copied: status done, the same seed, and a config that hashes to the
run_id under this vlmlab (a hand-edited or stale record is not vouched for, and the run trains).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from vlmlab.results.duplicates import config_hashes_to_run_id
from vlmlab.results.records import atomic_write_bytes, read_record, record_path, sibling_paths, write_record
from vlmlab.run_record import ArmLabel, RecordError, RunRecord

log = logging.getLogger(__name__)


def finished_elsewhere(results_dir: Path, axis: str, rid: str, seed: Any) -> tuple[Path, RunRecord] | None:
    """The first (in path order) done, genuine record of run `rid` and `seed` under another axis, and its path."""
    for path in sorted((results_dir / "runs").glob(f"*/*/{rid}.json")):
        if path.parent.parent.name == axis:
            continue
        try:
            record = read_record(path)
        except (OSError, RecordError):
            continue  # unreadable or of another schema: it proves nothing
        if record.done and record.run_id == rid and record.seed == seed and config_hashes_to_run_id(record):
            return path, record
    return None


def copy_finished_run(results_dir: Path, source: Path, record: RunRecord, ablation: dict[str, Any]) -> Path:
    """Write `record` (read from `source`) as the run of the ablation node `ablation` (name, arm, command...):
    the files beside it first, the record last; if any write fails, the files already written go again."""
    label = ArmLabel(ablation["name"], ablation["arm"])
    copy = dataclasses.replace(record, ablation=label, config=record.config | {"ablation": ablation})
    targets = sibling_paths(record_path(results_dir, label.name, label.arm, record.run_id))
    try:
        for suffix, sibling in sibling_paths(source).items():
            if sibling.exists():
                atomic_write_bytes(targets[suffix], sibling.read_bytes())  # as written: CSV ends lines in \r\n
        path = write_record(results_dir, copy)
    except (OSError, RecordError):
        for target in targets.values():  # no orphan beside a record that was not written
            target.unlink(missing_ok=True)
        raise
    log.info("%s/%s seed %s (%s): trained already as %s/%s; record copied, not trained again",
             label.name, label.arm, record.seed, record.run_id, record.ablation.name, record.arm)
    return path
