"""The model parts: connectors' token counts and shapes, bad values refused, visual tokens fused at placeholders."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, check_model_config, count_parameters
from vlmlab.models.connectors import (
    AveragePoolProjector, LinearProjector, MLPProjector, PerceiverResampler, PixelShuffleProjector,
)

IMAGE_TOKEN_ID = 5
CONNECTORS = ("linear", "mlp", "perceiver", "pixel_shuffle", "avg_pool", "ldp", "ldpv2")


@pytest.mark.parametrize(
    ("connector", "grid", "tokens"),
    [
        (LinearProjector(32, 48), (8, 8), 64),
        (MLPProjector(32, 48), (4, 6), 24),
        (PerceiverResampler(32, 48, num_latents=7, depth=2, heads=4), (8, 8), 7),
        (PerceiverResampler(32, 48, num_latents=7, mlp_projection=True), (2, 6), 7),
        (PixelShuffleProjector(32, 48, factor=2), (8, 8), 16),
        (PixelShuffleProjector(32, 48, factor=2), (4, 8), 8),
        (AveragePoolProjector(32, 48, factor=4), (8, 8), 4),
    ],
)
def test_connector_output_matches_its_token_count(connector, grid, tokens):
    out = connector(torch.randn(3, grid[0] * grid[1], 32), grid)
    assert connector.num_tokens(grid) == tokens
    assert out.shape == (3, tokens, 48)


def test_perceiver_mlp_projection_is_an_mlp():
    assert isinstance(PerceiverResampler(8, 16, mlp_projection=True).proj, torch.nn.Sequential)
    assert isinstance(PerceiverResampler(8, 16).proj, torch.nn.Linear)


def test_pixel_shuffle_keeps_each_block_together():
    shuffle = PixelShuffleProjector(1, 4, factor=2)
    with torch.no_grad():
        shuffle.proj.weight.copy_(torch.eye(4))
        shuffle.proj.bias.zero_()
    grid = torch.arange(16.0).view(1, 16, 1)  # a 4x4 grid of patch ids
    out = shuffle(grid, (4, 4))
    # The top-left token holds patches (0,0),(0,1),(1,0),(1,1) = ids 0,1,4,5.
    assert out[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert out[0, 3].tolist() == [10.0, 11.0, 14.0, 15.0]


def test_average_pool_averages_each_block():
    pool = AveragePoolProjector(1, 1, factor=2)
    with torch.no_grad():
        pool.proj.weight.fill_(1.0)
        pool.proj.bias.zero_()
    out = pool(torch.arange(16.0).view(1, 16, 1), (4, 4))
    assert out[0, :, 0].tolist() == [2.5, 4.5, 10.5, 12.5]


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: PerceiverResampler(32, 48, num_latents=0), "num_latents"),
        (lambda: PerceiverResampler(32, 48, heads=5), "heads"),
        (lambda: PixelShuffleProjector(32, 48, factor=0), "factor"),
        (lambda: PixelShuffleProjector(32, 48, factor=3).num_tokens((8, 8)), "factor"),
        (lambda: AveragePoolProjector(32, 48, factor=3).num_tokens((6, 8)), "factor"),
    ],
)
def test_impossible_connector_values_are_refused_naming_the_key(make, key):
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.key == key


def test_model_config_errors_name_the_full_key(make_cfg):
    cfg = make_cfg("model/connector=perceiver", "model.connector.num_latents=0")
    with pytest.raises(ConfigError, match=r"model\.connector\.num_latents"):
        check_model_config(cfg.model, 64)
    with pytest.raises(ConfigError, match=r"^data\.image\.size: 60 .*patch size 8"):
        check_model_config(make_cfg().model, 60)


@pytest.mark.parametrize(
    ("connector", "size", "tokens"),
    [("linear", 64, 64), ("mlp", 32, 16), ("perceiver", 64, 64), ("pixel_shuffle", 64, 16), ("avg_pool", 32, 4)],
)
def test_visual_tokens_per_image_for_every_connector_and_resolution(make_cfg, connector, size, tokens):
    model = check_model_config(make_cfg(f"model/connector={connector}").model, size)
    assert model.visual_tokens_per_image == tokens
    assert next(model.parameters()).device.type == "meta"


@pytest.fixture
def tiny_vlm(make_cfg):
    torch.manual_seed(0)
    return build_vlm(make_cfg().model, vocab_size=40, image_token_id=IMAGE_TOKEN_ID, image_size=32)


def test_visual_tokens_replace_exactly_the_placeholders(tiny_vlm):
    n = tiny_vlm.visual_tokens_per_image
    ids = torch.tensor([[1] + [IMAGE_TOKEN_ID] * n + [7, 8, 9]])
    pixels = torch.randn(1, 3, 32, 32)
    visual = tiny_vlm.encode_images(pixels)
    embeds = tiny_vlm._embed(ids, visual)
    table = tiny_vlm.lm.embed_tokens().weight
    torch.testing.assert_close(embeds[0, 1 : 1 + n], tiny_vlm.connector(tiny_vlm.vision(pixels), (4, 4))[0])
    torch.testing.assert_close(embeds[0, 0], table[1])
    torch.testing.assert_close(embeds[0, -3:], table[[7, 8, 9]])


def test_views_of_different_shapes_are_encoded_per_sample_in_order(tiny_vlm):
    a, b, c = torch.randn(3, 32, 32), torch.randn(3, 16, 32), torch.randn(3, 32, 32)
    visual = tiny_vlm.encode_images([[a, b], [c]])
    alone = [tiny_vlm.encode_images([[v]])[0] for v in (a, b, c)]
    assert [v.shape[0] for v in visual] == [16 + 8, 16]
    torch.testing.assert_close(visual[0], torch.cat(alone[:2]))
    torch.testing.assert_close(visual[1], alone[2])


def test_placeholder_count_mismatch_is_an_error(tiny_vlm):
    with pytest.raises(ValueError, match="placeholder"):
        tiny_vlm(torch.tensor([[1, IMAGE_TOKEN_ID, 7]]), torch.ones(1, 3), torch.randn(1, 3, 32, 32))


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
        assert batched[i, : single.shape[1]].tolist() == single[0].tolist()


@pytest.mark.parametrize("vision", ["tiny_siglip", "tiny_clip", "tiny_dinov2"])
@pytest.mark.parametrize("lm", ["tiny_llama", "tiny_mistral", "tiny_qwen2"])
def test_every_backbone_preset_builds_and_runs(make_cfg, vision, lm):
    model = build_vlm(make_cfg(f"model/vision={vision}", f"model/lm={lm}").model, 40, IMAGE_TOKEN_ID, 32)
    n = model.visual_tokens_per_image
    assert n == 16, "CLS/register tokens must not reach the connector"
    out = model(torch.tensor([[1] + [IMAGE_TOKEN_ID] * n + [7]]), torch.ones(1, n + 2, dtype=torch.long),
                torch.randn(1, 3, 32, 32), labels=torch.tensor([[-100] * (n + 1) + [7]]))
    assert torch.isfinite(out.loss)


def test_every_connector_preset_builds(make_cfg):
    for name in CONNECTORS:
        model = build_vlm(make_cfg(f"model/connector={name}").model, 40, IMAGE_TOKEN_ID, 64)
        assert OmegaConf.select(make_cfg(f"model/connector={name}"), "model.connector._target_").endswith(
            type(model.connector).__name__)


def test_parameter_counts_per_component_follow_the_adaptation(make_cfg):
    full = count_parameters(build_vlm(make_cfg().model, 40, IMAGE_TOKEN_ID, 32))
    frozen_cfg = make_cfg("model/adapt@model.adapt.vision=frozen", "model/adapt@model.adapt.lm=frozen")
    frozen = count_parameters(build_vlm(frozen_cfg.model, 40, IMAGE_TOKEN_ID, 32))
    lora = count_parameters(build_vlm(make_cfg("model/adapt@model.adapt.lm=lora").model, 40, IMAGE_TOKEN_ID, 32))
    by = frozen["params_by_component"]
    assert full["params_trainable"] == full["params_total"]
    assert by["vision"]["trainable"] == by["lm"]["trainable"] == 0
    assert frozen["params_trainable"] == by["connector"]["total"], "new modules always train"
    assert 0 < lora["params_by_component"]["lm"]["trainable"] < lora["params_by_component"]["lm"]["total"]
