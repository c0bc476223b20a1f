"""The commands that read what sweeps left: `vlmlab tables`, `vlmlab status AXIS`, `vlmlab list`, `vlmlab migrate`."""

from __future__ import annotations

import sys
from pathlib import Path

from vlmlab.cli.command import Command, Invocation


def write_tables(results_dir: Path) -> list[Path]:
    """Every table from the records under `results_dir`, each file written named on stdout."""
    from vlmlab.results.tables import write_tables as write

    written = write(results_dir)
    for path in written:
        print(f"wrote {path}")
    return written


def tables(inv: Invocation) -> int:
    """Regenerate every table from the records alone: 1 if there are records and no table could be written."""
    results = Path(inv.config().paths.results_dir)
    return 0 if write_tables(results) or not (results / "runs").exists() else 1


def status(inv: Invocation) -> int:
    """Print where every planned run of the axis stands; 2 if it has no plan."""
    from vlmlab.results.records import RecordError
    from vlmlab.sweep.ablation import AblationError, ablation_path
    from vlmlab.launch.status import axis_status, render

    axis, paths = inv.args.axis, inv.config().paths
    try:  # a plan may outlive its ablation file, but the axis must be a plain name, not a path
        ablation_path(Path(paths.ablations_dir), axis, must_exist=False)
    except AblationError as err:
        print(f"vlmlab status: {err}", file=sys.stderr)
        return 2
    results = Path(paths.results_dir)
    try:
        print(render(axis, axis_status(results, Path(paths.output_dir), axis)))
    except (FileNotFoundError, RecordError) as err:
        print(f"vlmlab status: no plan for '{axis}' in {results}/runs ({err})", file=sys.stderr)
        return 2
    return 0


def list_ablations(inv: Invocation) -> int:
    """Print the ablations, one name a line."""
    from vlmlab.sweep.ablation import available

    print("\n".join(available(Path(inv.config().paths.ablations_dir))))
    return 0


def migrate(inv: Invocation) -> int:
    """Upgrade the records and plans under paths.results_dir to the current schema; 1 if some could not be."""
    from vlmlab.results.migrate import migrate_results
    from vlmlab.run_record import SCHEMA_VERSION

    report = migrate_results(Path(inv.config().paths.results_dir))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.records and not report.plans:
        print("nothing to migrate: every record and plan is at schema", SCHEMA_VERSION)
    else:
        plural = "" if report.plans == 1 else "s"
        print(f"{report.records} records and {report.plans} plan{plural} migrated to schema {SCHEMA_VERSION}; "
              f"{len(report.renamed)} runs have a new run_id (the records were renamed; the tables are unchanged)")
        for old, new in sorted(report.renamed.items()):
            print(f"  {old} -> {new}")
    return 1 if any("not migrated" in w for w in report.warnings) else 0


TABLES = Command("tables", "regenerate every table from the records in paths.results_dir alone", tables)
STATUS = Command("status", "every planned run of an ablation: done, running, failed, missing; time left", status,
                 axis=True)
LIST = Command("list", "the ablations in paths.ablations_dir", list_ablations)
MIGRATE = Command("migrate", "upgrade the records and plans in paths.results_dir written by an older vlmlab",
                  migrate)
