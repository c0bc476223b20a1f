"""The training order of a run: a seeded draw per epoch that restarts mid-epoch where a checkpoint left it.

Epoch e's order depends only on the run's seed and e: it is the e-th draw of one generator seeded with the
seed, replayed from the start whenever it is needed. A run resumed in the middle of epoch e therefore sees
the very indices that a run which never stopped saw, from the next unseen batch on.

The draws are the ones torch's own samplers made, in the same order, so runs recorded before this sampler
existed (a shuffling DataLoader, or a WeightedRandomSampler for a mixture) are reproduced exactly:
- uniform: per epoch, the DataLoader's iterator drew its base seed (one int64) from the shared generator,
  then RandomSampler drew a permutation, and a second, empty-sliced permutation when the epoch ran out;
- weighted: per epoch, one multinomial draw with replacement of as many samples as there are examples.

Several processes (DDP, FSDP) share one order: the epoch's order is cut into micro-batch chunks, and process r
of W takes chunks r, r + W, r + 2W, ... So the samples behind optimizer step s are positions [s·G, (s+1)·G)
of the order whatever W is (G, the global batch, is W × micro-batch × accumulation), and the run with the
same global batch on one device or eight trains on the same samples at every step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Indices of one epoch at a time (`set_epoch`, called by Lightning before each), resumable mid-epoch."""

    def __init__(self, size: int, seed: int, weights: Sequence[float] | None = None, chunk: int = 1) -> None:
        if size <= 0:
            raise ValueError("nothing to sample from: the training set is empty")
        if weights is not None and len(weights) != size:
            raise ValueError(f"{len(weights)} weights for {size} examples")
        self.size = size
        self.seed = int(seed)
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.epoch = 0
        self.chunk = int(chunk)  # the micro-batch: the unit the processes take turns on
        self.rank, self.world_size = 0, 1
        self._resume: tuple[int, int] | None = None  # (epoch, samples of the global order already consumed)

    def shard(self, rank: int, world_size: int) -> None:
        """Make this the sampler of process `rank` of `world_size` (module docstring)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not one of {world_size} processes")
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        return self._own(torch.arange(self.size)).numel()

    def _own(self, order: torch.Tensor) -> torch.Tensor:
        """This process's share of `order`: its chunks, whole ones only (a step needs every process's)."""
        if self.world_size == 1:
            return order
        span = self.chunk * self.world_size
        whole = order[: order.numel() // span * span]
        return whole.view(-1, self.world_size, self.chunk)[:, self.rank].reshape(-1)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration draws."""
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, consumed: int) -> None:
        """Make the iteration of `epoch` skip the first `consumed` samples (those trained on before a stop)."""
        if consumed < 0:
            raise ValueError(f"consumed must be >= 0, got {consumed}")
        self._resume = (int(epoch), int(consumed))

    def state_dict(self, consumed: int) -> dict[str, Any]:
        """The position of a run whose processes have trained on `consumed` samples of the current epoch's order,
        all processes together."""
        return {"epoch": self.epoch, "consumed": int(consumed), "seed": self.seed, "size": self.size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the position `state_dict` gave; a position of another dataset or seed is refused."""
        if (state["seed"], state["size"]) != (self.seed, self.size):
            raise ValueError(f"the checkpoint's data position is for seed {state['seed']} over {state['size']} "
                             f"examples; this run has seed {self.seed} over {self.size}")
        self.resume_at(state["epoch"], state["consumed"])

    def order(self, epoch: int) -> torch.Tensor:
        """Every index of `epoch`, in training order."""
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(epoch):
            self._draw(generator)
        return self._draw(generator)

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's draw, consuming `generator` exactly as torch's samplers did (module docstring)."""
        if self.weights is not None:
            return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader iterator's base seed
        order = torch.randperm(self.size, generator=generator)
        torch.randperm(self.size, generator=generator)  # RandomSampler's tail draw (an empty slice)
        return order

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._resume is not None:
            epoch, consumed = self._resume
            self._resume = None
            # A resume lands in the epoch it was saved in; had that epoch been used up, Lightning moves on.
            skip = consumed if epoch == self.epoch else 0
        yield from self._own(self.order(self.epoch)[skip:]).tolist()
