"""results/tuning/<axis>/best.json: each arm's best values from `vlmlab tune`, and the overrides a sweep adds.

The file is small and meant to be read: per arm the best params, their validation loss, how many trials
finished, the short budget, and the overrides and search space the arm was tuned with. A sweep refuses a
best.json that no longer matches the ablation file (an arm added or changed, another search space) rather
than train some arms at tuned values and others not, or at values tuned for another arm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmlab.results.records import StrPath, atomic_write_text
from vlmlab.sweep.ablation import AblationError, AblationSpec

BEST_SCHEMA_VERSION = 1


def tuning_dir(results_dir: StrPath, axis: str) -> Path:
    """Where the studies and best.json of ablation `axis` live."""
    return Path(results_dir) / "tuning" / axis


def best_path(results_dir: StrPath, axis: str) -> Path:
    """Path of the best.json of ablation `axis`."""
    return tuning_dir(results_dir, axis) / "best.json"


def write_best(results_dir: StrPath, axis: str, arms: dict[str, dict[str, Any]]) -> Path:
    """Write best.json atomically; arms in the ablation's order, keys sorted inside, so reruns give the same bytes."""
    data = {"schema_version": BEST_SCHEMA_VERSION, "axis": axis,
            "objective": "validation loss after a short training run, lower is better", "arms": arms}
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return atomic_write_text(best_path(results_dir, axis), text + "\n")


def read_best(results_dir: StrPath, axis: str) -> dict[str, Any] | None:
    """The parsed best.json of `axis`, or None when the axis was never tuned."""
    path = best_path(results_dir, axis)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AblationError(f"{path}: unreadable: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("arms"), dict):
        raise AblationError(f"{path}: expected a mapping with `arms`; delete it and run `vlmlab tune {axis}` again")
    return data


def literal(value: Any) -> str:
    """`value` as a Hydra override value that parses back to the same value and type."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true / false / null
    if isinstance(value, (int, float)):
        return repr(value)  # the shortest text that round-trips the float
    return json.dumps(str(value))  # a double-quoted string


def param_overrides(params: dict[str, Any]) -> list[str]:
    """`key=value` overrides setting each tuned param."""
    return [f"{key}={literal(value)}" for key, value in sorted(params.items())]


def label_override(params: dict[str, Any]) -> str:
    """The `ablation.tuned` label saying which values were tuned (a label: not part of the run's identity)."""
    # `++`: the config is in struct mode, and the empty default has none of these keys yet.
    return "++ablation.tuned={" + ",".join(f"{key}:{literal(value)}" for key, value in sorted(params.items())) + "}"


def override_key(override: str) -> str:
    """The config key an override sets: '++optim.lr_scale=2' -> 'optim.lr_scale'."""
    return override.split("=", 1)[0].lstrip("+~")


def tuned_overrides(
    spec: AblationSpec, results_dir: StrPath, extra: tuple[str, ...] = ()
) -> dict[str, tuple[str, ...]] | None:
    """Per arm, the overrides that train it at its tuned values (and label them); None when `spec` was never tuned
    or is at a scale (`+scale=paper`).

    Raises AblationError when best.json does not fit the ablation file as it is now, or when `extra` sets a
    tuned key itself (the table would then claim a tuned value that was not trained)."""
    if spec.scale is not None:
        # best.json holds learning rates tuned on the tiny default models and does not say at which scale: a file
        # without a `scales` block has the same arm overrides at every scale, and would get them for a 7B model.
        return None
    best = read_best(results_dir, spec.name)
    if best is None:
        return None
    path, rerun = best_path(results_dir, spec.name), f"run `vlmlab tune {spec.name}` again, or sweep with --untuned"
    tuned: dict[str, tuple[str, ...]] = {}
    for arm, overrides in spec.arms.items():
        entry = best["arms"].get(arm)
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict) or not entry["params"]:
            raise AblationError(f"{path}: arm '{arm}' has no tuned values; {rerun}")
        if entry.get("overrides") != [*spec.common, *overrides]:
            raise AblationError(f"{path}: arm '{arm}' was tuned with overrides {entry.get('overrides')}, but "
                                f"{spec.path} now gives it {[*spec.common, *overrides]}; {rerun}")
        if entry.get("space") != spec.tune.space():
            raise AblationError(f"{path}: arm '{arm}' was tuned over {entry.get('space')}, but `tune` in {spec.path} "
                                f"now searches {spec.tune.space()}; {rerun}")
        params = entry["params"]
        if clash := sorted({override_key(o) for o in extra} & set(params)):
            raise AblationError(f"{clash[0]} is tuned per arm ({path}): drop the override, or sweep with --untuned")
        tuned[arm] = (*param_overrides(params), label_override(params))
    return tuned
