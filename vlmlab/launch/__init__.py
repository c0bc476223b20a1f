"""Running what the sweep planned: one job per (arm, seed), its lock, its processes, its record and provenance, and
where every planned run stands.

It comes after the records in the flow (it writes them), so it sits above `vlmlab.results`; the ablation's spec,
plan and run identity, which the records and the tables read, stay below in `vlmlab.sweep`.
"""
