"""Ablation specs: one YAML file per design axis, with its question, arms, control, seeds and metrics."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from vlmlab.sweep.tune_space import TuneError, TuneSpec, parse_tune


# An ablation or arm name is a directory of results/ (and a Hydra override value): one plain path component.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class AblationError(ValueError):
    """A bad ablation file or arm; the message names the file and the key."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of the YAML file gives the same key twice."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"key {key!r} is given twice in one mapping (first at line {first_line})")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (plain YAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden on purpose
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                if key in first:
                    raise DuplicateKeyError(key, line, first[key])
                first[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                pass
        return super().construct_mapping(node, deep=deep)


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
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    common: tuple[str, ...] = ()
    paper_table: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    tune: TuneSpec = field(default_factory=TuneSpec)  # how `vlmlab tune` searches each arm
    scales: dict[str, ScaleArms] = field(default_factory=dict)  # the file's `scales`, by scale name
    scale: str | None = None  # the scale `common` and `arms` are at (None: the tiny default)

    def runs(self, extra: tuple[str, ...] = ()) -> list[PlannedRun]:
        """Every (arm, seed) job: common overrides, then the arm's, then the user's `extra`, then the labels."""
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
        # A file without a block for this scale runs its own arms on top of conf/scale/<scale>.yaml.
        block = self.scales.get(scale, ScaleArms())
        arms = {arm: (*overrides, *block.arms.get(arm, ())) for arm, overrides in self.arms.items()
                if arm not in block.drop}
        return replace(self, common=(*self.common, *block.common), arms=arms, scale=scale)

    def meta(self) -> dict[str, Any]:
        """What the tables need to know of the ablation, stored in results/ beside the records."""
        meta = {
            "name": self.name, "question": self.question, "paper_table": self.paper_table, "control": self.control,
            "arms": list(self.arms), "metrics": list(self.metrics), "seeds": list(self.seeds),
        }
        if self.scale is not None:  # only then: a tiny sweep's plan.json keeps its bytes
            meta["scale"] = self.scale
        return meta


def available(ablations_dir: str | Path) -> list[str]:
    """Names of the ablations in `ablations_dir`."""
    return sorted(p.stem for p in Path(ablations_dir).glob("*.yaml"))


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AblationError(f"{path}: `{key}` must be a list of override strings like 'model/connector=mlp'")
    return tuple(value)


def ablation_path(ablations_dir: str | Path, name: str, must_exist: bool = True) -> Path:
    """The file of ablation `name`; AblationError listing the ablations unless `name` is a plain name (and a file)."""
    # A plain name, not a path: `../x` or `/x` would read (and label results with) a file outside ablations_dir.
    path = Path(ablations_dir) / f"{name}.yaml"
    if not NAME.fullmatch(name) or (must_exist and not path.is_file()):
        raise AblationError(f"no ablation named '{name}' in {ablations_dir}/; the ablations are: "
                            f"{', '.join(available(ablations_dir)) or '(none)'}")
    return path


def _check_arm_names(path: Path, arms: dict[Any, Any]) -> None:
    """Refuse an arm name that cannot be one directory under results/runs/<axis>/."""
    for arm in arms:
        if not isinstance(arm, str) or not NAME.fullmatch(arm):
            raise AblationError(f"{path}: arms: {arm!r} cannot be an arm name: it names a directory of results, so "
                                "use letters, digits and _ . + - (starting with a letter or digit), in quotes if "
                                "YAML would read it as a number")


def _arm_names(path: Path, key: str, value: Any, arms: dict[Any, Any]) -> tuple[str, ...]:
    """The arm names listed at `key`, each one of the file's arms and given once."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(set(map(str, value))) != len(value):
        raise AblationError(f"{path}: `{key}` must be a list of distinct arm names")
    if unknown := [arm for arm in value if arm not in arms]:
        raise AblationError(f"{path}: {key}: {unknown[0]!r} is not one of the arms: {', '.join(arms)}")
    return tuple(value)


def _scale_arms(path: Path, scale: Any, block: Any, arms: dict[Any, Any], control: str) -> ScaleArms:
    """Parse and check one `scales.<scale>` block against the file's arms."""
    where = f"scales.{scale}"
    if not isinstance(scale, str) or not NAME.fullmatch(scale):
        raise AblationError(f"{path}: scales: {scale!r} cannot be a scale name: name an option of conf/scale/")
    if not isinstance(block, dict):
        raise AblationError(f"{path}: `{where}` must be a mapping with `common`, `arms` and/or `drop`")
    if unknown := sorted(set(map(str, block)) - {"common", "arms", "drop"}):
        raise AblationError(f"{path}: {where}: unknown key(s) {', '.join(unknown)}; a scale has common, arms, drop")
    by_arm = block.get("arms") or {}
    if not isinstance(by_arm, dict):
        raise AblationError(f"{path}: `{where}.arms` must be a mapping of arm name -> list of overrides")
    _arm_names(path, f"{where}.arms", list(by_arm), arms)
    drop = _arm_names(path, f"{where}.drop", block.get("drop"), arms)
    if control in drop:
        raise AblationError(f"{path}: {where}.drop: the control arm '{control}' cannot be dropped: every other arm "
                            "is compared with it")
    if both := [arm for arm in drop if arm in by_arm]:
        raise AblationError(f"{path}: {where}: arm '{both[0]}' is both dropped and given overrides")
    return ScaleArms(
        common=_strings(path, f"{where}.common", block.get("common")), drop=drop,
        arms={arm: _strings(path, f"{where}.arms.{arm}", overrides) for arm, overrides in by_arm.items()},
    )


def _scales(path: Path, raw: Any, arms: dict[Any, Any], control: str) -> dict[str, ScaleArms]:
    """The file's `scales`: per scale name, what its arms become there."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AblationError(f"{path}: `scales` must be a mapping of scale name (an option of conf/scale/) -> "
                            "{common, arms, drop}")
    return {scale: _scale_arms(path, scale, block, arms, control) for scale, block in raw.items()}


def load_ablation(ablations_dir: str | Path, name: str) -> AblationSpec:
    """Parse and check `ablations_dir/<name>.yaml`."""
    path = ablation_path(ablations_dir, name)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader: builds plain data only
    except DuplicateKeyError as err:
        raise AblationError(f"{path}: line {err.line}: {err}; YAML would keep only the last") from None
    except yaml.YAMLError as err:
        raise AblationError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise AblationError(f"{path}: expected a mapping with keys question, control, arms, seeds, metrics")
    for key in ("question", "control", "arms", "seeds", "metrics"):
        if key not in raw:
            raise AblationError(f"{path}: missing key `{key}`")
    known = {"question", "control", "arms", "seeds", "metrics", "common", "paper_table", "notes", "tune", "scales"}
    unknown = set(raw) - known
    if unknown:
        raise AblationError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    arms = raw["arms"]
    if not isinstance(arms, dict) or not arms:
        raise AblationError(f"{path}: `arms` must be a non-empty mapping of arm name -> list of overrides")
    _check_arm_names(path, arms)
    if raw["control"] not in arms:
        raise AblationError(f"{path}: `control` is '{raw['control']}', which is not one of the arms: {', '.join(arms)}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise AblationError(f"{path}: `seeds` must be a non-empty list of distinct integers")
    metrics = raw["metrics"]
    if (not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics)
            or len(set(metrics)) != len(metrics)):
        raise AblationError(f"{path}: `metrics` must be a non-empty list of distinct benchmark names")
    try:
        tune = parse_tune(raw.get("tune"), default_seed=seeds[0])
    except TuneError as err:
        raise AblationError(f"{path}: {err}") from None
    return AblationSpec(
        name=name, path=path, question=str(raw["question"]), control=raw["control"],
        arms={arm: _strings(path, f"arms.{arm}", ovs) for arm, ovs in arms.items()},
        seeds=tuple(seeds), metrics=tuple(metrics), common=_strings(path, "common", raw.get("common")),
        paper_table=raw.get("paper_table"), notes=raw.get("notes") or {}, tune=tune,
        scales=_scales(path, raw.get("scales"), arms, raw["control"]),
    )
