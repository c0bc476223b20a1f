"""One process of a multi-process run started by vlmlab.launch.ranks: `python -m vlmlab.launch.rank CONFIG`."""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from vlmlab.train.interrupt import RunInterrupted


def main(config_path: str) -> int:
    """Run the job of the saved config as the rank the environment names; its exit status."""
    from vlmlab.launch.job import run_job

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        status = run_job(OmegaConf.load(config_path))
    except RunInterrupted as stopped:
        return stopped.exit_code
    return 0 if status in ("done", "skipped", "diverged", "failed") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
