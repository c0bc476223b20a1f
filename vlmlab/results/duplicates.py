"""Records that claim the same run_id with different configs, and which of them to believe.

A run_id is a hash of the run's science config (``vlmlab.sweep.identity``), so two records of one
run_id with different configs cannot both be right: a hand copy, a stale file from an edited
config, or a record written by another version of the identity. The one whose config hashes to
its run_id is the genuine one; if the planned record is not provably genuine, the table uses
neither and says so.
"""

from __future__ import annotations

from pathlib import Path

from vlmlab.run_record import RunRecord
from vlmlab.sweep.identity import hashes_to


def conflicting_records(
    planned: dict[Path, int], runs: list[RunRecord], others: list[tuple[Path, RunRecord]]
) -> list[tuple[Path, list[Path]]]:
    """Planned records with other records (`others`: path and record of each readable one outside the plan) of
    the same run_id whose config differs from theirs."""
    by_id = {runs[i].run_id: path for path, i in planned.items() if runs[i].status != "missing"}
    found: dict[Path, list[Path]] = {}
    for path, other in others:
        mine = by_id.get(other.run_id)
        if mine is not None and other.config != runs[planned[mine]].config:
            found.setdefault(mine, []).append(path)
    return sorted(found.items())


def config_hashes_to_run_id(record: RunRecord) -> bool:
    """Whether the record's config gives its run_id under the sweep's run identity."""
    return hashes_to(record.config, record.run_id)
