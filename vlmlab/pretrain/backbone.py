"""What every zoo recipe is: a named backbone, trained by the shared loop, saved at each quality level."""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from transformers import PreTrainedTokenizerBase

from vlmlab.models.zoo import QUALITY_FILE
from vlmlab.pretrain.loop import LoopResult, LoopSettings


@dataclass(frozen=True)
class Built:
    """A finished pretraining run: each level's quality (level 1.. in order) and the loop's cost."""

    qualities: list[dict[str, Any]]  # {"step": ..., "metric": ..., "value": ..., and the metric's parts}
    loop: LoopResult
    params: int


@dataclass
class Pretraining(ABC):
    """One zoo backbone's recipe (conf/zoo/<name>.yaml), runnable: its name, and how the shared loop trains it
    (each kind of backbone adds its architecture and data)."""

    name: str
    steps: int
    levels: list[int]  # the steps after which quality levels 1, 2, ... are saved
    batch_size: int
    lr: float
    warmup: int
    weight_decay: float
    seed: int

    metric: ClassVar[str]  # its quality score's name
    higher_is_better: ClassVar[bool]

    def loop_settings(self) -> LoopSettings:
        """The shared loop's settings of this recipe."""
        return LoopSettings(self.steps, tuple(int(s) for s in self.levels), self.batch_size, self.lr, self.warmup,
                            self.weight_decay, self.seed)

    @abstractmethod
    def run(self, work_dir: Path, level_dir: Any, tokenizer: PreTrainedTokenizerBase) -> Built:
        """Pretrain into `level_dir(level)` directories, keeping resumable state in `work_dir`."""


def save_level(target: Path, write: Any, quality: dict[str, Any]) -> None:
    """Write one level atomically: `write(directory)` saves the weights, then the quality file, then the rename
    (a level directory with its quality file is complete; vlmlab.models.zoo looks for that file)."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    (tmp / QUALITY_FILE).write_text(json.dumps(quality, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
