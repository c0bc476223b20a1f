"""The training loop every zoo backbone shares: deterministic, resumable, saving a quality level at given steps.

Each step's batch is drawn from a generator seeded by (seed, step), not by a stream carried from step to step, so
a run resumed from its last saved state draws exactly what an uninterrupted one would: the state is the model,
optimizer and schedule, and the seconds spent so far.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vlmlab.train.schedules import WarmupCosine

STATE_FILE = "state.pt"


@dataclass(frozen=True)
class LoopSettings:
    """How long and how a backbone trains, and the steps whose weights are kept as its quality levels."""

    steps: int
    levels: tuple[int, ...]  # steps after which a level is saved, increasing; the last is `steps`
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float
    seed: int

    def __post_init__(self) -> None:
        levels = list(self.levels)
        if not levels or levels != sorted(set(levels)) or levels[0] < 1 or levels[-1] != self.steps:
            raise ValueError(f"levels must be increasing steps from 1 ending at steps={self.steps}, got {levels}")

    def batch(self, step: int, items: int) -> np.ndarray:
        """The item indices of step `step`'s batch: a function of (seed, step) alone."""
        rng = np.random.Generator(np.random.PCG64([self.seed, step]))
        return rng.choice(items, size=min(self.batch_size, items), replace=False)


@dataclass(frozen=True)
class LoopResult:
    """What a finished loop measured."""

    steps: int
    seconds: float  # training time over every session of the run (resumes add up)
    final_loss: float


SaveLevel = Callable[[int, int], None]  # (level 1.., step) -> saves the backbone's weights and quality


def train(model: nn.Module, loss_at: Callable[[int], torch.Tensor], settings: LoopSettings, work_dir: Path,
          save_level: SaveLevel) -> LoopResult:
    """Train `model` on `loss_at(step)` for `settings.steps`, calling `save_level` at each level's step; resume from
    `work_dir`'s state if an earlier session left one."""
    torch.manual_seed(settings.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = WarmupCosine(optimizer, settings.steps, settings.warmup, min_lr_ratio=0.1)
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path, start, spent, loss_value = work_dir / STATE_FILE, 0, 0.0, float("nan")
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, spent, loss_value = state["step"], state["seconds"], state["loss"]
    model.train()
    began = time.perf_counter()
    for step in range(start, settings.steps):
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        if step + 1 in settings.levels:
            seconds = spent + time.perf_counter() - began
            saving = time.perf_counter()
            model.eval()
            save_level(settings.levels.index(step + 1) + 1, step + 1)
            model.train()
            began += time.perf_counter() - saving  # saving and probing are not training time
            _save_state(state_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "schedule": schedule.state_dict(), "step": step + 1, "seconds": seconds,
                                     "loss": loss_value})
    seconds = spent + time.perf_counter() - began
    return LoopResult(settings.steps, seconds, loss_value)


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-save leaves the previous state, never half of one
