"""The model parts: connectors' token counts and shapes, bad values refused, placeholder splicing, generation."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, check_model_config
from vlmlab.models.connectors import LinearProjector, MLPProjector, PerceiverResampler, PixelShuffleProjector

IMAGE_TOKEN_ID = 5


@pytest.mark.parametrize(
    ("connector", "patches", "tokens"),
    [
        (LinearProjector(32, 48), 64, 64),
        (MLPProjector(32, 48), 64, 64),
        (PerceiverResampler(32, 48, num_latents=7, depth=2, heads=4), 64, 7),
        (PixelShuffleProjector(32, 48, factor=2), 64, 16),
        (PixelShuffleProjector(32, 48, factor=4), 64, 4),
    ],
)
def test_connector_output_matches_its_token_count(connector, patches, tokens):
    out = connector(torch.randn(3, patches, 32))
    assert connector.num_tokens(patches) == tokens
    assert out.shape == (3, tokens, 48)


def test_pixel_shuffle_keeps_each_block_together():
    shuffle = PixelShuffleProjector(1, 4, factor=2)
    with torch.no_grad():
        shuffle.proj.weight.copy_(torch.eye(4))
        shuffle.proj.bias.zero_()
    grid = torch.arange(16.0).view(1, 16, 1)  # a 4x4 grid of patch ids
    out = shuffle(grid)
    # The top-left token holds patches (0,0),(0,1),(1,0),(1,1) = ids 0,1,4,5.
    assert out[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert out[0, 3].tolist() == [10.0, 11.0, 14.0, 15.0]


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: PerceiverResampler(32, 48, num_latents=0), "num_latents"),
        (lambda: PerceiverResampler(32, 48, heads=5), "heads"),
        (lambda: PixelShuffleProjector(32, 48, factor=0), "factor"),
        (lambda: PixelShuffleProjector(32, 48, factor=3).num_tokens(64), "factor"),
    ],
)
def test_impossible_connector_values_are_refused_naming_the_key(make, key):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.key == key


def test_model_config_errors_name_the_full_key(make_cfg):
    cfg = make_cfg("model/connector=perceiver", "model.connector.num_latents=0")
    with pytest.raises(ConfigError, match=r"model\.connector\.num_latents"):
        check_model_config(cfg.model, cfg.data.image.size)
    cfg = make_cfg("data.image.size=60")
    with pytest.raises(ConfigError, match=r"^data\.image\.size: 60 .*patch size 8"):
        check_model_config(cfg.model, cfg.data.image.size)


def test_meta_check_reports_size_without_allocating(make_cfg):
    cfg = make_cfg("model/connector=pixel_shuffle")
    figures = check_model_config(cfg.model, cfg.data.image.size)
    assert figures["visual_tokens_per_image"] == 16  # 64 px / patch 8 = 8x8 patches, shuffled by 2
    assert 0.5e6 < figures["params_total"] < 2e6


@pytest.fixture
def tiny_vlm(make_cfg):
    torch.manual_seed(0)
    cfg = make_cfg("data.image.size=32")
    return build_vlm(cfg.model, vocab_size=40, image_token_id=IMAGE_TOKEN_ID, image_size=32)


def test_visual_tokens_replace_exactly_the_placeholders(tiny_vlm):
    n = tiny_vlm.visual_tokens_per_image
    ids = torch.tensor([[1] + [IMAGE_TOKEN_ID] * n + [7, 8, 9]])
    pixels = torch.randn(1, 3, 32, 32)
    embeds = tiny_vlm.embed(ids, pixels)
    visual = tiny_vlm.connector(tiny_vlm.vision(pixels))
    table = tiny_vlm.lm.embed_tokens().weight
    torch.testing.assert_close(embeds[0, 1 : 1 + n], visual[0])
    torch.testing.assert_close(embeds[0, 0], table[1])
    torch.testing.assert_close(embeds[0, -3:], table[[7, 8, 9]])


def test_placeholder_count_mismatch_is_an_error(tiny_vlm):
    ids = torch.tensor([[1, IMAGE_TOKEN_ID, 7]])
    with pytest.raises(ValueError, match="placeholder"):
        tiny_vlm.embed(ids, torch.randn(1, 3, 32, 32))


def test_batched_left_padded_generation_equals_one_by_one(tiny_vlm):
    n = tiny_vlm.visual_tokens_per_image
    prompts = [[1] + [IMAGE_TOKEN_ID] * n + [7, 8], [1] + [IMAGE_TOKEN_ID] * n + [9, 10, 11, 12]]
    pixels = torch.randn(2, 3, 32, 32)
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    tiny_vlm.eval()
    batched = tiny_vlm.generate(ids, mask, pixels, max_new_tokens=6, eos_token_id=2, pad_token_id=0)
    for i, p in enumerate(prompts):
        single = tiny_vlm.generate(torch.tensor([p]), torch.ones(1, len(p), dtype=torch.long), pixels[i : i + 1],
                                   max_new_tokens=6, eos_token_id=2, pad_token_id=0)
        length = single.shape[1]
        assert batched[i, :length].tolist() == single[0].tolist()


def test_every_connector_preset_builds(make_cfg):
    for name in ("linear", "mlp", "perceiver", "pixel_shuffle"):
        cfg = make_cfg(f"model/connector={name}")
        model = build_vlm(cfg.model, vocab_size=40, image_token_id=IMAGE_TOKEN_ID, image_size=cfg.data.image.size)
        assert model.visual_tokens_per_image == check_model_config(cfg.model, cfg.data.image.size)["visual_tokens_per_image"]
        assert OmegaConf.select(cfg, "model.connector._target_").endswith(type(model.connector).__name__)
