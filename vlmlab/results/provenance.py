"""The provenance footer of a table: which code, packages, device, data and commands produced its records."""

from __future__ import annotations

from collections import Counter
from typing import Any

SHOWN_PACKAGES = ("torch", "transformers", "lightning", "peft", "datasets")


def _counted(values: Counter) -> str:
    """`a (3 runs), b (1 run)`, sorted so the same records always give the same text."""
    return ", ".join(f"{value} ({n} run{'s' if n != 1 else ''})" for value, n in sorted(values.items()))


def provenance_lines(runs: list[dict[str, Any]]) -> list[str]:
    """One line per aspect of provenance over the runs that have a record (missing runs have none)."""
    recorded = [run.get("provenance") or {} for run in runs if run.get("status") != "missing"]
    if not recorded:
        return []
    code = Counter()
    for prov in recorded:
        commit = (prov.get("git_commit") or "unknown")[:10]
        dirty = prov.get("git_dirty")
        code[f"{commit}{' (uncommitted changes)' if dirty else '' if dirty is False else ' (dirty: unknown)'}"] += 1
    packages = Counter(
        " ".join(f"{name} {(prov.get('packages') or {}).get(name) or '?'}" for name in SHOWN_PACKAGES)
        for prov in recorded
    )
    lines = [
        f"code: {_counted(code)}",
        f"packages: {_counted(packages)}",
        f"device: {_counted(Counter(prov.get('device') or 'unknown' for prov in recorded))}",
        f"data: {_counted(Counter(prov.get('dataset_version') or 'unknown' for prov in recorded))}",
        f"commands: {_counted(Counter(prov.get('command') or 'unknown' for prov in recorded))}",
    ]
    if skipped := _skipped(runs):
        lines.append(f"rows skipped while reading the data: {skipped}")
    return lines


def _skipped(runs: list[dict[str, Any]]) -> str:
    """The bad rows of the data, per source and reason (`test/vqav2: undecodable_image 2`): one suite build
    gives every run the same counts, so a source's largest count over the runs is shown."""
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        for source, reasons in ((run.get("cost") or {}).get("data_skipped") or {}).items():
            for reason, n in reasons.items():
                counts[source, reason] = max(counts.get((source, reason), 0), int(n))
    return "; ".join(f"{source}: {reason} {n}" for (source, reason), n in sorted(counts.items()))
