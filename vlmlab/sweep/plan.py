"""Planning a sweep: compose every job's config and refuse bad arms before anything trains."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vlmlab.eval.latency import LatencySettings
from vlmlab.errors import ConfigError, is_int
from vlmlab.models.build import check_model_config, instantiate_group
from vlmlab.train.budget import Budget
from vlmlab.train.parallel import check_layout
from vlmlab.train.stages import resolve_stages
from vlmlab.sweep.ablation import NAME, AblationError, AblationSpec, PlannedRun
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




def _is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class _Rule:
    """What a numeric key must hold, in words for the error and as a test."""

    what: str
    ok: Callable[[Any], bool]
    optional: bool = False  # absent means a default the code supplies (an older config may lack the key)


_POSITIVE_INT = _Rule("a positive integer", lambda v: is_int(v) and v > 0)
_COUNT = _Rule("an integer >= 0", lambda v: is_int(v) and v >= 0)
_RATE = _Rule("a number >= 0", lambda v: _is_number(v) and v >= 0)
# The numeric keys a run relies on; "optim.lr.*" is every component's learning rate.
_NUMBERS: dict[str, _Rule] = {
    "trainer.max_steps": _POSITIVE_INT,
    "optim.lr_scale": _Rule("a positive number", lambda v: _is_number(v) and v > 0, optional=True),
    # Optional: a schedule of optim.schedule other than warmup-cosine may have no warmup.
    "optim.schedule.warmup_steps": _Rule(_COUNT.what, _COUNT.ok, optional=True),
    "optim.weight_decay": _RATE,
    "optim.lr.*": _RATE,
    "data.mixture.*": _RATE,
    "data.batch_size": _POSITIVE_INT,
    "checkpoint_every_n_steps": _POSITIVE_INT,
    "data.num_workers": _COUNT,
    # Lightning reads an int as "every n steps" and a float as "a fraction of the epoch".
    "trainer.val_check_interval": _Rule("a positive integer or a fraction in (0, 1]", lambda v: (
        is_int(v) and v > 0) or (isinstance(v, float) and 0 < v <= 1)),
    "trainer.log_every_n_steps": _POSITIVE_INT,
    "eval.batch_size": _POSITIVE_INT,
    "eval.limit_per_task": _Rule("a positive integer or null", lambda v: v is None or (is_int(v) and v > 0)),
    "eval.shots": _Rule("an integer >= 0", _COUNT.ok, optional=True),
    "eval.max_new_tokens": _POSITIVE_INT,
}
_ABSENT = object()


def _select(cfg: DictConfig, key: str) -> Any:
    """The value at `key` (_ABSENT if there is none); ConfigError if it cannot be resolved."""
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT)
    except OmegaConfBaseException as err:  # e.g. an interpolation to a key that does not exist
        raise ConfigError(key, f"cannot be resolved: {err}") from None


def _expand(cfg: DictConfig, pattern: str) -> list[str]:
    """The keys `pattern` names: itself, or every child key of its node for "node.*" (none if it is absent)."""
    if not pattern.endswith(".*"):
        return [pattern]
    parent = pattern[:-2]
    node = _select(cfg, parent)
    if node is _ABSENT or node is None:
        return []
    if not isinstance(node, DictConfig):
        raise ConfigError(parent, f"must be a mapping of component -> value, got {node!r}")
    return [f"{parent}.{child}" for child in node]


def _check_numbers(cfg: DictConfig) -> None:
    """Refuse a numeric key of _NUMBERS that is missing, of the wrong type or out of range."""
    for pattern, rule in _NUMBERS.items():
        for key in _expand(cfg, pattern):
            value = _select(cfg, key)
            if value is _ABSENT and rule.optional:
                continue
            if value is _ABSENT:
                raise ConfigError(key, f"is missing; it must be {rule.what}")
            if not rule.ok(value):
                raise ConfigError(key, f"must be {rule.what}, got {value!r}")


def _check_stage(cfg: DictConfig) -> None:
    """Refuse values that cannot work in one stage's config, naming the key (the model is built on meta)."""
    _check_numbers(cfg)
    check_layout(cfg)  # the global batch splits over the processes
    Budget.from_config(cfg.get("budget"))  # an unknown unit or a non-positive value, before anything trains
    LatencySettings.from_config(cfg.get("latency"))  # what the run checks at its start, before the sweep launches it
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


