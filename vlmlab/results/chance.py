"""The chance row of a table: each benchmark's chance baseline, as the plan holds it (vlmlab.eval.chance)."""

from __future__ import annotations

import math

from vlmlab.eval.metrics import averaged
from vlmlab.run_record import PlannedAblation


def chance_scores(ablation: PlannedAblation) -> dict[str, float]:
    """The chance baseline of each benchmark the plan has one for, and of Avg. (the plain mean over the benchmarks
    Avg. averages, as the arms' Avg. is) when every benchmark has one."""
    chance = ablation.chance or {}
    scores = {name: chance[name].score for name in ablation.metrics if name in chance}
    if scores and len(scores) == len(ablation.metrics):
        mean_of = averaged(ablation.metrics, ablation.metric_of or {})
        scores["avg"] = math.fsum(scores[name] for name in mean_of) / len(mean_of) if mean_of else math.nan
    return scores
