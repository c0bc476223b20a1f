"""Learning-rate schedules, built from `optim.schedule` (a `_partial_` config called with the optimizer and the
run's total steps), and the upgrade of an older flat `optim` config to the `_target_` layout of conf/optim.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each step: linear warmup, then cosine down to `min_ratio`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class WarmupCosine(LambdaLR):
    """Each group's lr warms up linearly over `warmup_steps`, then decays on a cosine to `min_lr_ratio` of it."""

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> None:
        self.total_steps, self.warmup_steps, self.min_lr_ratio = total_steps, warmup_steps, min_lr_ratio
        # LambdaLR's state_dict keeps the three numbers above (they are attributes) and drops the plain function.
        super().__init__(optimizer, warmup_cosine(warmup_steps, total_steps, min_lr_ratio))


# Where each key of the flat layout (schema 1 records) lives in the `_target_` layout, and what the flat
# layout always meant: AdamW, and the warmup-cosine schedule.
_FLAT_KEYS = {"optimizer": ("betas", "eps"), "schedule": ("warmup_steps", "min_lr_ratio")}
_FLAT_TARGETS = {"optimizer": "torch.optim.AdamW", "schedule": f"{WarmupCosine.__module__}.{WarmupCosine.__name__}"}


def upgrade_flat_optim(optim: Mapping[str, Any]) -> dict[str, Any]:
    """The flat `optim` config of older runs (AdamW keys at its top) in the `_target_` layout, values unchanged."""
    upgraded = copy.deepcopy(dict(optim))
    if any(node in upgraded for node in _FLAT_KEYS):  # already the `_target_` layout: nothing to move
        return upgraded
    nodes: dict[str, Any] = {}
    for node, keys in _FLAT_KEYS.items():
        missing = [key for key in keys if key not in upgraded]
        if missing:
            raise ValueError(f"optim.{missing[0]}: missing from a flat optim config (it has {sorted(upgraded)})")
        nodes[node] = {"_target_": _FLAT_TARGETS[node], "_partial_": True, **{key: upgraded.pop(key) for key in keys}}
    # lr, lr_scale (absent from the oldest records, read as 1) and weight_decay keep their paths.
    return {**nodes, **upgraded}
