"""The zoo's training loop: levels saved at their steps, and a resumed run exactly an uninterrupted one."""

from __future__ import annotations

import pytest
import torch

from vlmlab.pretrain.loop import LoopSettings, train

SETTINGS = LoopSettings(steps=6, levels=(2, 4, 6), batch_size=4, lr=1e-2, warmup=1, weight_decay=0.0, seed=0)
DATA = torch.randn(32, 5, generator=torch.Generator().manual_seed(0))


def _model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(5, 1)


def _loss(model: torch.nn.Module, fail_at: int | None = None):
    def loss_at(step: int) -> torch.Tensor:
        if step == fail_at:
            raise KeyboardInterrupt  # a kill between two saved levels
        batch = DATA[torch.from_numpy(SETTINGS.batch(step, len(DATA)))]
        return model(batch).square().mean()
    return loss_at


def test_levels_are_saved_at_their_steps_and_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
    saved: list[tuple[int, int]] = []
    whole = _model()
    result = train(whole, _loss(whole), SETTINGS, tmp_path / "a", lambda level, step: saved.append((level, step)))
    assert saved == [(1, 2), (2, 4), (3, 6)] and result.steps == 6

    (tmp_path / "b").mkdir()
    first = _model()
    with pytest.raises(KeyboardInterrupt):
        train(first, _loss(first, fail_at=3), SETTINGS, tmp_path / "b", lambda level, step: None)
    again, resumed_levels = _model(), []
    train(again, _loss(again), SETTINGS, tmp_path / "b", lambda level, step: resumed_levels.append(level))
    assert resumed_levels == [2, 3]  # level 1 was saved before the kill; the state resumes after it
    for a, b in zip(whole.parameters(), again.parameters()):
        assert torch.equal(a, b)


def test_each_step_draws_its_batch_from_its_seed_and_step_alone():
    assert (SETTINGS.batch(3, 32) == SETTINGS.batch(3, 32)).all()
    assert not (SETTINGS.batch(3, 32) == SETTINGS.batch(4, 32)).all()


@pytest.mark.parametrize("levels", [(), (3, 2, 6), (2, 5), (0, 6)])
def test_levels_must_rise_to_the_last_step(levels):
    with pytest.raises(ValueError, match="levels must be increasing"):
        LoopSettings(steps=6, levels=levels, batch_size=4, lr=1e-2, warmup=1, weight_decay=0.0, seed=0)
