"""Checkpoints a run resumes from exactly: saved whole, at points where nothing of a step is left to do.

`last.ckpt` is written every `every_n_steps` optimizer steps, at the end of training, and when a stop is
requested (vlmlab.train.interrupt). A save lands where Lightning's restart logic resumes without repeating or
skipping anything: after the step's train row is in the ledger, and, at a step that validates, after the
validation (a checkpoint taken before it would make the resumed run skip that validation and its log row).
It holds the weights, optimizer, schedule, loop counters, the data position (VLMDataModule), the ledger and
the random number generators, so a resumed run draws what the uninterrupted one drew. The file is written
beside its final name and renamed over it, so a kill during a save leaves the previous checkpoint intact.
Under FSDP's sharded checkpoints it is a directory (one file per rank), swapped in the same way.
With gradient accumulation a save only happens on the micro-batch that completed an optimizer step. The time
spent saving and the size of the last checkpoint are kept for the run's cost.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from vlmlab.train.interrupt import RunInterrupted, StopRequest


def rng_state() -> dict[str, Any]:
    """The process's random number generators (Python, NumPy, torch CPU and CUDA), as plain data and tensors."""
    # Plain lists rather than a NumPy array: Lightning loads checkpoints with torch.load(weights_only=True).
    name, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _validates_after_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning runs validation at the end of the current step (asked at its on_train_batch_end).

    Lightning's own decision, a private method in 2.6: the callback must defer its save past that validation.
    """
    loop = trainer.fit_loop.epoch_loop
    return bool(loop._should_check_val_fx(trainer.fit_loop._data_fetcher))


class ResumableCheckpoint(Checkpoint):
    """Writes `path` every `every_n_steps` steps, at the end of training, and on a stop request (then stops)."""

    def __init__(self, path: Path, every_n_steps: int, stop: StopRequest | None = None) -> None:
        if every_n_steps <= 0:
            raise ValueError(f"checkpoint_every_n_steps must be positive, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.stop = stop
        self._pending = False  # a save due at this step, waiting for the step's validation to finish
        self._first_step = 0
        self._last_step = -1  # the optimizer step seen at the previous batch end: a micro-batch does not step
        self.seconds = 0.0  # spent saving, this run's segments together (restored from the checkpoint)
        self.saves = 0
        self.bytes = 0  # size of the last checkpoint written

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._first_step = self._last_step = trainer.global_step
        self._pending = False
        if self.stop is not None:
            self.stop.reclaim()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        stepped, self._last_step = trainer.global_step != self._last_step, trainer.global_step
        if not stepped:  # mid-accumulation: the gradients of this step are not in any state a save can hold
            return
        stopping = self._stop_requested(trainer)
        if not stopping and trainer.global_step % self.every_n_steps:
            return
        if _validates_after_this_step(trainer):
            self._pending = True
            return
        self._save(trainer)
        if stopping:
            self._interrupt(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        stopping = self._stop_requested(trainer)
        if self._pending or stopping:
            self._pending = False
            self._save(trainer)
        if stopping:
            self._interrupt(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > self._first_step:  # the final weights: evaluation resumes from them
            self._save(trainer)

    def _stop_requested(self, trainer: L.Trainer) -> bool:
        # Any rank's signal stops every rank at the same step (a no-op reduction on one device).
        wanted = self.stop is not None and self.stop.requested
        return bool(trainer.strategy.reduce_boolean_decision(wanted, all=False))

    def _interrupt(self, trainer: L.Trainer) -> None:
        # On a rank that did not receive the signal itself, another rank's SIGTERM is the reason.
        signum = self.stop.signum if self.stop is not None and self.stop.signum else signal.SIGTERM
        raise RunInterrupted(signum, saved_at_step=trainer.global_step)

    def _save(self, trainer: L.Trainer) -> None:
        started = time.perf_counter()
        partial = self.path.with_name(f".{self.path.name}.partial")
        self.saves += 1  # counted before the save, so the checkpoint holds itself
        trainer.save_checkpoint(partial, weights_only=False)  # every rank takes part; rank 0 writes (all, sharded)
        trainer.strategy.barrier("ResumableCheckpoint.written")
        if trainer.is_global_zero:
            self.bytes = _swap_in(partial, self.path)
        trainer.strategy.barrier("ResumableCheckpoint.save")
        self.seconds += time.perf_counter() - started

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(), "seconds": self.seconds, "saves": self.saves, "bytes": self.bytes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        set_rng_state(state_dict["rng"])
        self.seconds = float(state_dict.get("seconds", 0.0))  # absent in checkpoints of older versions
        self.saves = int(state_dict.get("saves", 0))
        self.bytes = int(state_dict.get("bytes", 0))


def _swap_in(partial: Path, path: Path) -> int:
    """Make the written checkpoint `partial` (a file, or a directory of shards) the one at `path`; its bytes."""
    files = [partial] if partial.is_file() else [f for f in partial.rglob("*") if f.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    if partial.is_dir() and path.exists():  # a directory cannot be renamed over a non-empty one
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(partial, path)
    return sum(file.stat().st_size for file in ([path] if path.is_file() else path.rglob("*")) if file.is_file())


def remove_checkpoints(run_dir: Path) -> int:
    """Delete every checkpoint under `run_dir` (a done run resumes no more); the bytes freed."""
    freed = 0
    for found in sorted(Path(run_dir).rglob("*.ckpt*"), reverse=True):  # last.ckpt, .last.ckpt.partial, .old
        if found.is_dir():
            freed += sum(f.stat().st_size for f in found.rglob("*") if f.is_file())
            shutil.rmtree(found, ignore_errors=True)
        elif found.exists():
            freed += found.stat().st_size
            found.unlink(missing_ok=True)
    return freed
