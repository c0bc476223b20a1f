"""The LightningDataModule: the training samples (decoded in memory, or read from Arrow files by the loader's
workers), a seeded resumable training order, and the VLM collator."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from vlmlab.data.arrow_samples import Samples
from vlmlab.data.collate import Sample, VLMCollator
from vlmlab.train.sampler import ResumableSampler


def sampled(tasks: Sequence[str], mixture: Mapping[str, float] | None) -> tuple[list[int], list[float]]:
    """The rows training draws from (by index) and each one's sampling weight (uniform without a mixture)."""
    if not mixture:
        return list(range(len(tasks))), [1.0] * len(tasks)
    # A mixture weights tasks, not rows: each task's share of the samples is its weight's share.
    kept = [i for i, task in enumerate(tasks) if mixture.get(task, 0) > 0]
    sizes = Counter(tasks[i] for i in kept)
    return kept, [float(mixture[tasks[i]]) / sizes[tasks[i]] for i in kept]


class VLMDataModule(L.LightningDataModule):
    """Train and validation loaders over already-processed examples (built once per sweep, shared by its runs).

    Its state in a checkpoint is the training position (epoch, samples consumed), so a resumed run continues
    the data order where it stopped instead of starting the epoch again. `batch_size` is what one process runs
    at once (the micro-batch); under several processes each takes its share of one order (ResumableSampler).
    """

    def __init__(
        self, train: Samples, val: Sequence[Sample], collator: VLMCollator, batch_size: int, seed: int,
        num_workers: int = 0, mixture: Mapping[str, float] | None = None, pin_memory: bool = False,
        prefetch_factor: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be positive, got {batch_size}")
        self.mixture = {task: float(w) for task, w in mixture.items() if w > 0} if mixture else None
        # What the run counts before training (tokens, cost) reads the descriptions: for samples read from Arrow
        # files, their text and image shapes alone; the loader reads the samples themselves.
        described = train.described()
        kept, self.train_weights = sampled([sample.task for sample in described], self.mixture)
        self.train_examples = [described[i] for i in kept]
        self.train_dataset = Subset(train, kept)
        self.val_examples = val
        self.collator = collator
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory  # page-locked batches: the copy to a GPU overlaps the step
        self.prefetch_factor = prefetch_factor if num_workers else None  # torch refuses it without workers
        self._answer_tokens: torch.Tensor | None = None
        self._step_tokens: tuple[tuple[int, int], list[int]] | None = None  # ((epoch, global batch), per step)
        self.sampler = ResumableSampler(len(self.train_examples), seed,
                                        None if self.mixture is None else self.train_weights, chunk=batch_size)

    def setup(self, stage: str) -> None:
        if self.trainer is not None:  # the processes of one run share its order, each its own chunks
            self.sampler.shard(self.trainer.global_rank, self.trainer.world_size)

    def step_answer_tokens(self, epoch: int, step: int) -> int:
        """Answer tokens in the samples of optimizer step `step` of `epoch` (the global batch, every process's)."""
        global_batch = self.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches
        if self._step_tokens is None or self._step_tokens[0] != (epoch, global_batch):
            if self._answer_tokens is None:  # counted once: tokenising the answers again per step would cost
                self._answer_tokens = torch.tensor([self.collator.answer_tokens(ex) for ex in self.train_examples])
            order = self.sampler.order(epoch)
            steps = order.numel() // global_batch
            per_step = self._answer_tokens[order[: steps * global_batch]].view(steps, global_batch).sum(1)
            self._step_tokens = ((epoch, global_batch), per_step.tolist())
        return self._step_tokens[1][step]

    def _loader_options(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "prefetch_factor": self.prefetch_factor, "persistent_workers": self.num_workers > 0}

    # Each loader draws its iterators' base seed (the workers' seeds) from a generator of its own: drawn from
    # the global one, a resume (which starts an iterator mid-epoch) would shift the global stream that dropout
    # and the adapters a later stage injects draw from.
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_dataset, batch_size=self.batch_size, sampler=self.sampler, drop_last=True,
            collate_fn=self.collator.train_batch, generator=torch.Generator().manual_seed(self.sampler.seed),
            **self._loader_options(),
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_examples, batch_size=self.batch_size, collate_fn=self.collator.train_batch,
            generator=torch.Generator().manual_seed(0), **self._loader_options(),
        )

    def state_dict(self) -> dict[str, Any]:
        # What the loop has trained on, not what the loader fetched: Lightning fetches a batch ahead, and
        # workers prefetch more, so the loader's own count runs ahead of the weights.
        trained = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"sampler": self.sampler.state_dict(consumed=trained * self.batch_size * self.sampler.world_size)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "sampler" in state_dict:  # checkpoints from before the resumable order restart their epoch
            self.sampler.load_state_dict(state_dict["sampler"])
