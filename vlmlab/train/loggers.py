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
