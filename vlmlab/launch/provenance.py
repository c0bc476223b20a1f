"""Provenance of a run: code version, package versions, interpreter, machine, command."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PACKAGES = ("vlmlab", "torch", "transformers", "lightning", "peft", "datasets", "hydra-core", "wandb", "tokenizers")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def command(cfg: DictConfig | None = None) -> str:
    """The command that started the run: the one `vlmlab` put in its config (ablation.command, outside the run
    identity), else this process's command line (a job started by other means)."""
    typed = OmegaConf.select(cfg, "ablation.command", default=None) if cfg is not None else None
    return typed or " ".join(sys.argv)


def _outside_the_code(cfg: DictConfig | None) -> list[str]:
    """Pathspecs that leave the results directory out of the dirtiness check, where it is inside the checkout: a
    sweep that re-runs an axis deletes its committed records there, which changes results, not the code."""
    results = OmegaConf.select(cfg, "paths.results_dir", default=None) if cfg is not None else None
    top = _git("rev-parse", "--show-toplevel")
    if not results or top is None:
        return []
    inside, checkout = Path(results).resolve(), Path(top).resolve()
    if not inside.is_relative_to(checkout):
        return []
    return [f":(exclude,top){inside.relative_to(checkout).as_posix()}"]


def provenance(cfg: DictConfig | None = None) -> dict:
    """Git commit and dirtiness, versions of the packages that shape results, Python, platform, device, and the
    command that started the run `cfg` configures."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", *_outside_the_code(cfg))
    import torch  # already imported by the run; here only to name the device it ran on

    device = (f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
              else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "command": command(cfg),
    }
