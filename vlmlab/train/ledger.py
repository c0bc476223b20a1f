"""What a stage's training cost and logged, carried in its checkpoints so that a resumed run reports it whole.

A run that is interrupted and resumed trains in segments, one per process. Its record must describe the
training that produced its weights: every loss-log row once, the wall time of the segments up to the
checkpoint the weights came from (work done after that checkpoint and lost to the interruption is not
counted), and the highest peak memory of any segment. The ledger keeps those figures as callback state, so
Lightning saves them inside every checkpoint and restores them with the weights; a run resumed from its
final checkpoint trains nothing and reports what the original training cost.

The loss log has the rows and step numbers Lightning's CSVLogger wrote before (a train row every
`log_every_n_steps` optimizer steps, a validation row after each validation, both at step = optimizer steps
- 1), so logs written before and after this ledger read the same.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from vlmlab.train.memory import MemoryProbe, memory_probe

Row = dict[str, float | int]


class TrainingLedger(Callback):
    """Loss rows, training seconds and peak memory of one stage, saved in and restored from its checkpoints."""

    def __init__(self, step_offset: int = 0, log_every_n_steps: int = 50) -> None:
        self.step_offset = step_offset  # the earlier stages' steps, so a multi-stage run has one continuous log
        self.log_every_n_steps = log_every_n_steps
        self.rows: list[Row] = []
        self.seconds = 0.0  # training wall time before this segment (restored from the checkpoint)
        self.peak_mb: float | None = None
        self.peak_kind: str | None = None
        self._segment_started: float | None = None
        self._segment_first_step = 0
        self._probe: MemoryProbe | None = None
        self._last_step = -1
        self._step_loss: torch.Tensor | float = 0.0  # the optimizer step's loss so far, over its micro-batches

    @property
    def state_key(self) -> str:
        return f"TrainingLedger[offset={self.step_offset}]"

    # -- measuring a segment --------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._probe = memory_probe(trainer.strategy.root_device)
        self.peak_kind = self._probe.kind
        self._probe.start()
        self._segment_started = time.perf_counter()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._stop_probe()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop_probe()  # a failed run's sweep goes on: its sampling thread must not

    def _stop_probe(self) -> None:
        if self._probe is not None:
            self._probe.stop()
            self._probe = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._segment_first_step = self._last_step = trainer.global_step
        self._step_loss = 0.0

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > self._segment_first_step:
            self.seconds, self.peak_mb = self._totals()
        else:  # a resume from the final checkpoint: loading weights is not training
            self._stop_probe()
        self._segment_started = None

    def _totals(self) -> tuple[float, float | None]:
        """Seconds and peak memory of the training so far: the restored segments' plus this one's."""
        seconds = self.seconds
        if self._segment_started is not None:
            seconds += time.perf_counter() - self._segment_started
        peak = self._probe.peak() if self._probe is not None else None
        peaks = [p for p in (self.peak_mb, peak) if p is not None]
        return seconds, max(peaks, default=None)

    # -- the loss log -----------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # Recorded here, before any checkpoint of this step is saved, so the checkpoint holds this row.
        # Lightning divides each micro-batch's loss by the accumulation: their sum is the step's mean.
        # A tensor sum: reading it (a GPU sync) waits for the rows that are logged.
        if outputs is not None:
            self._step_loss = self._step_loss + outputs["loss"].detach()
        stepped, self._last_step = trainer.global_step != self._last_step, trainer.global_step
        if not stepped:
            return
        loss, self._step_loss = self._step_loss, 0.0
        if trainer.global_step % self.log_every_n_steps == 0 and isinstance(loss, torch.Tensor):
            if trainer.world_size > 1:  # the global batch's loss, the same row on every rank
                loss = trainer.strategy.reduce(loss, reduce_op="mean")
            self._add(trainer, "train/loss", float(loss))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or "val/loss" not in trainer.callback_metrics:
            return
        self._add(trainer, "val/loss", float(trainer.callback_metrics["val/loss"]))

    def _add(self, trainer: L.Trainer, key: str, value: float) -> None:
        self.rows.append({"epoch": trainer.current_epoch, "step": self.step_offset + trainer.global_step - 1,
                          key: value})

    # -- checkpoint state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        seconds, peak = self._totals()
        return {"rows": [dict(row) for row in self.rows], "seconds": seconds, "peak_mb": peak,
                "peak_kind": self.peak_kind}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(row) for row in state_dict["rows"]]
        self.seconds = float(state_dict["seconds"])
        self.peak_mb = state_dict["peak_mb"]
        self.peak_kind = state_dict["peak_kind"] or self.peak_kind


def loss_log_csv(rows: list[Row]) -> str:
    """The rows as CSV, byte for byte as Lightning's CSVLogger wrote them: epoch, step, the metrics, sorted."""
    keys = sorted({key for row in rows for key in row} | {"epoch", "step"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys)  # csv's own "\r\n" line ends, as CSVLogger wrote them
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
