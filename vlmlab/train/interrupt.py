"""Stopping a run on SIGTERM or SIGINT without losing it: save a checkpoint at the next step, then exit.

SLURM sends SIGTERM before it preempts or times out a job, and a user presses Ctrl-C. While a run trains,
either signal only raises a flag: the checkpoint callback sees it after the current step, saves a
checkpoint from which the resumed run is exact, and raises RunInterrupted. Outside training (building the
model, evaluating) there is nothing to save that the last checkpoint does not hold, so the signal raises
RunInterrupted at once. A second Ctrl-C while a save is pending stops at once too (the previous checkpoint
is still there). RunInterrupted derives from BaseException, like KeyboardInterrupt, so that no `except
Exception` between here and the command line (Hydra's job runner, the run's own failure handling) mistakes
an interruption for a failed run.

SIGUSR2 is what SLURM sends a job before its time limit (submitit asks for it, and requeues the job from its
own handler). It stops the run the same way, and once the checkpoint is saved the signal is handed on to the
handler that was there before (submitit's), so the job is requeued and resumes from that very checkpoint.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)


class RunInterrupted(BaseException):
    """A run stopped by a signal; it resumes from its last checkpoint when started again."""

    def __init__(self, signum: int, saved_at_step: int | None = None) -> None:
        self.signum = signum
        self.saved_at_step = saved_at_step
        where = f"checkpoint saved at step {saved_at_step}" if saved_at_step is not None else "last checkpoint kept"
        super().__init__(f"interrupted by {signal.Signals(signum).name}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130 for SIGINT)."""
        return 128 + self.signum


class StopRequest:
    """The signal received while a run trains, if any; installed around a run by `stop_on_signals`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._installed = False  # whether stop_on_signals routed the signals here

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived."""
        return self.signum is not None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While inside, a signal waits for the checkpoint callback; one still pending at exit stops the run."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.signum is not None:
            raise RunInterrupted(self.signum)

    def reclaim(self) -> None:
        """Take SIGTERM back from Lightning, which installs its own handler when `fit` starts.

        Lightning's handler makes its loops raise at the next validation batch or epoch end, before the
        checkpoint callback could save the step; with ours alone, the callback saves, then stops.
        """
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._deferring and not (self.signum == signal.SIGINT and signum == signal.SIGINT):
            self.signum = self.signum or signum
            return
        self.signum = self.signum or signum
        raise RunInterrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Route SIGTERM and SIGINT to a StopRequest for the duration of the block (main thread only)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield stop
        return
    previous = {signum: signal.signal(signum, stop._handle) for signum in HANDLED}
    stop._installed = True
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if stop.signum == signal.SIGUSR2 and callable(previous[signal.SIGUSR2]):
            signal.raise_signal(signal.SIGUSR2)  # the checkpoint is saved: now submitit may requeue the job
