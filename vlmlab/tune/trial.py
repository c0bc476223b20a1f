"""One tuning trial: compose the arm's short-run config with the trial's values, train it, tell Optuna the loss.

A trial that diverges is told PRUNED (its values are bad: a result, counted), one that crashes is told FAIL
(no result: retried on the next `vlmlab tune`); neither stops the search. An interrupt (SIGTERM, SIGINT) saves a
checkpoint and is not caught: the trial stays RUNNING in the journal and `study.recover` repeats it, resuming
from its checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vlmlab.errors import DivergedError
from vlmlab.sweep.identity import run_id
from vlmlab.sweep.plan import Compose
from vlmlab.train.interrupt import stop_on_signals
from vlmlab.tune.best import param_overrides


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended: its state, loss (when complete), and a line of explanation otherwise."""

    number: int
    params: dict
    state: TrialState
    value: float | None
    seconds: float
    note: str = ""


def run_trial(
    study: optuna.Study, trial: optuna.Trial, base: tuple[str, ...], compose: Compose, output_dir: Path
) -> TrialOutcome:
    """Train the config `base` + the trial's values under `output_dir`, and tell `study` how it went."""
    import vlmlab.train.run as run_module  # looked up at call time, so a test can count the trainings
    from vlmlab.launch.job import finish_wandb

    params = dict(trial.params)
    started = time.perf_counter()
    run_dir = None
    try:
        cfg = compose([*base, *param_overrides(params)])
        rid = run_id(cfg)
        trial.set_user_attr("run_id", rid)
        run_dir = output_dir / rid  # checkpoints: a repeated interrupted trial resumes from them
        with stop_on_signals() as stop:  # SIGTERM/SIGINT: a checkpoint, then RunInterrupted (not caught below)
            loss = run_module.train_and_validate(cfg, run_dir, rid, stop=stop).val_loss
        if not math.isfinite(loss):
            raise DivergedError(f"validation loss is {loss}")
    except DivergedError as err:
        state, value, note = TrialState.PRUNED, None, f"diverged: {err}"
    except Exception as err:  # a crashing trial is reported, never the end of the search
        state, value, note = TrialState.FAIL, None, f"failed: {type(err).__name__}: {err}"
        trial.set_user_attr("error", f"{type(err).__name__}: {err}")
    else:
        state, value, note = TrialState.COMPLETE, loss, ""
    finally:
        finish_wandb()
    study.tell(trial, value, state=state)
    if run_dir is not None:  # the trial is over: its checkpoints would only fill the disk
        for checkpoint in run_dir.rglob("*.ckpt"):
            checkpoint.unlink()
    return TrialOutcome(trial.number, params, state, value, time.perf_counter() - started, note)
