"""Loggers: wandb (online when logged in, else offline; never prompts)."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import pandas

log = logging.getLogger(__name__)
T = TypeVar("T")


def wandb_mode(requested: str) -> str:
    """`online`/`offline`/`disabled`; `auto` is online only when a key is configured, so wandb never asks for one."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError):
        return "offline"
    return "online" if any("wandb" in host for host in hosts) else "offline"


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {'model.connector._target_': ...}, so every key is a dashboard column."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _start_wandb(cfg: DictConfig, start: Callable[[str, Path, Any], T]) -> T:
    """`start(mode, save_dir, settings)` in the configured mode, falling back to offline when the server does not
    answer within `init_timeout` seconds, so wandb never fails or blocks a run."""
    import wandb  # wandb's import is slow; pay it only when used

    settings = cfg.logger.wandb
    save_dir = Path(cfg.paths.output_dir).resolve() / "wandb"  # absolute: wandb's service has its own cwd
    save_dir.mkdir(parents=True, exist_ok=True)
    wandb_settings = wandb.Settings(init_timeout=float(settings.get("init_timeout", 30)), silent=True)
    mode = wandb_mode(settings.mode)
    for attempt in dict.fromkeys((mode, "offline")):
        try:
            return start(attempt, save_dir, wandb_settings)
        except Exception as err:  # wandb raises its own error types for network failures
            if attempt == "offline":
                raise
            log.warning("wandb %s failed (%s): offline to %s; `make sync` uploads it later", attempt, err, save_dir)
            wandb.teardown()  # a service left from the failed start would swallow the offline run's data
    raise AssertionError("unreachable")


def _wandb_logger(cfg: DictConfig, run_id: str) -> Logger:
    """A WandbLogger started now, so that an unreachable server shows (and falls back) before training."""
    from lightning.pytorch.loggers import WandbLogger

    arm, seed = cfg.ablation.arm, cfg.seed
    config = flatten(OmegaConf.to_container(cfg, resolve=True)) | {"run_id": run_id}

    def start(mode: str, save_dir: Path, settings: Any) -> Logger:
        logger = WandbLogger(
            project=cfg.logger.wandb.project, group=cfg.ablation.name, job_type=arm, name=f"{arm}-s{seed}-{run_id}",
            save_dir=str(save_dir), mode=mode, config=config, settings=settings,
        )
        logger.experiment  # noqa: B018  (starts the run: this is where an unreachable server shows)
        return logger

    return _start_wandb(cfg, start)


def log_sweep_summary(cfg: DictConfig, axis: str, table: "pandas.DataFrame") -> None:
    """The ablation's table as a wandb.Table in a summary run of the sweep's group (offline unless logged in)."""
    import wandb

    def start(mode: str, save_dir: Path, settings: Any):
        return wandb.init(project=cfg.logger.wandb.project, group=axis, job_type="summary", name=f"{axis}-table",
                          dir=str(save_dir), mode=mode, reinit="finish_previous", settings=settings)

    run = _start_wandb(cfg, start)
    run.log({f"{axis}/table": wandb.Table(dataframe=table.astype(str))})
    run.summary["ablation"] = axis
    run.finish()


def build_loggers(cfg: DictConfig, run_id: str) -> list[Logger]:
    """The dashboards the config asks for (wandb, or none). The run's own loss log is not one of them: it is
    kept by the TrainingLedger inside the checkpoints, so that a resumed run has every row once. Of the processes
    of a multi-process run, rank 0 alone has one: one wandb run per vlmlab run."""
    from vlmlab.train.parallel import global_rank

    return [_wandb_logger(cfg, run_id)] if cfg.logger.get("wandb") and global_rank() == 0 else []


class StageLogger(Logger):
    """Forwards to a run-wide logger with steps offset by the earlier stages' steps, so a multi-stage run
    has one continuous curve (each stage's Trainer counts its steps from zero)."""

    def __init__(self, inner: Logger, offset: int, stage: str) -> None:
        super().__init__()
        self.inner, self.offset, self.stage = inner, offset, stage

    @property
    def name(self) -> str | None:
        return self.inner.name

    @property
    def version(self) -> int | str | None:
        return self.inner.version

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    @property
    def log_dir(self) -> str | None:
        return getattr(self.inner, "log_dir", None)

    @property
    def experiment(self) -> Any:
        return self.inner.experiment

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, None if step is None else step + self.offset)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def save(self) -> None:
        self.inner.save()

    def finalize(self, status: str) -> None:
        self.inner.save()  # the run's loggers are finalised once, after its last stage
