"""Provenance of a run: code version, package versions, interpreter, machine, command."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata

PACKAGES = ("vlmlab", "torch", "transformers", "lightning", "peft", "datasets", "hydra-core", "wandb", "tokenizers")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def provenance() -> dict:
    """Git commit and dirtiness, versions of the packages that shape results, Python, platform, command line."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
    }
