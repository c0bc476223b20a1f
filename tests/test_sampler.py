"""The resumable training order: the draws of the samplers it replaced, epoch by epoch, and a mid-epoch restart."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from vlmlab.train.sampler import ResumableSampler

SIZE, BATCH, EPOCHS, SEED = 37, 4, 3, 5


def old_loader_order(weights: list[float] | None) -> list[list[int]]:
    """Each epoch's indices as vlmlab's loaders drew them before ResumableSampler (drop_last batches)."""
    generator = torch.Generator().manual_seed(SEED)
    data = list(range(SIZE))
    if weights is None:
        loader = DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=True, generator=generator)
    else:
        sampler = WeightedRandomSampler(weights, num_samples=SIZE, replacement=True, generator=generator)
        loader = DataLoader(data, batch_size=BATCH, sampler=sampler, drop_last=True)
    return [[i for batch in loader for i in batch.tolist()] for _ in range(EPOCHS)]


def new_loader_order(sampler: ResumableSampler) -> list[list[int]]:
    loader = DataLoader(list(range(SIZE)), batch_size=BATCH, sampler=sampler, drop_last=True)
    epochs = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)  # what Lightning does before each epoch
        epochs.append([i for batch in loader for i in batch.tolist()])
    return epochs


@pytest.mark.parametrize("weights", [None, [1.0 + (i % 3) for i in range(SIZE)]], ids=["uniform", "mixture"])
def test_the_same_order_as_the_loaders_it_replaced(weights):
    old = old_loader_order(weights)
    assert new_loader_order(ResumableSampler(SIZE, SEED, weights)) == old
    assert old[0] != old[1], "each epoch draws anew"


def test_a_resume_mid_epoch_continues_the_epoch_then_draws_the_next():
    sampler = ResumableSampler(SIZE, SEED)
    full = [sampler.order(epoch).tolist() for epoch in range(2)]
    state = sampler.state_dict(consumed=12) | {"epoch": 1}
    resumed = ResumableSampler(SIZE, SEED)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert list(resumed) == full[1][12:], "the rest of the epoch the checkpoint was saved in"
    assert list(resumed) == full[1], "then whole epochs again"
    moved_on = ResumableSampler(SIZE, SEED)
    moved_on.load_state_dict(state)
    moved_on.set_epoch(2)  # that epoch had ended: Lightning starts the next one
    assert list(moved_on) == moved_on.order(2).tolist()


def test_a_position_of_another_run_is_refused():
    with pytest.raises(ValueError, match="seed 5 over 37 examples; this run has seed 6 over 37"):
        ResumableSampler(SIZE, SEED + 1).load_state_dict(ResumableSampler(SIZE, SEED).state_dict(consumed=4))
