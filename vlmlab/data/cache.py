"""Build-once caches: an artefact is written beside its target and renamed into place, so that an
interrupted build never leaves a half-written cache that a later run would load."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def build_once(target: Path, write: Callable[[Path], None]) -> Path:
    """`target`, created by `write(staging_dir)` the first time and reused afterwards."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(staging / "build")
        try:
            os.replace(staging / "build", target)
        except OSError:
            if not target.exists():  # another process winning the race is fine; anything else is not
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
