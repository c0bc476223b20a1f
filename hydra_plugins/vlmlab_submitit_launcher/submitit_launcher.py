"""Hydra's submitit launchers (SLURM, local), made to wait for every job and to report the jobs that die.

The plugin's own `launch` reads the jobs' results in order and raises at the first job that ended without
one (killed, preempted for good, out of time and of requeues): the sweep then stops waiting while later jobs
still run, and writes its table too early. These subclasses wait for all of them, then raise one
`JobsDied` naming each dead job; the sweeper reports it and writes the table. Hydra takes launchers from
the hydra_plugins package only, hence this file's place; conf/hydra/launcher/{slurm,local}.yaml select them.
A dead run keeps its checkpoints: the next sweep resumes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError

from vlmlab.results.records import record_path

log = logging.getLogger(__name__)

# What submitit raises for a job without a result; FailedJobError (the job raised) derives from it.
DEAD_JOB_ERRORS = (UncompletedJobError,)

# Keys of the launcher config that construct the executor rather than describe the job's resources
# (the same split as the plugin's own launch).
_INIT_KEYS = {"submitit_folder", "max_num_timeout"}


class JobsDied(UncompletedJobError):
    """Some jobs of a launch ended without a result; every other job ran to its end."""

    def __init__(self, dead: list[str], returns: list[JobReturn]) -> None:
        self.returns = returns  # the jobs that did finish
        super().__init__(f"{len(dead)} job(s) ended without a result: " + "; ".join(dead))


class _WaitingLauncher(BaseSubmititLauncher):
    """The plugin's launcher, except that `launch` waits for every job before reporting the dead ones."""

    # How long a finished job's result file may take to appear (submitit's Job._results_timeout_s): a
    # shared filesystem can lag behind the job's end, so SLURM keeps submitit's 15 s.
    _RESULT_WAIT_S = 15

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit one job per override list, wait for all; JobsDied if some ended without a result."""
        assert self.config is not None
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("submitit %s: %d jobs, logs in %s", self._EXECUTOR, len(job_overrides), self.params["submitit_folder"])
        numbers = list(range(initial_job_idx, initial_job_idx + len(job_overrides)))
        count = len(numbers)
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * count, numbers,
                                  [f"job_id_for_{n}" for n in numbers], [Singleton.get_state()] * count)
        returns: list[JobReturn] = []
        dead: list[str] = []
        for number, job in zip(numbers, jobs):
            job._results_timeout_s = self._RESULT_WAIT_S
            try:
                returns.append(job.results()[0])  # every task of a job returns the same run's JobReturn
            except UncompletedJobError:  # its message holds the whole log: point to the log instead
                dead.append(f"#{number} (job {job.job_id}, {job.state}; logs in {job.paths.folder})")
        if dead:
            raise JobsDied(dead, returns)
        return returns

    def _executor(self) -> submitit.AutoExecutor:
        """The executor, configured from the launcher config as the plugin does it."""
        init: dict[str, Any] = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:  # SLURM's config has it; submitit_local keeps submitit's default
            init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # the others are executor-specific: prefixed
        executor.update_parameters(**{key if key in shared else f"{self._EXECUTOR}_{key}": value
                                      for key, value in self.params.items() if key not in _INIT_KEYS})
        return executor


class SlurmLauncher(_WaitingLauncher):
    """SLURM: one task per GPU; Lightning's SLURMEnvironment reads each task's rank from SLURM."""

    _EXECUTOR = "slurm"


class LocalLauncher(_WaitingLauncher):
    """Processes of this machine, one per job, submitted and watched the way SLURM jobs are."""

    _EXECUTOR = "local"
    _RESULT_WAIT_S = 1  # the job wrote its result on this machine before exiting: a dead job is known at once


def runs_without_record(results: str | os.PathLike[str], axis: str, jobs: Sequence[Any]) -> list[str]:
    """'axis/arm seed S (run_id)' for each planned job (a vlmlab.sweep.plan.Job) that has no record."""
    return [f"{axis}/{job.run.arm} seed {job.run.seed} ({job.run_id})" for job in jobs
            if not record_path(Path(results), axis, job.run.arm, job.run_id).exists()]
