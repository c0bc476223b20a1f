"""AnyRes dynamic image splitting: the grid each image gets, the tile cap, views against view_shapes, the visual
tokens recorded per image, bad settings refused, a tiny run, and an ablation arm that selects it."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from vlmlab.cli import main
from vlmlab.data.anyres import AnyRes
from vlmlab.data.collate import Example, VLMCollator
from vlmlab.data.tokenizer import synthetic_tokenizer
from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, instantiate_group
from vlmlab.sweep.ablation import load_ablation
from vlmlab.sweep.plan import plan_sweep
from vlmlab.train.sample_cost import mean_image_tokens

from .conftest import ROOT


@pytest.mark.parametrize(
    ("height", "width", "grid"),
    [
        (128, 128, (2, 2)),  # square at the 2x2 canvas: every pixel kept, nothing padded
        (100, 100, (2, 2)),  # 2x2 keeps all 10,000 px (1x1 only 64x64 = 4,096): more pixels beat less padding
        (40, 40, (1, 1)),    # small: every grid keeps all 1,600 px, 1x1 pads least
        (64, 128, (1, 2)),   # 2:1 wide: exactly two tiles
        (128, 64, (2, 1)),   # 1:2 tall
        (100, 300, (1, 3)),  # 3:1: 1x3 and 1x4 both keep 64x192, 1x3 pads nothing; 2x2 keeps only 43x128
        (300, 100, (3, 1)),
        (64, 256, (1, 4)),   # 4:1: exactly four tiles
        (512, 512, (2, 2)),  # large square: the biggest square canvas allowed
    ],
)
def test_the_grid_follows_the_images_shape_and_resolution(height, width, grid):
    anyres = AnyRes(size=64, max_tiles=4)
    assert anyres.grid_for(height, width) == grid
    cached_w, cached_h = anyres.target_size(width, height)
    assert anyres.grid_for(cached_h, cached_w) == grid, "the cached copy is cut as the source would be"
    assert cached_h * cached_w <= min(height * width, grid[0] * grid[1] * 64**2), "never cached upscaled"


def test_a_configured_grid_list_and_the_tile_cap_are_respected():
    assert AnyRes(max_tiles=4).candidates() == ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1))
    listed = AnyRes(size=64, max_tiles=4, grids=[[1, 2], [2, 1]])
    assert listed.grid_for(128, 128) == (1, 2), "a tie (same pixels kept, same padding) goes to the first listed"
    assert listed.grid_for(40, 200) == (1, 2) and listed.grid_for(200, 40) == (2, 1)
    capped = AnyRes(size=32, max_tiles=2)
    assert AnyRes(size=32, max_tiles=4).grid_for(128, 128) == (2, 2)
    assert capped.grid_for(128, 128) == (1, 1), "no 2x2 under max_tiles=2; 1x2 keeps no more pixels than 1x1"
    for height in range(16, 400, 23):
        for width in range(16, 400, 23):
            rows, cols = capped.grid_for(height, width)
            assert rows * cols <= 2
            assert len(capped.view_shapes(height, width, training=True)) == rows * cols + 1 <= 3


@pytest.mark.parametrize("size", [(128, 128), (256, 64), (300, 100), (100, 300), (40, 40), (97, 61)])
def test_view_shapes_agree_with_the_views_produced(size):
    anyres = AnyRes(size=32, max_tiles=4, eval=False)
    pixels = anyres.to_uint8(Image.effect_noise(size, 60).convert("RGB"))
    height, width = pixels.shape[-2:]
    for training in (True, False):
        views = anyres.views(pixels, training)
        assert [tuple(v.shape) for v in views] == [(3, *s) for s in anyres.view_shapes(height, width, training)]
    rows, cols = anyres.grid_for(height, width)
    assert len(anyres.views(pixels, training=True)) == rows * cols + 1
    assert len(anyres.views(pixels, training=False)) == 1, "eval=false: the global view alone"


def test_the_image_is_fitted_centred_and_padded_then_cut_into_tiles():
    anyres = AnyRes(size=32, max_tiles=4, grids=[[2, 2]])
    red = anyres.to_uint8(Image.new("RGB", (64, 32), (255, 0, 0)))  # 2:1 in a square 2x2 canvas
    *tiles, whole = anyres.views(red, training=True)
    assert len(tiles) == 4
    top_left, bottom_left = tiles[0], tiles[2]
    assert torch.all(top_left[:, :16] == 0), "the upper 16 rows are padding (the normalisation's zero)"
    torch.testing.assert_close(top_left[:, 16:], bottom_left[:, :16])  # the image straddles the middle
    assert torch.allclose(top_left[0, 16:], torch.tensor(1.0)) and torch.allclose(top_left[1, 16:], torch.tensor(-1.0))
    assert torch.allclose(whole[0], torch.tensor(1.0)), "the global view is the whole image, unpadded"


def test_visual_tokens_recorded_for_images_of_different_shapes(make_cfg, tmp_path):
    cfg = make_cfg("data/image=anyres", "data.image.size=32")
    tokenizer = synthetic_tokenizer(["question: what word is written? answer:", " cat", " dog"], tmp_path)
    torch.manual_seed(0)
    model = build_vlm(cfg.model, len(tokenizer), tokenizer.convert_tokens_to_ids("<image>"), 32)
    images = instantiate_group("data.image", cfg.data.image, _convert_="all")
    assert model.visual_tokens([(32, 32)]) == 16  # one 32 px view: 4x4 patches through the MLP connector
    # (width, height) -> grid: 64x64 2x2, 64x32 1x2, 32x96 3x1, 20x20 1x1: 5, 3, 4 and 2 views of 16 tokens.
    examples = [Example(images.to_uint8(Image.new("RGB", size, (200, 0, 0))), "text", "what word is written?", "cat")
                for size in [(64, 64), (64, 32), (32, 96), (20, 20)]]
    assert mean_image_tokens(model.visual_tokens, images, examples, training=True) == (80 + 48 + 64 + 32) / 4
    assert mean_image_tokens(model.visual_tokens, images, examples, training=False) == 56, "eval splits too"
    unsplit_eval = AnyRes(size=32, eval=False)
    assert mean_image_tokens(model.visual_tokens, unsplit_eval, examples, training=False) == 16
    collator = VLMCollator(tokenizer, images, model.sequence_tokens, "question: {prompt} answer:")
    batch = collator.train_batch(examples)
    assert batch["views_per_image"] == [[5], [3], [4], [2]]
    assert [(row == collator.image_token_id).sum().item() for row in batch["input_ids"]] == [80, 48, 64, 32]
    assert torch.isfinite(model(**batch).loss)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.image.grids=[]"], r"data\.image\.grids: is empty"),
        (["data.image.max_tiles=0"], r"data\.image\.max_tiles: must be a positive integer, got 0"),
        (["data.image.grids=[[1,2],[2,3]]"],
         r"data\.image\.grids: 2x3 has 6 tiles, more than data\.image\.max_tiles=4"),
        (["data.image.grids=[[1,0]]"], r"data\.image\.grids: \[1, 0\] is not \[rows, cols\]"),
        (["data.image.size=0"], r"data\.image\.size: must be a positive integer"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(make_cfg, overrides, expected):
    cfg = make_cfg("data/image=anyres", *overrides)
    with pytest.raises(ConfigError, match=expected):
        instantiate_group("data.image", cfg.data.image, _convert_="all")


def test_an_ablation_arm_selects_anyres(make_cfg, tmp_path):
    """The shipped aspect-ratio and image-splitting ablations, each with an extra `data/image=anyres` arm, plan."""
    for axis, arm in (("aspect_ratio", ["data/image=anyres", "data.image.size=64"]),
                      ("image_splitting", ["data/image=anyres"])):
        spec = yaml.safe_load((ROOT / "ablations" / f"{axis}.yaml").read_text())
        spec["arms"]["anyres"] = arm
        spec["seeds"] = [0]
        (tmp_path / f"{axis}.yaml").write_text(yaml.safe_dump(spec))
        jobs = plan_sweep(load_ablation(tmp_path, axis), lambda overrides: make_cfg(*overrides))
        [anyres] = [job for job in jobs if job.run.arm == "anyres"]
        assert anyres.config.data.image._target_ == "vlmlab.data.anyres.AnyRes"
        assert anyres.config.data.image.size == (64 if axis == "aspect_ratio" else 32)  # the file's common size


@pytest.mark.slow  # a short run through the CLI: `make test` keeps within its 10 minutes
def test_a_tiny_run_trains_and_evaluates_with_anyres(cache_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    try:
        assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", "data/image=anyres", "data.image.size=32",
                     "trainer.max_steps=3", "data.batch_size=2", "eval.limit_per_task=2", "eval.max_new_tokens=2",
                     "data.suite.train_images=40", "ablation.name=toy", "ablation.arm=anyres"]) == 0
    finally:
        GlobalHydra.instance().clear()
    (path,) = (tmp_path / "results" / "runs" / "toy" / "anyres").glob("*[0-9a-f].json")
    record = json.loads(path.read_text())
    assert record["status"] == "done", record.get("error")
    assert record["cost"]["train_steps"] == 3
    # 16 tokens a 32 px view; a 128 px suite image gets 2 to 4 tiles plus the whole image: 48 to 80 tokens
    for key in ("visual_tokens_per_image", "visual_tokens_per_image_eval"):
        assert 48 <= record["cost"][key] <= 80, (key, record["cost"][key])
    assert record["metrics"], "evaluated"
