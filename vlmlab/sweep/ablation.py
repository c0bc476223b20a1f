"""Ablation specs: one YAML file per design axis, with its question, arms, control, seeds and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmlab.tune.space import TuneError, TuneSpec, parse_tune


class AblationError(ValueError):
    """A bad ablation file or arm; the message names the file and the key."""


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


def load_ablation(ablations_dir: str | Path, name: str) -> AblationSpec:
    """Parse and check `ablations_dir/<name>.yaml`."""
    path = Path(ablations_dir) / f"{name}.yaml"
    if not path.exists():
        raise AblationError(f"no ablation named '{name}' in {ablations_dir}/; the ablations are: "
                            f"{', '.join(available(ablations_dir)) or '(none)'}")
    try:
        raw = yaml.safe_load(path.read_text())
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
    if raw["control"] not in arms:
        raise AblationError(f"{path}: `control` is '{raw['control']}', which is not one of the arms: {', '.join(arms)}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise AblationError(f"{path}: `seeds` must be a non-empty list of distinct integers")
    metrics = raw["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise AblationError(f"{path}: `metrics` must be a non-empty list of task names")
    try:
        tune = parse_tune(raw.get("tune"), default_seed=seeds[0])
    except TuneError as err:
        raise AblationError(f"{path}: {err}") from None
    return AblationSpec(
        name=name, path=path, question=str(raw["question"]), control=raw["control"],
        arms={str(arm): _strings(path, f"arms.{arm}", ovs) for arm, ovs in arms.items()},
        seeds=tuple(seeds), metrics=tuple(metrics), common=_strings(path, "common", raw.get("common")),
        paper_table=raw.get("paper_table"), notes=raw.get("notes") or {}, tune=tune,
    )
