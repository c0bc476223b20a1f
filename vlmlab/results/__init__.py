"""Results: the per-run record store and the paper-style tables aggregated from it.

``records`` writes and reads one JSON record per run (atomically) and the plan of each ablation;
``stats`` holds the statistics over seeds (mean, std, Student-t intervals, paired t-tests);
``tables`` turns the records of an axis into one row per arm (mean ± std over seeds, delta to the
control and its paired test, costs) and writes ``tables/<axis>.md``, ``.csv``, ``.tex``, ``.png``
and ``_loss.png``; ``render`` (Markdown, CSV), ``latex`` and ``plots`` draw them.
"""

from vlmlab.results.records import (
    SCHEMA_VERSION,
    RecordError,
    atomic_write_bytes,
    atomic_write_text,
    is_done,
    load_axis,
    plan_path,
    read_plan,
    read_record,
    record_path,
    write_plan,
    write_record,
)
# The tables' names are imported when first asked for: they bring pandas, which a training job never needs.
_TABLES = ("TablesReport", "render_csv", "render_latex", "render_markdown", "summarise", "write_all_tables",
           "write_tables")


def __getattr__(name: str):
    if name in _TABLES:
        from vlmlab.results import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "RecordError",
    "TablesReport",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_done",
    "load_axis",
    "plan_path",
    "read_plan",
    "read_record",
    "record_path",
    "render_csv",
    "render_latex",
    "render_markdown",
    "summarise",
    "write_plan",
    "write_all_tables",
    "write_record",
    "write_tables",
]
