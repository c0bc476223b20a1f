"""Planning a sweep: compose every job's config and refuse bad arms before anything trains."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from omegaconf import DictConfig

from vlmlab.errors import ConfigError
from vlmlab.models.build import check_model_config, instantiate_group
from vlmlab.train.budget import Budget
from vlmlab.train.stages import resolve_stages
from vlmlab.sweep.ablation import AblationError, AblationSpec, PlannedRun
from vlmlab.sweep.identity import run_id

Compose = Callable[[list[str]], DictConfig]


@dataclass(frozen=True)
class Job:
    """A planned run with its composed config and identity."""

    run: PlannedRun
    config: DictConfig
    run_id: str


def _offending_override(spec: AblationSpec, arm: str, compose: Compose) -> str | None:
    """The first override of `arm` that fails to compose on its own, to name it in the error."""
    for override in spec.arms[arm]:
        try:
            compose([*spec.common, override])
        except Exception:
            return override
    return None


def _check_stage(cfg: DictConfig) -> None:
    """Refuse values that cannot work in one stage's config, naming the key (the model is built on meta)."""
    if cfg.trainer.max_steps <= 0:
        raise ConfigError("trainer.max_steps", f"must be positive, got {cfg.trainer.max_steps}")
    Budget.from_config(cfg.get("budget"))  # an unknown unit or a non-positive value, before anything trains
    if float(cfg.optim.get("lr_scale", 1.0)) <= 0:
        raise ConfigError("optim.lr_scale", f"must be positive, got {cfg.optim.lr_scale}")
    suite = instantiate_group("data.suite", cfg.data.suite)
    known = suite.task_metrics()
    if unknown := sorted(set(cfg.eval.tasks or ()) - set(known)):
        raise ConfigError("eval.tasks", f"unknown task(s) {', '.join(unknown)}; {suite.version} has {', '.join(known)}")
    mixture = cfg.data.get("mixture") or {}
    if unknown := sorted(set(mixture) - set(suite.train_tasks())):
        raise ConfigError("data.mixture", f"unknown training task(s) {', '.join(unknown)}; {suite.version} trains "
                          f"on {', '.join(suite.train_tasks())}")
    if mixture and not any(float(w) > 0 for w in mixture.values()):
        raise ConfigError("data.mixture", "every weight is 0: nothing to train on")
    images = instantiate_group("data.image", cfg.data.image, _convert_="all")
    model = check_model_config(cfg.model, images.tower_size)
    images.check(model.vision, suite.canvas)


def _check(cfg: DictConfig) -> None:
    """Refuse values that cannot work, naming the key, in the run's config and in each of its stages."""
    stages = resolve_stages(cfg)
    for index, stage in enumerate(stages):
        try:
            _check_stage(stage.config)
        except ConfigError as err:
            if len(stages) == 1:
                raise
            raise ConfigError(f"stages[{index}] ({stage.name}): {err.key}", err.detail, absolute=True) from None


def plan_sweep(
    spec: AblationSpec,
    compose: Compose,
    extra: tuple[str, ...] = (),
    tuned: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Job]:
    """Every job of `spec`, composed and checked, each arm with its `tuned` overrides (from `vlmlab tune`) last;
    raises AblationError naming the file, arm and key."""
    jobs, checked = [], set()
    for run in spec.runs(extra):
        if tuned:
            run = replace(run, overrides=(*run.overrides, *tuned[run.arm]))
        where = f"{spec.path}: arm '{run.arm}'"
        try:
            cfg = compose(list(run.overrides))
        except Exception as err:
            bad = _offending_override(spec, run.arm, compose)
            culprit = f"override '{bad}'" if bad else "overrides"
            raise AblationError(f"{where}: {culprit}: {err}") from None
        if run.arm not in checked:  # seeds do not change what is built: check each arm once
            try:
                _check(cfg)
            except ConfigError as err:
                raise AblationError(f"{where}: {err}") from None
            checked.add(run.arm)
        jobs.append(Job(run=run, config=cfg, run_id=run_id(cfg)))
    return jobs
