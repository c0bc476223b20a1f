"""Ablation specs: one YAML file per design axis, with its question, arms, control, seeds and metrics.

The file's keys and types are the schema of vlmlab.sweep.ablation_schema; the rules that span keys are here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vlmlab.sweep.ablation_schema import AblationError, AblationFile, ScaleBlock, read_ablation_file
from vlmlab.sweep.tune_space import TuneError, TuneSpec, tune_spec

# AblationError is raised by the schema too; this module is where the rest of vlmlab imports it from.
__all__ = ["NAME", "AblationError", "AblationSpec", "PlannedRun", "ScaleArms", "ablation_path", "available",
           "load_ablation"]

# An ablation or arm name is a directory of results/ (and a Hydra override value): one plain path component.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
# What a Hydra override of an arm starts with: `key=`, `+key=`, `++key=`, or `~key` (which deletes the key).
_OVERRIDE = re.compile(r"(\+{1,2}|~)?[^=\s~+][^=\s]*=|~[^=\s]+$")


@dataclass(frozen=True)
class PlannedRun:
    """One (arm, seed) job and the Hydra overrides that make it."""

    arm: str
    seed: int
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class ScaleArms:
    """What an ablation file's arms become at one scale: its `scales.<name>` block (conf/scale/<name>.yaml)."""

    common: tuple[str, ...] = ()  # after the file's `common`
    arms: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per arm, after the arm's own overrides
    drop: tuple[str, ...] = ()  # arms that do not run at this scale (the paper's table has no such row)


@dataclass(frozen=True)
class AblationSpec:
    """The parsed contents of `ablations/<name>.yaml`, at the tiny default scale or, after `at_scale`, at another."""

    name: str
    path: Path
    question: str
    control: str
    arms: dict[str, tuple[str, ...]]
    seeds: tuple[int, ...] | None  # None: the file leaves them to the run config (with_defaults)
    metrics: tuple[str, ...] | None  # None: the file leaves them to the run config's suite (with_defaults)
    common: tuple[str, ...] = ()
    paper_table: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    tune: TuneSpec = field(default_factory=TuneSpec)  # how `vlmlab tune` searches each arm
    scales: dict[str, ScaleArms] = field(default_factory=dict)  # the file's `scales`, by scale name
    scale: str | None = None  # the scale `common` and `arms` are at (None: the tiny default)
    correction: str = "holm"  # how the table corrects its tests for their number (vlmlab.results.corrections)

    def with_defaults(self, seeds: tuple[int, ...], metrics: tuple[str, ...]) -> AblationSpec:
        """The spec with `seeds` and `metrics` where its file gives none (vlmlab.sweep.plan takes them from the run
        config: its `seed`, and the benchmarks of its suite)."""
        return replace(self, seeds=self.seeds if self.seeds is not None else seeds,
                       metrics=self.metrics if self.metrics is not None else metrics)

    def _defaults_missing(self, what: str) -> AblationError:
        return AblationError(f"{self.path}: {what} are left to the run config: plan the sweep (vlmlab.sweep.plan) "
                             "to take them from it")

    def runs(self, extra: tuple[str, ...] = ()) -> list[PlannedRun]:
        """Every (arm, seed) job: common overrides, then the arm's, then the user's `extra`, then the labels."""
        if self.seeds is None:
            raise self._defaults_missing("seeds")
        return [
            PlannedRun(arm, seed, (*self.common, *overrides, *extra,
                                   f"seed={seed}", f"ablation.name={self.name}", f"ablation.arm={arm}"))
            for arm, overrides in self.arms.items()
            for seed in self.seeds
        ]

    def at_scale(self, scale: str | None, known: Collection[str] | None = None) -> AblationSpec:
        """The spec at `scale` (an option of conf/scale/; None: the tiny default), its `scales.<scale>` block applied
        where the file has one; AblationError if a block, or `scale`, names no option in `known` (when given)."""
        if known is not None:
            if unknown := sorted(set(self.scales) - set(known)):
                raise AblationError(f"{self.path}: scales: {', '.join(unknown)} is no option of conf/scale/ "
                                    f"(the scales are: {', '.join(sorted(known)) or '(none)'})")
            if scale is not None and scale not in known:
                raise AblationError(f"scale.name is {scale!r}, which is no option of conf/scale/ "
                                    f"(the scales are: {', '.join(sorted(known)) or '(none)'})")
        if scale is None:
            return self
        if self.scales and scale not in self.scales:
            # Its blocks say which models the file's arms are for: other models would answer another question.
            raise AblationError(f"{self.path}: runs at the scales {', '.join(sorted(self.scales))} (its `scales` "
                                f"blocks) and at the tiny default, not at {scale!r}")
        # A file without any block runs its own arms on top of conf/scale/<scale>.yaml.
        block = self.scales.get(scale, ScaleArms())
        arms = {arm: (*overrides, *block.arms.get(arm, ())) for arm, overrides in self.arms.items()
                if arm not in block.drop}
        return replace(self, common=(*self.common, *block.common), arms=arms, scale=scale)

    def meta(self) -> dict[str, Any]:
        """What the tables need to know of the ablation, stored in results/ beside the records."""
        if self.seeds is None or self.metrics is None:
            raise self._defaults_missing("seeds" if self.seeds is None else "metrics")
        meta = {
            "name": self.name, "question": self.question, "paper_table": self.paper_table, "control": self.control,
            "arms": list(self.arms), "metrics": list(self.metrics), "seeds": list(self.seeds),
            "correction": self.correction,
        }
        if self.scale is not None:  # only then: a tiny sweep's plan.json keeps its bytes
            meta["scale"] = self.scale
        return meta


