"""Runs of conf/train.yaml through Hydra: the task function each job runs, a single run's checks, and the call."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from vlmlab.cli.command import CONF_DIR


@dataclass
class HydraTask:
    """The task function Hydra runs for each job: one run, told the command that started it."""

    command: str  # as typed, e.g. "vlmlab sweep connector": the records' provenance
    # The status of each job this object ran in this process: Hydra throws the task function's return value away
    # (its _run_hydra returns nothing), so `vlmlab train` reads its run's status here.
    statuses: list[str] = field(default_factory=list)

    def __call__(self, cfg: DictConfig) -> str:
        from vlmlab.launch.job import portable_text, run_job  # Hydra's startup stays light; the job imports torch

        # In the job's config, which every process of the run receives (a SLURM job unpickles this object, a
        # multi-process run's ranks load the config): ablation.* is outside the run identity, so run_id is unchanged.
        with open_dict(cfg):
            cfg.ablation.command = portable_text(self.command)  # records are shared: no user's directories
        status = run_job(cfg)
        self.statuses.append(status)
        return status


class TrainChecks(Callback):
    """Refuses a single run's bad config (exit 2) before Hydra makes its run directory or anything trains."""

    # on_run_start: Hydra calls it in single-run mode only, after composing the config and before run_job
    # creates hydra.run.dir under paths.output_dir (so a bad output_dir is refused here, not met as a trace).
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from vlmlab.errors import ConfigError
        from vlmlab.sweep.plan import check_config
        from vlmlab.train.parallel import check_devices

        task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])  # what the job receives
        try:
            check_config(task)
            check_devices(task)  # a single run trains here
        except ConfigError as err:
            print(f"vlmlab train: {err}", file=sys.stderr)
            raise SystemExit(2) from None  # an Exception would be swallowed by Hydra's callback runner


def run_hydra(args: Sequence[str], task: HydraTask, prog: str) -> None:
    """Hydra's command line (overrides, --multirun, --cfg, ...) on `args`, not on sys.argv: conf/train.yaml, with
    `task` run for each job. Exits (SystemExit) as Hydra does: on its errors, its help, a refused config."""
    # @hydra.main reads sys.argv and Hydra 1.3 has no public entry point that takes the arguments instead; this is
    # what its decorated_main does (hydra/main.py of Hydra 1.3; checked with 1.3.8): the internal
    # hydra._internal.utils._run_hydra, here and nowhere else.
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser

    version.setbase("1.3")  # what @hydra.main(version_base="1.3") sets
    parser = get_args_parser()
    parser.prog = prog  # in Hydra's usage and error lines
    parsed = parser.parse_intermixed_args(list(args))  # Hydra's flags anywhere among the overrides
    if parsed.experimental_rerun is not None:
        parser.error("--experimental-rerun is not supported: run the same command again (it resumes)")
    _run_hydra(args=parsed, args_parser=parser, task_function=task, config_path=CONF_DIR, config_name="train")
