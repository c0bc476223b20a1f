"""Training budgets: a run's length in optimizer steps, images seen, tokens seen or training FLOPs.

Arms that change how many visual tokens an image costs also change what a step costs; a budget in tokens
or FLOPs compares them at equal compute instead of at equal steps. The config's `budget: {unit, value}` is
resolved into steps before training: value / (what one step spends of the unit), rounded down, at least 1;
`value: null` means "trainer.max_steps". With stages, each stage's config is a full config and carries the
run's budget, so each stage trains the whole budget; a stage may set its own `budget` (its unit or value),
which later stages keep, as with every stage key (vlmlab.train.stages).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlmlab.errors import ConfigError


@dataclass(frozen=True)
class SampleCost:
    """What one training sample costs on average: its tokens (text + visual) and its training FLOPs."""

    text_tokens: float
    visual_tokens: float
    flops: float

    @property
    def tokens(self) -> float:
        """Text plus visual tokens (what the connector hands the LM, in its sequence or to cross-attention)."""
        return self.text_tokens + self.visual_tokens


# What one optimizer step of `batch_size` samples spends of each unit.
_PER_STEP: dict[str, Callable[[int, SampleCost], float]] = {
    "steps": lambda batch_size, sample: 1.0,
    "images": lambda batch_size, sample: float(batch_size),  # one image per sample (its crops are views of it)
    "tokens": lambda batch_size, sample: batch_size * sample.tokens,
    "flops": lambda batch_size, sample: batch_size * sample.flops,
}
UNITS = tuple(_PER_STEP)
# A value that is an exact multiple of the per-step cost must not lose a step to floating-point rounding.
_RELATIVE_SLACK = 1e-9


@dataclass(frozen=True)
class Budget:
    """A training length in `unit`; `value` None means the trainer's own max_steps."""

    unit: str = "steps"
    value: float | None = None

    @classmethod
    def from_config(cls, node: Any) -> Budget:
        """The budget of a config's `budget` node (absent: max_steps); ConfigError naming budget.unit / budget.value."""
        if node is None:
            return cls()
        unit, value = node.get("unit", "steps"), node.get("value")
        if unit not in _PER_STEP:
            raise ConfigError("budget.unit", f"unknown unit {unit!r}; one of {', '.join(UNITS)}", absolute=True)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError("budget.value", f"must be a number or null, got {value!r}", absolute=True)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError("budget.value", f"must be positive, got {value}", absolute=True)
        return cls(str(unit), None if value is None else float(value))

    def steps(self, max_steps: int, batch_size: int, sample: SampleCost) -> int:
        """Optimizer steps this budget buys at `batch_size` samples of cost `sample` (max_steps when unset)."""
        if self.value is None:
            return int(max_steps)
        per_step = _PER_STEP[self.unit](batch_size, sample)
        return max(1, math.floor(self.value / per_step * (1 + _RELATIVE_SLACK)))

    def record(self, steps: int) -> dict[str, Any]:
        """The budget as a run's record keeps it, with the steps it resolved to."""
        return {"unit": self.unit, "value": self.value, "steps": steps}
