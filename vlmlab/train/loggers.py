"""Loggers: the run's own metrics file (always) and wandb (online when logged in, else offline; never prompts)."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf


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


def build_loggers(cfg: DictConfig, run_dir: Path, run_id: str) -> list[Logger]:
    """A CSV logger writing `run_dir/metrics.csv`, plus wandb when the config asks for it."""
    loggers: list[Logger] = [CSVLogger(save_dir=run_dir, name="", version="")]
    if cfg.logger.get("wandb"):
        from lightning.pytorch.loggers import WandbLogger  # wandb's import is slow; pay it only when used

        save_dir = Path(cfg.paths.output_dir) / "wandb"
        save_dir.mkdir(parents=True, exist_ok=True)
        arm, seed = cfg.ablation.arm, cfg.seed
        loggers.append(WandbLogger(
            project=cfg.logger.wandb.project, group=cfg.ablation.name, job_type=arm,
            name=f"{arm}-s{seed}-{run_id}", save_dir=str(save_dir), mode=wandb_mode(cfg.logger.wandb.mode),
            config=flatten(OmegaConf.to_container(cfg, resolve=True)) | {"run_id": run_id},
        ))
    return loggers


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