def _nearest_existing(path: Path) -> Path:
    """`path` itself if it exists, else its nearest ancestor that does (a file, when `path` lies under one)."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable(key: str, path: str | os.PathLike[str]) -> None:
    """ConfigError naming `key` unless files can be created at `path` (created later, if it does not exist yet)."""
    where = _nearest_existing(Path(path))
    # A real probe, not os.access: a read-only mount, an ACL or a file in the way all show up as the OS error.
    probe = where / f".vlmlab-probe-{uuid.uuid4().hex}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        blocker = "" if where == Path(path) else f"{where}: "  # e.g. a file in the way, above the directory
        raise ConfigError(key, f"cannot write to {path}: {blocker}{err.strerror or err}") from None


def _check_paths(cfg: DictConfig) -> None:
    """Refuse labels that are no directory name, and results, output or cache directories that cannot be written."""
    for key in ("ablation.name", "ablation.arm"):  # the run's record lives in results_dir/runs/<name>/<arm>/
        if not isinstance(label := _select(cfg, key), str) or not NAME.fullmatch(label):
            raise ConfigError(key, f"{label!r} cannot be a directory name: use letters, digits and _ . + - "
                                   "(starting with a letter or digit)")
    for key in ("paths.results_dir", "paths.output_dir", "paths.cache_dir"):
        if not isinstance(value := _select(cfg, key), str):
            raise ConfigError(key, "is missing" if value is _ABSENT else f"must be a directory path, got {value!r}")
    runs = Path(cfg.paths.results_dir) / "runs" / cfg.ablation.name
    for key, path in (("paths.results_dir", runs), ("paths.results_dir", runs / cfg.ablation.arm),
                      ("paths.output_dir", cfg.paths.output_dir), ("paths.cache_dir", cfg.paths.cache_dir)):
        check_writable(key, path)


def check_config(cfg: DictConfig) -> None:
    """Refuse values that cannot work, naming the key: the run's labels and paths, and each of its stages."""
    _check_paths(cfg)
    stages = resolve_stages(cfg)
    for index, stage in enumerate(stages):
        try:
            _check_stage(stage.config)
        except ConfigError as err:
            if len(stages) == 1:
                raise
            raise ConfigError(f"stages[{index}] ({stage.name}): {err.key}", err.detail, absolute=True) from None


def _check_metrics(spec: AblationSpec, jobs: list[Job]) -> None:
    """Refuse a name in the file's `metrics` that some arm's suite does not score or its eval.tasks leaves out."""
    for job in {job.run.arm: job for job in jobs}.values():  # the suite and tasks do not change with the seed
        cfg, where = job.config, f"{spec.path}: metrics"
        suite = instantiate_group("data.suite", cfg.data.suite)
        known = list(suite.task_metrics())
        if unknown := [m for m in spec.metrics if m not in known]:
            raise AblationError(f"{where}: unknown benchmark(s) {', '.join(unknown)}; {suite.version} "
                                f"(the suite of arm '{job.run.arm}') has {', '.join(known)}")
        if cfg.eval.tasks and (skipped := [m for m in spec.metrics if m not in cfg.eval.tasks]):
            raise AblationError(f"{where}: arm '{job.run.arm}' does not evaluate {', '.join(skipped)} "
                                f"(its eval.tasks: {', '.join(cfg.eval.tasks)})")


def benchmark_metrics(spec: AblationSpec, jobs: list[Job]) -> dict[str, str]:
    """The metric each of the table's benchmarks is scored with (a name of vlmlab.eval.metrics), from the suite of
    the control arm (_check_metrics has made sure every arm's suite scores them)."""
    control = next(job for job in jobs if job.run.arm == spec.control)
    metrics = instantiate_group("data.suite", control.config.data.suite).task_metrics()
    return {name: metrics[name] for name in spec.metrics}


