"""Ablation specs: one YAML file per design axis, with its question, arms, control, seeds and metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmlab.tune.space import TuneError, TuneSpec, parse_tune


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
class AblationSpec:
    """The parsed contents of `ablations/<name>.yaml`."""

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

    def runs(self, extra: tuple[str, ...] = ()) -> list[PlannedRun]:
        """Every (arm, seed) job: common overrides, then the arm's, then the user's `extra`, then the labels."""
        return [
            PlannedRun(arm, seed, (*self.common, *overrides, *extra,
                                   f"seed={seed}", f"ablation.name={self.name}", f"ablation.arm={arm}"))
            for arm, overrides in self.arms.items()
            for seed in self.seeds
        ]

    def meta(self) -> dict[str, Any]:
        """What the tables need to know of the ablation, stored in results/ beside the records."""
        return {
            "name": self.name, "question": self.question, "paper_table": self.paper_table, "control": self.control,
            "arms": list(self.arms), "metrics": list(self.metrics), "seeds": list(self.seeds),
        }


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
    known = {"question", "control", "arms", "seeds", "metrics", "common", "paper_table", "notes", "tune"}
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
    )
