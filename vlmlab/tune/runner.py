"""`vlmlab tune AXIS`: per arm of the ablation, resume its study, run the missing trials, write best.json.

Every arm is planned (composed and checked, its searched keys looked up) before anything is written, so a
bad ablation file or `tune:` block fails with the file and key named and leaves results/ untouched.
Trials train `tune.steps` steps on `tune.seed` (the ablation's first seed by default) and are scored by
their validation loss. Studies live in results/tuning/<axis>/<arm>.journal; trial checkpoints and logs in
<paths.output_dir>/tuning/<axis>/<arm>/.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from optuna.trial import TrialState

from vlmlab.results.records import StrPath
from vlmlab.sweep.ablation import AblationError, AblationSpec
from vlmlab.sweep.identity import run_id
from vlmlab.sweep.plan import Compose, Job, plan_sweep
from vlmlab.tune import study as studies
from vlmlab.tune.best import override_key, tuning_dir, write_best
from vlmlab.sweep.tune_space import Param
from vlmlab.tune.trial import TrialOutcome, run_trial

Echo = Callable[[str], None]


def say(line: str) -> None:
    """Print a progress line now, not when a pipe's buffer fills: a tune runs for hours at paper scale."""
    print(line, flush=True)

_ABSENT = object()


@dataclass(frozen=True)
class ArmPlan:
    """One arm's tuning: its short-run job (config and overrides), study name, journal, and default values."""

    job: Job
    study_name: str
    journal: Path
    defaults: dict[str, Any]

    @property
    def arm(self) -> str:
        return self.job.run.arm


def plan_tuning(spec: AblationSpec, compose: Compose, extra: tuple[str, ...], results_dir: StrPath) -> list[ArmPlan]:
    """Each arm's short-run config, composed and checked; AblationError naming the file, arm and key."""
    tune = spec.tune
    # Trials log to no dashboard unless the ablation or the user asks for one.
    everywhere = (*spec.common, *(o for overrides in spec.arms.values() for o in overrides), *extra)
    quiet = () if any(override_key(o) == "logger" for o in everywhere) else ("logger=none",)
    short = replace(spec, seeds=(tune.seed,))
    jobs = plan_sweep(short, compose, (f"trainer.max_steps={tune.steps}", *quiet, *extra))
    plans = []
    for job in jobs:
        defaults = {param.key: _default(spec, job, param) for param in tune.params}
        # What the trials measure: the arm's science config at this budget and seed, and the space searched.
        what = json.dumps({"run": run_id(job.config), "space": tune.space()}, sort_keys=True)
        fingerprint = hashlib.sha256(what.encode()).hexdigest()[:12]
        plans.append(ArmPlan(job, f"{job.run.arm}-{fingerprint}",
                             tuning_dir(results_dir, spec.name) / f"{job.run.arm}.journal", defaults))
    return plans


def _default(spec: AblationSpec, job: Job, param: Param) -> Any:
    """The arm's own value of a searched key; AblationError if it has none, or one no trial could replace."""
    where = f"{spec.path}: `tune.params.{param.key}`: arm '{job.run.arm}'"
    value = OmegaConf.select(job.config, param.key, default=_ABSENT)
    if value is _ABSENT:
        raise AblationError(f"{where} has no config key {param.key}")
    if OmegaConf.is_config(value):
        raise AblationError(f"{where}: {param.key} is a config node, not a value (name one of its keys)")
    if param.choices is None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise AblationError(f"{where}: {param.key} is {value!r}, not a number; give `choices` instead of a range")
    return value


def _values(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in sorted(params.items()))


def _trial_line(outcome: TrialOutcome, best: float | None) -> str:
    what = f"val loss {outcome.value:.4f}" if outcome.state == TrialState.COMPLETE else outcome.note
    tail = f" (best {best:.4f})" if best is not None else ""
    return f"  trial {outcome.number}: {_values(outcome.params)} -> {what}{tail}, {outcome.seconds:.1f} s"


def tune_arm(spec: AblationSpec, plan: ArmPlan, trials: int, compose: Compose, output_dir: Path,
             echo: Echo) -> dict[str, Any] | None:
    """Run the arm's missing trials; its best.json entry, or None when no trial completed."""
    study = studies.open_study(plan.journal, plan.study_name)
    retried = studies.recover(study, spec.tune.params)
    studies.enqueue_baseline(study, spec.tune.params, plan.defaults)
    missing = max(0, trials - len(studies.finished(study)))
    line = f"{spec.name}/{plan.arm}: {trials - missing} of {trials} trials done, {missing} to run"
    if retried:
        line += f" (interrupted trial {', '.join(map(str, retried))} repeated with the same values)"
    echo(line)
    for _ in range(missing):
        trial = studies.ask(study, spec.tune.params, spec.tune.seed)
        outcome = run_trial(study, trial, plan.job.run.overrides, compose, output_dir / spec.name / plan.arm)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        echo(_trial_line(outcome, study.best_value if complete else None))
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    return {
        "params": dict(best.params), "value": best.value, "trial": best.number, "trials": studies.counts(study),
        "steps": int(plan.job.config.trainer.max_steps), "seed": int(plan.job.config.seed),
        "overrides": [*spec.common, *spec.arms[plan.arm]], "space": spec.tune.space(),
        "study": plan.study_name, "journal": plan.journal.name,
    }


def tune_axis(spec: AblationSpec, plans: list[ArmPlan], trials: int, compose: Compose, results_dir: StrPath,
              output_dir: StrPath, echo: Echo = say) -> int:
    """Tune every planned arm, write best.json and print the best per arm; 0 if every arm has a best value."""
    from vlmlab.launch.job import quiet_libraries

    quiet_libraries()
    entries = {}
    for plan in plans:
        if (entry := tune_arm(spec, plan, trials, compose, Path(output_dir) / "tuning", echo)) is not None:
            entries[plan.arm] = entry
    path = write_best(results_dir, spec.name, entries)
    budget = plans[0].job.config  # the same steps and seed for every arm
    echo(f"best per arm (validation loss after {budget.trainer.max_steps} steps, seed {budget.seed}), in {path}:")
    width = max(len(plan.arm) for plan in plans)
    for plan in plans:
        entry = entries.get(plan.arm)
        if entry is None:
            echo(f"  {plan.arm:<{width}}  no completed trial: the sweep cannot use tuned values until it has one")
            continue
        done = entry["trials"]
        echo(f"  {plan.arm:<{width}}  {_values(entry['params'])}  val loss {entry['value']:.4f}  "
             f"({done['complete']} complete, {done['pruned']} diverged, {done['failed']} failed)")
    return 0 if len(entries) == len(plans) else 1
