"""Start the processes of one multi-process run on this node, when nothing else has started them.

Under SLURM (srun, submitit's one task per GPU) or torchrun, every process of a run is started from outside
and runs the job itself: Lightning finds its rank in the environment. A sweep run in one process (`make sweep
ARGS="trainer=ddp"`) has no such launcher, and Lightning's own would re-run the whole command line (the sweep)
in every process. So the sweep's process starts the run's processes itself, one per device, each running
`python -m vlmlab.launch.rank <config>` for this one run, and waits for them. Rank 0 writes the record.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vlmlab.train.parallel import Parallelism, launched_from_outside

# Set in the rank processes: the sweep's process holds the run's lock for them.
LOCK_HELD = "VLMLAB_LOCK_HELD_BY_PARENT"
def processes_to_start(cfg: DictConfig) -> int:
    """How many processes this node must start for the run: 0 when it trains in this process."""
    layout = Parallelism.from_config(cfg)
    if layout.world_size == 1 or launched_from_outside():
        return 0
    return layout.devices  # one node: check_devices refuses several nodes that no launcher started


@dataclass(frozen=True)
class RankExits:
    """How each process of a run ended: its exit status (negative: killed by that signal)."""

    codes: tuple[int, ...]
    interrupted_by: int | None = None  # the signal this process received and passed on, if any

    @property
    def ok(self) -> bool:
        """Whether every process exited normally."""
        return all(code == 0 for code in self.codes)

    def describe(self) -> str:
        """'rank 1 exited with status 1, rank 2 was killed by SIGKILL' for the processes that failed."""
        failed = []
        for rank, code in enumerate(self.codes):
            if code < 0:
                failed.append(f"rank {rank} was killed by {signal.Signals(-code).name}")
            elif code:
                failed.append(f"rank {rank} exited with status {code}")
        return ", ".join(failed) or "every rank exited normally"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ranks(cfg: DictConfig, count: int, run_dir: Path, grace_s: float = 30.0) -> RankExits:
    """Run the job of `cfg` in `count` processes on this node and wait for them. When one fails, the others get
    `grace_s` to finish before they are stopped (they would wait forever for the failed one in a collective).
    A signal to this process is passed on to them; they save a checkpoint and stop."""
    config = run_dir / "launch" / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, config, resolve=True)
    port = _free_port()
    processes = []
    for rank in range(count):
        env = os.environ | {
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(count), "NODE_RANK": "0",
            "RANK": str(rank), "LOCAL_RANK": str(rank), LOCK_HELD: "1",
        }
        processes.append(subprocess.Popen([sys.executable, "-m", "vlmlab.launch.rank", str(config)], env=env))
    forwarded = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    received: list[int] = []

    def forward(signum: int, _frame) -> None:
        received.append(signum)
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    for sig in forwarded:
        signal.signal(sig, forward)
    try:
        codes = tuple(_wait(processes, grace_s))
        return RankExits(codes, received[0] if received else None)
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)


def _wait(processes: list[subprocess.Popen], grace_s: float) -> list[int]:
    """Every process's exit status; once one has failed, the rest are stopped after `grace_s`."""
    failed_at: float | None = None
    while any(p.poll() is None for p in processes):
        if failed_at is None and any(p.returncode not in (None, 0) for p in processes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > grace_s:
            for process in processes:
                if process.poll() is None:
                    process.kill()
        time.sleep(0.2)
    return [p.returncode for p in processes]