def chance_of(spec: AblationSpec, jobs: list[Job], metric_of: Mapping[str, str]) -> dict[str, dict[str, object]]:
    """Each benchmark's chance baseline (vlmlab.eval.chance), scored with its metric (`metric_of`, from
    benchmark_metrics) on the test items of the control arm's config: its data is read (and cached) here, as its
    runs will read it."""
    from vlmlab.eval.chance import chance_baselines  # the data and its libraries: only for a sweep that trains
    from vlmlab.train.pipeline import DataPipeline

    cfg = next(job for job in jobs if job.run.arm == spec.control).config
    pipeline = DataPipeline.of(cfg)
    splits = pipeline.splits
    baselines = chance_baselines(splits["train"], splits[cfg.eval.split], metric_of, cfg.eval.limit_per_task,
                                 pipeline.suite.context_tasks())
    return {name: {"answer": b.answer, "score": b.score} for name, b in baselines.items()}


def _check_distinct(spec: AblationSpec, job: Job, first: Mapping[str, Job]) -> None:
    """Refuse a job whose run_id an earlier job of another arm already has: the same run planned twice."""
    if (other := first.get(job.run_id)) is not None and other.run.arm != job.run.arm:
        raise AblationError(f"{spec.path}: arms '{other.run.arm}' and '{job.run.arm}' compose to the same config "
                            f"(run_id {job.run_id}): one would overwrite the other's record")


def _compose_arm(spec: AblationSpec, arm: str, overrides: list[str], compose: Compose) -> DictConfig:
    """The config of `overrides` (one of `arm`'s jobs); AblationError naming the override that does not compose."""
    try:
        return compose(overrides)
    except Exception as err:
        bad = _offending_override(spec, arm, compose)
        culprit = f"override '{bad}'" if bad else "overrides"
        raise AblationError(f"{spec.path}: arm '{arm}': {culprit}: {err}") from None


# Seeds of a file that names none: with fewer, the paired t-test over seeds has one degree of freedom or none, and
# the seed-to-seed spread (which items alone do not show) goes unmeasured.
DEFAULT_SEEDS = 3


def with_run_defaults(spec: AblationSpec, compose: Compose, extra: tuple[str, ...] = ()) -> AblationSpec:
    """`spec` with the seeds and metrics its file leaves out taken from its control arm's run config (with `extra`):
    DEFAULT_SEEDS seeds from the run's `seed` on, and the benchmarks the suite scores (those of eval.tasks, where it
    names some)."""
    if spec.seeds is not None and spec.metrics is not None:
        return spec
    where = f"{spec.path}: arm '{spec.control}'"
    cfg = _compose_arm(spec, spec.control, [*spec.common, *spec.arms[spec.control], *extra], compose)
    try:
        if not is_int(seed := _select(cfg, "seed")):
            raise ConfigError("seed", "is missing" if seed is _ABSENT else f"must be an integer, got {seed!r}")
        suite = instantiate_group("data.suite", cfg.data.suite)
    except ConfigError as err:
        raise AblationError(f"{where}: {err}") from None
    return spec.with_defaults(seeds=tuple(range(seed, seed + DEFAULT_SEEDS)),
                              metrics=tuple(cfg.eval.tasks or suite.task_metrics()))


def plan_sweep(
    spec: AblationSpec,
    compose: Compose,
    extra: tuple[str, ...] = (),
    tuned: Mapping[str, tuple[str, ...]] | None = None,
) -> list[Job]:
    """Every job of `spec`, composed and checked, each arm with its `tuned` overrides (from `vlmlab tune`) last;
    raises AblationError naming the file, arm and key."""
    spec = with_run_defaults(spec, compose, extra)
    jobs: list[Job] = []
    checked: set[str] = set()
    by_id: dict[str, Job] = {}
    for run in spec.runs(extra):
        if tuned:
            run = replace(run, overrides=(*run.overrides, *tuned[run.arm]))
        cfg = _compose_arm(spec, run.arm, list(run.overrides), compose)
        if run.arm not in checked:  # seeds do not change what is built: check each arm once
            try:
                check_config(cfg)
            except ConfigError as err:
                raise AblationError(f"{spec.path}: arm '{run.arm}': {err}") from None
            checked.add(run.arm)
        job = Job(run=run, config=cfg, run_id=run_id(cfg))
        _check_distinct(spec, job, by_id)
        by_id.setdefault(job.run_id, job)
        jobs.append(job)
    _check_metrics(spec, jobs)
    return jobs
