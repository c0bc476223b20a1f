"""AblationSweeper: one job per (arm, seed) of `ablations/<axis>.yaml`, skipping runs whose record says done.

The jobs go to whatever launcher Hydra is configured with: the basic in-process launcher by default (the
imports are paid once per sweep), joblib, or submitit for SLURM.
"""

from __future__ import annotations

import copy
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from huggingface_hub import is_offline_mode
from omegaconf import DictConfig, OmegaConf

from vlmlab.data.hub_files import hub_cache
from vlmlab.data.needs import all_needed, missing
from vlmlab.errors import ConfigError
from vlmlab.results.records import RecordError, is_done, newer_schema, record_path, write_plan
from vlmlab.sweep.ablation import AblationError, AblationSpec, load_ablation
from vlmlab.sweep.plan import (
    Compose, Job, benchmark_metrics, chance_of, check_writable, plan_sweep, with_run_defaults,
)
from vlmlab.train.parallel import check_devices
from vlmlab.tune.best import best_path, tuned_overrides

log = logging.getLogger(__name__)


class AblationPlan(NamedTuple):
    """An ablation as a sweep plans it: the file (at the sweep's scale), its jobs, and whether they are tuned."""

    spec: AblationSpec
    jobs: list[Job]
    tuned: bool


def plan_ablation(axis: str, config: DictConfig, compose: Compose, scales: Sequence[str], arguments: Sequence[str],
                  tuned: bool = True) -> AblationPlan:
    """Every job of `ablations/<axis>.yaml`, composed and checked as `vlmlab sweep AXIS arguments...` plans them
    (`vlmlab prefetch` plans the same way). `config` is the sweep's own config (its paths and scale), `arguments`
    the task overrides; `tuned`: at each arm's values from `vlmlab tune`, if it ran. Raises AblationError."""
    paths = config.paths
    # `+scale=paper` (conf/scale/paper.yaml) sets scale.name: the file's arms as that scale has them.
    scale = OmegaConf.select(config, "scale.name", default=None)
    spec = load_ablation(paths.ablations_dir, axis).at_scale(scale, list(scales))
    # Seeds and metrics a file leaves out come from the control arm's run config: the plan.json needs them too.
    spec = with_run_defaults(spec, compose, tuple(arguments))
    values = tuned_overrides(spec, paths.results_dir, tuple(arguments)) if tuned else None
    return AblationPlan(spec, plan_sweep(spec, compose, tuple(arguments), values), bool(values))


def prefetch_command(axis: str, arguments: Sequence[str], tuned: bool = True) -> str:
    """The `vlmlab prefetch` command that fetches what `vlmlab sweep axis arguments...` needs, and its make form."""
    args = " ".join(shlex.quote(a) for a in arguments)
    untuned = "" if tuned else " --untuned"
    make_args = f" ARGS={shlex.quote(args)}" if args else ""
    return f"vlmlab prefetch {axis}{untuned} {args}".rstrip() + f" (or: make prefetch AXIS={axis}{make_args})"


def _plan_meta(spec: AblationSpec, jobs: list[Job]) -> dict:
    """What plan.json says of the ablation: the file's labels, each benchmark's metric and its chance baseline (the
    tables name the metric and show the baseline, and read nothing but results/)."""
    meta = spec.meta() | {"metric_of": benchmark_metrics(spec, jobs)}
    try:
        meta["chance"] = chance_of(spec, jobs, meta["metric_of"])
    except Exception as err:  # the runs read the same data and report what is wrong with it; the table does without
        log.warning("ablation %s: no chance baselines (%s: %s)", spec.name, type(err).__name__, err)
    return meta


