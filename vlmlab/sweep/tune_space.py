"""The `tune:` block of an ablation file: trials, the short training budget, the seed, and the search space.

Every key is optional. By default one multiplier of every learning rate, `optim.lr_scale`, is searched
log-uniformly over [0.1, 10]: 6 trials of 200 training steps on the ablation's first seed. `params` replaces
that space with its own keys, each a range (`low`, `high`, `log`, `int`) or a list of `choices`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmlab.sweep.identity import NON_SCIENCE_KEYS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

DEFAULT_TRIALS = 6
DEFAULT_STEPS = 200
TUNE_KEYS = ("trials", "steps", "seed", "params")
PARAM_KEYS = ("low", "high", "log", "int", "choices")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.\w+)*$")
# Tuning these would change nothing the trials measure (labels, paths) or is the budget itself.
_UNTUNABLE = ("seed", "trainer.max_steps", "stages", *NON_SCIENCE_KEYS)
Scalar = str | int | float | bool | None


class TuneError(ValueError):
    """A bad `tune:` block; the message names the key under `tune`."""


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
    seed: int = 0
    params: tuple[Param, ...] = DEFAULT_PARAMS

    def space(self) -> dict[str, dict[str, Any]]:
        """Key -> its range or choices, as plain data."""
        return {param.key: param.describe() for param in self.params}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(raw: dict, key: str, default: int) -> int:
    value = raw.get(key, default)
    if not _is_int(value) or value <= 0:
        raise TuneError(f"`tune.{key}` must be a positive integer, got {value!r}")
    return value


def parse_param(key: Any, raw: Any) -> Param:
    """One entry of `tune.params`, checked; TuneError naming `tune.params.<key>[.<field>]`."""
    where = f"tune.params.{key}"
    if not isinstance(key, str) or not _DOTTED.match(key):
        raise TuneError(f"`{where}`: a key must be a dotted config key like optim.weight_decay")
    if any(key == bad or key.startswith(f"{bad}.") for bad in _UNTUNABLE):
        raise TuneError(f"`{where}`: {key} cannot be tuned (a label, a path, the seed or the trial budget)")
    if not isinstance(raw, dict) or not raw:
        raise TuneError(f"`{where}` must be a mapping: {{low: .., high: .., log: true}} or {{choices: [..]}}")
    if unknown := sorted(set(map(str, raw)) - set(PARAM_KEYS)):
        raise TuneError(f"`{where}.{unknown[0]}`: unknown; a param can set {', '.join(PARAM_KEYS)}")
    if "choices" in raw:
        choices = raw["choices"]
        if set(raw) != {"choices"}:
            raise TuneError(f"`{where}`: `choices` cannot be combined with {', '.join(sorted(set(raw) - {'choices'}))}")
        if (not isinstance(choices, list) or not choices or len(set(map(repr, choices))) != len(choices)
                or not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices)):
            raise TuneError(f"`{where}.choices` must be a non-empty list of distinct numbers, strings or booleans")
        return Param(key, choices=tuple(choices))
    for bound in ("low", "high"):
        if bound not in raw:
            raise TuneError(f"`{where}.{bound}` is missing (or give `choices`)")
        if not _is_number(raw[bound]):
            raise TuneError(f"`{where}.{bound}` must be a number, got {raw[bound]!r}")
    for flag in ("log", "int"):
        if not isinstance(raw.get(flag, False), bool):
            raise TuneError(f"`{where}.{flag}` must be true or false, got {raw[flag]!r}")
    low, high, log, integer = raw["low"], raw["high"], raw.get("log", False), raw.get("int", False)
    if not low < high:
        raise TuneError(f"`{where}.low` must be below `high`, got low {low} and high {high}")
    if log and low <= 0:
        raise TuneError(f"`{where}.low` must be positive on a log scale, got {low}")
    if integer and not (_is_int(low) and _is_int(high)):
        raise TuneError(f"`{where}`: with `int: true`, `low` and `high` must be integers, got {low} and {high}")
    return Param(key, low=low, high=high, log=log, integer=integer)


def parse_tune(raw: Any, default_seed: int) -> TuneSpec:
    """The `tune:` block (None when absent), checked; TuneError naming the key under `tune`."""
    if raw is None:
        return TuneSpec(seed=default_seed)
    if not isinstance(raw, dict):
        raise TuneError(f"`tune` must be a mapping with any of {', '.join(TUNE_KEYS)}")
    if unknown := sorted(set(map(str, raw)) - set(TUNE_KEYS)):
        raise TuneError(f"`tune.{unknown[0]}`: unknown; `tune` can set {', '.join(TUNE_KEYS)}")
    seed = raw.get("seed", default_seed)
    if not _is_int(seed):
        raise TuneError(f"`tune.seed` must be an integer, got {seed!r}")
    params = DEFAULT_PARAMS
    if "params" in raw:
        if not isinstance(raw["params"], dict) or not raw["params"]:
            raise TuneError("`tune.params` must be a non-empty mapping of config key -> {low, high, log} or {choices}")
        params = tuple(parse_param(key, spec) for key, spec in raw["params"].items())
    trials, steps = _positive_int(raw, "trials", DEFAULT_TRIALS), _positive_int(raw, "steps", DEFAULT_STEPS)
    return TuneSpec(trials=trials, steps=steps, seed=seed, params=params)
