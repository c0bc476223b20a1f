"""The LightningDataModule: in-memory examples, seeded shuffling, and the VLM collator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import lightning as L
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from vlmlab.data.collate import Example, VLMCollator


def sampled(examples: list[Example], mixture: Mapping[str, float] | None) -> tuple[list[Example], list[float]]:
    """The examples training draws from and each one's sampling weight (uniform without a mixture)."""
    if not mixture:
        return examples, [1.0] * len(examples)
    # A mixture weights tasks, not rows: each task's share of the samples is its weight's share.
    kept = [ex for ex in examples if mixture.get(ex.task, 0) > 0]
    sizes = Counter(ex.task for ex in kept)
    return kept, [float(mixture[ex.task]) / sizes[ex.task] for ex in kept]


class VLMDataModule(L.LightningDataModule):
    """Train and validation loaders over already-processed examples (built once per sweep, shared by its runs)."""

    def __init__(
        self, train: list[Example], val: list[Example], collator: VLMCollator, batch_size: int, seed: int,
        num_workers: int = 0, mixture: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.mixture = {task: float(w) for task, w in mixture.items() if w > 0} if mixture else None
        self.train_examples, self.train_weights = sampled(train, self.mixture)
        self.val_examples = val
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)  # the run's seed fixes the data order too
        if self.mixture is None:
            return DataLoader(
                self.train_examples, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=generator,
                collate_fn=self.collator.train_batch, num_workers=self.num_workers,
            )
        sampler = WeightedRandomSampler(self.train_weights, num_samples=len(self.train_weights), replacement=True,
                                        generator=generator)
        return DataLoader(
            self.train_examples, batch_size=self.batch_size, sampler=sampler, drop_last=True,
            collate_fn=self.collator.train_batch, num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_examples, batch_size=self.batch_size, collate_fn=self.collator.train_batch,
            num_workers=self.num_workers,
        )
