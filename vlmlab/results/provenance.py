"""The provenance footer of a table: which code, packages, device, data and commands produced its records."""

from __future__ import annotations

from collections import Counter

from vlmlab.run_record import Provenance, RunRecord

SHOWN_PACKAGES = ("torch", "transformers", "lightning", "peft", "datasets")


def _counted(values: Counter) -> str:
    """`a (3 runs), b (1 run)`, sorted so the same records always give the same text."""
    return ", ".join(f"{value} ({n} run{'s' if n != 1 else ''})" for value, n in sorted(values.items()))


def provenance_lines(runs: list[RunRecord]) -> list[str]:
    """One line per aspect of provenance over the runs that have a record (missing runs have none)."""
    recorded = [run.provenance or Provenance() for run in runs if run.status != "missing"]
    if not recorded:
        return []
    code = Counter()
    for prov in recorded:
        commit = (prov.git_commit or "unknown")[:10]
        dirty = prov.git_dirty
        code[f"{commit}{' (uncommitted changes)' if dirty else '' if dirty is False else ' (dirty: unknown)'}"] += 1
    packages = Counter(
        " ".join(f"{name} {(prov.packages or {}).get(name) or '?'}" for name in SHOWN_PACKAGES)
        for prov in recorded
    )
    lines = [
        f"code: {_counted(code)}",
        f"packages: {_counted(packages)}",
        f"device: {_counted(Counter(prov.device or 'unknown' for prov in recorded))}",
        f"data: {_counted(Counter(prov.dataset_version or 'unknown' for prov in recorded))}",
        f"commands: {_counted(Counter(prov.command or 'unknown' for prov in recorded))}",
    ]
    if skipped := _skipped(runs):
        lines.append(f"rows skipped while reading the data: {skipped}")
    return lines


def _skipped(runs: list[RunRecord]) -> str:
    """The bad rows of the data, per source and reason (`test/vqav2: undecodable_image 2`): one suite build
    gives every run the same counts, so a source's largest count over the runs is shown."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        for source, reasons in (run.cost.data_skipped or {}).items():
            for reason, n in reasons.items():
                counts[source, reason] = max(counts.get((source, reason), 0), int(n))
    return "; ".join(f"{source}: {reason} {n}" for (source, reason), n in sorted(counts.items()))
