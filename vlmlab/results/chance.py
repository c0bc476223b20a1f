"""The chance row of a table: each benchmark's chance baseline, as the plan holds it (vlmlab.eval.chance)."""

from __future__ import annotations

import math

from vlmlab.run_record import PlannedAblation


def chance_scores(ablation: PlannedAblation) -> dict[str, float]:
    """The chance baseline of each benchmark the plan has one for, and of Avg. (their plain mean, as the arms' Avg.
    is) when every benchmark has one."""
    chance = ablation.chance or {}
    scores = {name: chance[name].score for name in ablation.metrics if name in chance}
    if scores and len(scores) == len(ablation.metrics):
        scores["avg"] = math.fsum(scores.values()) / len(scores)
    return scores
