"""The `tune:` block of an ablation file: trials, the short training budget, the seed, and the search space.

Every key is optional. By default one multiplier of every learning rate, `optim.lr_scale`, is searched
log-uniformly over [0.1, 10]: 6 trials of 200 training steps on the ablation's first seed. `params` replaces
that space with its own keys, each a range (`low`, `high`, `log`, `int`) or a list of `choices`.
The block's keys and types are the schema `TuneBlock`, which OmegaConf checks with the rest of the file
(vlmlab.sweep.ablation_schema); `tune_spec` checks the values a type cannot describe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from vlmlab.sweep.identity import NON_SCIENCE_KEYS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

DEFAULT_TRIALS = 6
DEFAULT_STEPS = 200
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
# Tuning these would change nothing the trials measure (labels, paths) or is the budget itself.
_UNTUNABLE = ("seed", "trainer.max_steps", "stages", *NON_SCIENCE_KEYS)
Scalar = str | int | float | bool | None


class TuneError(ValueError):
    """A bad `tune:` block; `key` is the dotted key at fault (under `tune`)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


@dataclass
class ParamBlock:
    """Schema of one entry of `tune.params`: a range (`low`, `high`, `log`, `int`) or a list of `choices`."""

    # Any, not float: OmegaConf 2.3 has no int-or-float type, and a float field would turn the bounds of an integer
    # range (and the space that names a study) into floats. tune_spec checks that they are numbers.
    low: Any = None
    high: Any = None
    log: bool = False
    choices: Optional[List[Any]] = None
    int: bool = False  # last: below this line the class body would read `int` as this field


@dataclass
class TuneBlock:
    """Schema of the `tune:` block."""

    trials: int = DEFAULT_TRIALS
    steps: int = DEFAULT_STEPS
    seed: Optional[int] = None  # None: the ablation's first seed
    params: Optional[Dict[str, ParamBlock]] = None  # None: DEFAULT_PARAMS


@dataclass(frozen=True)
class Param:
    """One searched config key: a range of numbers, or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Scalar, ...] | None = None

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution the key is drawn from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def contains(self, value: Any) -> bool:
        """Whether `value` (e.g. the config's default) lies in the space, so it can be tried as is."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.low <= value <= self.high and (not self.integer or float(value).is_integer())

    def describe(self) -> dict[str, Any]:
        """The space of this key as plain data (for best.json and the study's identity)."""
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "int": self.integer}


DEFAULT_PARAMS = (Param("optim.lr_scale", low=0.1, high=10.0, log=True),)


@dataclass(frozen=True)
class TuneSpec:
    """How `vlmlab tune` searches each arm of an ablation."""

    trials: int = DEFAULT_TRIALS
    steps: int = DEFAULT_STEPS
    seed: int = 0  # the ablation's first seed; 0 (conf/train.yaml's `seed`) where the file leaves seeds to the run
    params: tuple[Param, ...] = DEFAULT_PARAMS

    def space(self) -> dict[str, dict[str, Any]]:
        """Key -> its range or choices, as plain data."""
        return {param.key: param.describe() for param in self.params}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choices(where: str, block: ParamBlock) -> tuple[Scalar, ...]:
    """The `choices` of a param, checked: distinct scalars, and no range beside them."""
    ranged = [name for name in ("low", "high") if getattr(block, name) is not None]
    ranged += [name for name in ("log", "int") if getattr(block, name)]
    if ranged:
        raise TuneError(where, f"`choices` cannot be combined with {', '.join(ranged)}")
    choices = block.choices
    scalars = all(c is None or isinstance(c, (str, int, float, bool)) for c in choices)
    if not choices or not scalars or len(set(map(repr, choices))) != len(choices):
        raise TuneError(f"{where}.choices", "must be a non-empty list of distinct numbers, strings or booleans, "
                                            f"got {choices!r}")
    return tuple(choices)


def tune_param(key: str, block: ParamBlock) -> Param:
    """One entry of `tune.params`, its values checked; TuneError naming `tune.params.<key>[.<field>]`."""
    where = f"tune.params.{key}"
    if not _DOTTED.match(key):
        raise TuneError(where, "a key must be a dotted config key like optim.weight_decay")
    if any(key == bad or key.startswith(f"{bad}.") for bad in _UNTUNABLE):
        raise TuneError(where, f"{key} cannot be tuned (a label, a path, the seed or the trial budget)")
    if block.choices is not None:
        return Param(key, choices=_choices(where, block))
    for bound in ("low", "high"):
        value = getattr(block, bound)
        if value is None:
            raise TuneError(f"{where}.{bound}", "is missing (or give `choices`)")
        if not _is_number(value):
            raise TuneError(f"{where}.{bound}", f"must be a number, got {value!r}")
    low, high = block.low, block.high
    if not low < high:
        raise TuneError(f"{where}.low", f"must be below `high`, got low {low} and high {high}")
    if block.log and low <= 0:
        raise TuneError(f"{where}.low", f"must be positive on a log scale, got {low}")
    if block.int and not (isinstance(low, int) and isinstance(high, int)):
        raise TuneError(where, f"with `int: true`, `low` and `high` must be integers, got {low} and {high}")
    return Param(key, low=low, high=high, log=block.log, integer=block.int)


def tune_spec(block: TuneBlock | None, default_seed: int) -> TuneSpec:
    """The `tune:` block (None when absent) as a TuneSpec, its values checked; TuneError naming the key."""
    block = block or TuneBlock()
    for key in ("trials", "steps"):
        if (value := getattr(block, key)) <= 0:
            raise TuneError(f"tune.{key}", f"must be a positive integer, got {value}")
    if block.params is not None and not block.params:
        raise TuneError("tune.params", "must name at least one config key: {low, high, log} or {choices}")
    params = DEFAULT_PARAMS if block.params is None else tuple(tune_param(k, v) for k, v in block.params.items())
    seed = default_seed if block.seed is None else block.seed
    return TuneSpec(trials=block.trials, steps=block.steps, seed=seed, params=params)
