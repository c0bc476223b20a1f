"""Image processing: square vs aspect-preserving resize, splitting into crops, visual tokens of every setting."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.data.images import AspectPreserving, ImageSplitting, SquareResize
from vlmlab.data.tokenizer import synthetic_tokenizer
from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, check_model_config
from vlmlab.train.module import VLMTrainingModule


def test_square_resize_and_splitting_views():
    split = SquareResize(size=16, splitting=ImageSplitting(grid=2, train=False, eval=True))
    pixels = split.to_uint8(Image.new("RGB", (64, 48), (255, 0, 0)))
    assert pixels.shape == (3, 32, 32), "cached large enough for the 2x2 crops (and no larger than the source)"
    train, evaluation = split.views(pixels, training=True), split.views(pixels, training=False)
    assert [tuple(v.shape) for v in train] == [(3, 16, 16)]
    assert [tuple(v.shape) for v in evaluation] == [(3, 16, 16)] * 5
    ramp = torch.arange(32).repeat(3, 32, 1).to(torch.uint8)  # pixel value = column index
    crops = split.views(ramp, training=False)
    assert crops[0][0, 0, 0] < crops[1][0, 0, 0], "crops go left to right, top to bottom, then the whole image"
    assert split.view_shapes(32, 32, training=False) == [(16, 16)] * 5


def test_aspect_preserving_keeps_the_shape_on_the_patch_grid():
    aspect = AspectPreserving(max_side=64, multiple=8)
    assert aspect.target_size(200, 100) == (64, 32)
    assert aspect.target_size(100, 300) == (24, 64)
    assert aspect.target_size(10, 500) == (8, 64), "never below one patch"
    assert aspect.to_uint8(Image.new("RGB", (200, 100))).shape == (3, 32, 64)


@pytest.mark.parametrize(
    ("connector", "processor", "train_tokens", "eval_tokens"),
    [
        ("perceiver", SquareResize(size=32, splitting=ImageSplitting(grid=2, eval=True)), 64, 320),  # Idefics2's 64 vs 320
        ("linear", SquareResize(size=32), 16, 16),
        ("pixel_shuffle", SquareResize(size=32, splitting=ImageSplitting(grid=2, train=True, eval=True)), 20, 20),
        ("linear", AspectPreserving(max_side=64, multiple=8), 32, 32),  # a 2:1 image: 4x8 patches
        ("avg_pool", AspectPreserving(max_side=64, multiple=16), 8, 8),
    ],
)
def test_visual_tokens_for_every_processing_setting(make_cfg, connector, processor, train_tokens, eval_tokens):
    model = check_model_config(make_cfg(f"model/connector={connector}").model, processor.tower_size)
    pixels = processor.to_uint8(Image.new("RGB", (128, 64)))
    h, w = pixels.shape[-2:]
    assert model.visual_tokens(processor.view_shapes(h, w, training=True)) == train_tokens
    assert model.visual_tokens(processor.view_shapes(h, w, training=False)) == eval_tokens


def test_an_aspect_preserving_batch_of_different_shapes_trains(make_cfg, tmp_path):
    cfg = make_cfg("data/image=aspect", "data.image.max_side=32")
    tokenizer = synthetic_tokenizer(["question: what word is written? answer:", " cat", " dog"], tmp_path)
    torch.manual_seed(0)
    model = build_vlm(cfg.model, len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"), 32)
    images = AspectPreserving(max_side=32, multiple=8)
    examples = [Example(images.to_uint8(Image.new("RGB", size, color)), "text", "what word is written?", word)
                for size, color, word in [((64, 32), (200, 0, 0), "cat"), ((32, 64), (0, 200, 0), "dog"),
                                          ((40, 40), (0, 0, 200), "cat")]]
    collator = VLMCollator(tokenizer, images, model.sequence_tokens, "question: {prompt} answer:")
    batch = collator.train_batch(examples)
    assert isinstance(batch["pixel_values"], list), "different shapes cannot be stacked"
    assert [(batch["input_ids"][i] == collator.image_token_id).sum().item() for i in range(3)] == [8, 8, 16]
    module = VLMTrainingModule(model, cfg.optim, total_steps=5)
    optimizer = module.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(5):
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


class _FixedTower:
    """A stand-in for a tower that cannot interpolate its position embeddings."""

    any_resolution, patch_size, encoder = False, 8, object()

    def grid(self, height, width):
        return height // 8, width // 8


def test_impossible_processing_settings_are_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"data\.image\._target_.*interpolate"):
        AspectPreserving(max_side=64, multiple=8).check(_FixedTower(), 64)
    with pytest.raises(ConfigError, match=r"data\.image\.splitting\.grid.*data\.suite\.canvas"):
        SquareResize(size=64, splitting=ImageSplitting(grid=2, eval=True)).check(_FixedTower(), 64)
    with pytest.raises(ConfigError, match=r"data\.image\.multiple"):
        AspectPreserving(max_side=64, multiple=12).check(type("T", (_FixedTower,), {"any_resolution": True})(), 64)


def test_evaluation_splitting_does_not_change_what_training_sees():
    image = Image.effect_noise((64, 64), 60).convert("RGB")
    plain = SquareResize(size=16, splitting=ImageSplitting(grid=2))
    split_eval = SquareResize(size=16, splitting=ImageSplitting(grid=2, eval=True))
    a, b = plain.to_uint8(image), split_eval.to_uint8(image)
    assert torch.equal(a, b)
    assert torch.equal(plain.views(a, training=True)[0], split_eval.views(b, training=True)[0])
    assert len(split_eval.views(b, training=False)) == 5