class AblationSweeper(Sweeper):
    """Plans the ablation (refusing bad arms before any training), writes its plan.json, launches what is missing."""

    def __init__(self, axis: str, tuned: bool = True) -> None:
        self.axis = axis
        self.tuned = tuned  # train each arm at its values from `vlmlab tune`, when the axis was tuned
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        # Planning composes every job's config; the launcher then composes the same ones again. Half a second
        # each with Hydra: the launcher gets the planned ones instead.
        self.hydra_context = HydraContext(config_loader=_ComposedOnce(hydra_context.config_loader),
                                          callbacks=hydra_context.callbacks)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        paths = self.config.paths
        loader = self.hydra_context.config_loader

        def compose(overrides: list[str]) -> DictConfig:
            return loader.load_sweep_config(self.config, overrides)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        # Every check before plan.json is written: a refused sweep leaves results/ as it found it.
        try:
            spec, jobs, tuned = plan_ablation(self.axis, self.config, compose, loader.get_group_options("scale"),
                                              arguments, self.tuned)
            if self._trains_here():
                _check_devices(spec, jobs)
            if is_offline_mode():  # online, loading downloads what is missing
                _check_cached(spec, jobs, prefetch_command(self.axis, arguments, self.tuned))
            check_writable("hydra.sweep.dir", sweep_dir)
        except (AblationError, ConfigError) as err:
            _refuse(err)
        results = Path(paths.results_dir)
        if tuned:
            log.info("ablation %s: each arm at its tuned values from %s (--untuned ignores them)",
                     spec.name, best_path(results, spec.name))
        try:
            write_plan(results, spec.name, _plan_meta(spec, jobs), [
                {"run_id": job.run_id, "arm": job.run.arm, "seed": job.run.seed} for job in jobs
            ])
        except (RecordError, OSError) as err:  # checked above; a disk that fills up or goes away in between
            _refuse(err)
        kept = {job.run_id for job in jobs if _leave_alone(results, spec.name, job)}  # run_ids are distinct
        todo = [job for job in jobs if job.run_id not in kept
                and not is_done(results, spec.name, job.run.arm, job.run_id, job.run.seed)]
        log.info("ablation %s: %d runs planned, %d done, %d to train", spec.name, len(jobs),
                 len(jobs) - len(todo) - len(kept), len(todo))
        if todo:  # the zoo backbones its runs start from, each built once, before any run needs it
            from vlmlab.launch.zoo import build_needed

            if built := build_needed(job.config for job in todo):
                log.info("ablation %s: pretrained the zoo backbones %s", spec.name, ", ".join(built))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        from hydra_plugins.vlmlab_submitit_launcher import submitit_launcher as launchers  # submitit

        try:
            returns = self.launcher.launch([list(job.run.overrides) for job in todo], initial_job_idx=0) if todo else []
        except launchers.DEAD_JOB_ERRORS as err:  # killed, preempted or out of time: the table is still written
            returns = err.returns if isinstance(err, launchers.JobsDied) else []
            log.error("ablation %s: %s", spec.name, " ".join(str(err).splitlines()[:2]))  # the rest: the job's log
            log.error("ablation %s: without a record: %s; the next sweep trains them (from their last checkpoints)",
                      spec.name, ", ".join(launchers.runs_without_record(results, spec.name, todo)) or "none")
        # The summary goes where the runs' dashboards went: an ablation whose arms say `logger=none` has none.
        dashboards = [job.config for job in todo if job.config.logger.get("wandb")]
        if dashboards:
            self._log_summary(dashboards[0], results, spec.name)
        return returns

    def _trains_here(self) -> bool:
        """Whether the jobs run on this machine (in-process, joblib, submitit_local), not on SLURM's nodes."""
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

        return not isinstance(self.launcher, SlurmLauncher)

    def _log_summary(self, job_config: DictConfig, results: Path, axis: str) -> None:
        """The ablation's table as a wandb.Table in a summary run of the sweep's group."""
        from vlmlab.results.records import load_axis
        from vlmlab.results.tables import summarise
        from vlmlab.train.loggers import log_sweep_summary

        plan, runs, _warnings = load_axis(results, axis)
        log_sweep_summary(job_config, axis, summarise(plan, runs))


class _ComposedOnce:
    """A config loader that composes each job's config once per sweep and hands out copies (a launcher edits
    the config it gets); everything else goes to Hydra's own loader."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key not in self._composed:
            self._composed[key] = self._loader.load_sweep_config(master_config, list(sweep_overrides))
        return copy.deepcopy(self._composed[key])

    def __getattr__(self, name: str) -> Any:
        if name == "_loader":  # not set yet: the loader is being unpickled (submitit ships it to its jobs)
            raise AttributeError(name)
        return getattr(self._loader, name)


def _refuse(err: Exception) -> NoReturn:
    """Stop the sweep on a user error: its message names the file, arm and key; a traceback would bury it."""
    print(f"vlmlab sweep: {err}", file=sys.stderr)
    raise SystemExit(2) from None


def _check_devices(spec: AblationSpec, jobs: list[Job]) -> None:
    """Refuse an arm whose trainer asks for devices this machine does not have (trainer=gpu without CUDA)."""
    for job in {job.run.arm: job for job in jobs}.values():
        try:
            check_devices(job.config)
        except ConfigError as err:
            raise AblationError(f"{spec.path}: arm '{job.run.arm}': {err}") from None


def _check_cached(spec: AblationSpec, jobs: list[Job], prefetch: str) -> None:
    """Offline (HF_HUB_OFFLINE=1): refuse the sweep when the Hugging Face cache lacks a file some run reads, with
    the command that fetches them all. Local directories are not the prefetch's business: the suite reports them."""
    arms = {job.run.arm: job.config for job in jobs}  # seeds do not change what a run reads
    needed = [files for files in all_needed(arms.values()) if files.local_dir is None]
    if gaps := missing(needed):
        lines = "\n".join(f"  {gap}" for gap in gaps)
        raise AblationError(f"{spec.path}: HF_HUB_OFFLINE=1 and the Hugging Face cache ({hub_cache()}) lacks files "
                            f"its runs read:\n{lines}\nOn a machine with the network run: {prefetch}\n"
                            "then sweep again here (the cache must be the one this machine reads: same HF_HOME or "
                            "HF_HUB_CACHE, on a shared filesystem).")


def _leave_alone(results: Path, axis: str, job: Job) -> bool:
    """Whether the job's record comes from a newer vlmlab: retraining would overwrite what this one cannot read."""
    path = record_path(results, axis, job.run.arm, job.run_id)
    if (version := newer_schema(path)) is None:
        return False
    log.warning("%s: written by a newer vlmlab (schema_version %d); left alone, not retrained", path, version)
    return True
