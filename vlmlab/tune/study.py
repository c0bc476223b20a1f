"""One Optuna study per arm, kept in an append-only journal file (text, one JSON operation a line).

A study's name carries a fingerprint of what its trials measure (the arm's short-run config and the search
space), so a changed setup starts a new study in the same file instead of mixing incomparable losses.
Trials are asked and told by hand (not `study.optimize`), so a process killed mid-trial leaves that trial
RUNNING in the journal; `recover` fails it and queues its values again. Each ask reseeds TPE from the number
of trials finished so far, so a resumed search proposes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import TPESampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from vlmlab.sweep.tune_space import Param

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # pruned: diverged, a real (bad) outcome of its values
STARTUP_TRIALS = 3  # random draws (after the baseline) before TPE models the space: a tune is ~6 trials


def open_study(journal: Path, name: str) -> optuna.Study:
    """The study `name` in the journal file, created on first use."""
    optuna.logging.set_verbosity(logging.WARNING)  # the tuner prints one line per trial itself
    journal.parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    # Loading first: create_study(load_if_exists=True) would append a failed "create" line on every rerun.
    if name in optuna.get_all_study_names(storage):
        return optuna.load_study(study_name=name, storage=storage)
    return optuna.create_study(storage=storage, study_name=name, direction="minimize")


def finished(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards the requested number: complete or pruned (diverged)."""
    return study.get_trials(deepcopy=False, states=FINISHED)


def recover(study: optuna.Study, params: tuple[Param, ...]) -> list[int]:
    """Fail the trials a dead process left RUNNING and queue their values again; their numbers.

    One tuner per axis at a time: a RUNNING trial is taken to belong to a process that no longer exists."""
    keys = {param.key for param in params}
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if set(trial.params) == keys:  # a trial killed before its values were drawn has nothing to repeat
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    return [trial.number for trial in stale]


def enqueue_baseline(study: optuna.Study, params: tuple[Param, ...], defaults: dict[str, Any]) -> bool:
    """Queue the config's own values as a new study's first trial (when they lie in the space), so the tuned
    value never loses to the untuned one on the objective; whether it was queued."""
    if study.trials or not all(p.key in defaults and p.contains(defaults[p.key]) for p in params):
        return False
    study.enqueue_trial({p.key: defaults[p.key] for p in params}, user_attrs={"baseline": True})
    return True


def ask(study: optuna.Study, params: tuple[Param, ...], seed: int) -> optuna.Trial:
    """The next trial, its values drawn (or taken from the queue), reproducibly from `seed` and the history."""
    # Failed trials are invisible to TPE and do not advance the draw: the k-th finished trial is always drawn
    # from the same sampler state and history, interrupted or not.
    study.sampler = TPESampler(seed=seed * 10_007 + len(finished(study)), n_startup_trials=STARTUP_TRIALS,
                               constant_liar=False)
    return study.ask({param.key: param.distribution() for param in params})


def counts(study: optuna.Study) -> dict[str, int]:
    """How many trials are complete, pruned (diverged) and failed (crashed or interrupted)."""
    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL)}