def available(ablations_dir: str | Path) -> list[str]:
    """Names of the ablations in `ablations_dir`."""
    return sorted(p.stem for p in Path(ablations_dir).glob("*.yaml"))


def ablation_path(ablations_dir: str | Path, name: str, must_exist: bool = True) -> Path:
    """The file of ablation `name`; AblationError listing the ablations unless `name` is a plain name (and a file)."""
    # A plain name, not a path: `../x` or `/x` would read (and label results with) a file outside ablations_dir.
    path = Path(ablations_dir) / f"{name}.yaml"
    if not NAME.fullmatch(name) or (must_exist and not path.is_file()):
        raise AblationError(f"no ablation named '{name}' in {ablations_dir}/; the ablations are: "
                            f"{', '.join(available(ablations_dir)) or '(none)'}")
    return path


def _overrides(path: Path, key: str, overrides: list[str] | None) -> tuple[str, ...]:
    """`overrides` (None: none), each a Hydra override, not a bare value (`mlp` for `model/connector=mlp`)."""
    for index, override in enumerate(overrides or ()):
        if not _OVERRIDE.match(override):
            raise AblationError(f"{path}: {key}[{index}]: {override!r} is not a Hydra override: write key=value, "
                                "e.g. model/connector=mlp")
    return tuple(overrides or ())


def _distinct(path: Path, key: str, values: list[Any] | None, what: str) -> tuple[Any, ...] | None:
    """`values` (None stays None), which must list at least one `what`, each once."""
    if values is None:
        return None
    if not values:
        raise AblationError(f"{path}: {key}: must list at least one {what}")
    if twice := [value for index, value in enumerate(values) if value in values[:index]]:
        raise AblationError(f"{path}: {key}: {twice[0]!r} is listed twice")
    return tuple(values)


def _names(path: Path, key: str, names: Iterable[str], what: str) -> None:
    """Refuse a name that cannot be one directory under results/ (nor a Hydra override value)."""
    for name in names:
        if not NAME.fullmatch(name):
            raise AblationError(f"{path}: {key}: {name!r} cannot be {what}: it names a directory of results, so use "
                                "letters, digits and _ . + - (starting with a letter or digit)")


def _arms_of(path: Path, key: str, names: Iterable[str], arms: dict[str, Any]) -> None:
    """Refuse a name at `key` that is not one of the file's arms."""
    if unknown := [name for name in names if name not in arms]:
        raise AblationError(f"{path}: {key}: {unknown[0]!r} is not one of the arms: {', '.join(arms)}")


def _scale(path: Path, scale: str, block: ScaleBlock, file: AblationFile) -> ScaleArms:
    """One `scales.<scale>` block, checked against the file's arms and control."""
    where, by_arm = f"scales.{scale}", block.arms or {}
    _arms_of(path, f"{where}.arms", by_arm, file.arms)
    drop = _distinct(path, f"{where}.drop", block.drop, "arm") or ()
    _arms_of(path, f"{where}.drop", drop, file.arms)
    if file.control in drop:
        raise AblationError(f"{path}: {where}.drop: the control arm '{file.control}' cannot be dropped: every other "
                            "arm is compared with it")
    if both := [arm for arm in drop if arm in by_arm]:
        raise AblationError(f"{path}: {where}: arm '{both[0]}' is both dropped and given overrides")
    return ScaleArms(common=_overrides(path, f"{where}.common", block.common), drop=drop,
                     arms={arm: _overrides(path, f"{where}.arms.{arm}", ovs) for arm, ovs in by_arm.items()})


def load_ablation(ablations_dir: str | Path, name: str) -> AblationSpec:
    """Parse and check `ablations_dir/<name>.yaml`."""
    path = ablation_path(ablations_dir, name)
    file = read_ablation_file(path)
    if not file.arms:
        raise AblationError(f"{path}: arms: must name at least one arm (arm name -> list of overrides)")
    _names(path, "arms", file.arms, "an arm name")
    if file.control not in file.arms:
        raise AblationError(f"{path}: control: '{file.control}' is not one of the arms: {', '.join(file.arms)}")
    seeds = _distinct(path, "seeds", file.seeds, "seed")
    try:
        tune = tune_spec(file.tune, default_seed=seeds[0] if seeds else TuneSpec.seed)
    except TuneError as err:
        raise AblationError(f"{path}: {err}") from None
    scales = file.scales or {}
    _names(path, "scales", scales, "a scale name (an option of conf/scale/)")
    return AblationSpec(
        name=name, path=path, question=file.question, control=file.control,
        arms={arm: _overrides(path, f"arms.{arm}", overrides) for arm, overrides in file.arms.items()},
        seeds=seeds, metrics=_distinct(path, "metrics", file.metrics, "benchmark"),
        common=_overrides(path, "common", file.common), paper_table=file.paper_table, notes=file.notes or {},
        tune=tune, scales={scale: _scale(path, scale, block, file) for scale, block in scales.items()},
        correction=file.correction.value,
    )
