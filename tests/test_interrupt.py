"""Signals stop a run at a checkpoint; SLURM's time-limit warning is handed on to submitit once it is saved."""

from __future__ import annotations

import os
import signal

import pytest

from vlmlab.train.interrupt import RunInterrupted, stop_on_signals


@pytest.fixture
def submitit_handler():
    """A handler in SIGUSR2's place before the run, as submitit installs one to requeue the job."""
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def test_the_time_limit_warning_waits_for_the_checkpoint_then_reaches_submitit(submitit_handler):
    with pytest.raises(RunInterrupted) as stopped:
        with stop_on_signals() as stop:
            with stop.deferred():  # training: the signal waits for the checkpoint callback
                os.kill(os.getpid(), signal.SIGUSR2)
                assert stop.requested and submitit_handler == [], "not handed on before the save"
    assert stopped.value.signum == signal.SIGUSR2
    assert submitit_handler == [signal.SIGUSR2], "then submitit gets it, and requeues the job"


def test_outside_training_it_stops_at_once_and_is_handed_on(submitit_handler):
    with pytest.raises(RunInterrupted):
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGUSR2)
    assert submitit_handler == [signal.SIGUSR2]


def test_sigterm_is_not_handed_on(submitit_handler):
    with pytest.raises(RunInterrupted) as stopped:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.exit_code == 143 and submitit_handler == []
