"""MobileVLM's LDP and LDPv2 connectors: token counts on even and odd grids, pooling, gradients, configs, FLOPs."""

from __future__ import annotations

from math import ceil

import pytest
import torch
from omegaconf import OmegaConf
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from vlmlab.errors import ConfigError
from vlmlab.models.build import build_vlm, check_model_config
from vlmlab.models.flops import training_flops
from vlmlab.models.mobile_connectors import LDPProjector, LDPv2Projector

IMAGE, BATCH, TEXT = 5, 2, 9
GRIDS = [(4, 4), (3, 5), (5, 5), (1, 1), (2, 7)]


@pytest.mark.parametrize("grid", GRIDS, ids=str)
@pytest.mark.parametrize("make", [lambda: LDPProjector(8, 16), lambda: LDPv2Projector(8, 16)], ids=["ldp", "ldpv2"])
def test_output_matches_the_token_count_on_even_and_odd_grids(make, grid):
    connector = make()
    out = connector(torch.randn(3, grid[0] * grid[1], 8), grid)
    assert connector.num_tokens(grid) == ceil(grid[0] / 2) * ceil(grid[1] / 2)
    assert out.shape == (3, connector.num_tokens(grid), 16)


def test_ldpv2_pools_each_window_over_the_patches_it_covers():
    ldpv2 = LDPv2Projector(2, 4)
    with torch.no_grad():  # no positional term: the output is the pooled MLP features
        ldpv2.peg.weight.zero_()
        ldpv2.peg.bias.zero_()
    features = torch.randn(1, 9, 2)  # a 3x3 grid: windows {0,1,3,4}, {2,5}, {6,7}, {8}
    projected = ldpv2.mlp(features)[0]
    expected = torch.stack([projected[[0, 1, 3, 4]].mean(0), projected[[2, 5]].mean(0), projected[[6, 7]].mean(0),
                            projected[8]])
    torch.testing.assert_close(ldpv2(features, (3, 3))[0], expected)


def test_ldp_downsamples_in_its_second_block_only_and_adds_a_residual_in_the_first():
    ldp = LDPProjector(4, 8)
    assert [block.depthwise.stride for block in ldp.blocks] == [(1, 1), (2, 2)]
    assert [block.depthwise.groups for block in ldp.blocks] == [8, 8]
    first = ldp.blocks[0]
    with torch.no_grad():  # a zero branch leaves only the residual
        first.pointwise_norm.weight.zero_()
        first.pointwise_norm.bias.zero_()
    image = torch.randn(2, 8, 3, 5)
    torch.testing.assert_close(first(image), image)


@pytest.mark.parametrize("connector", [LDPProjector(8, 16), LDPv2Projector(8, 16)], ids=["ldp", "ldpv2"])
def test_gradients_reach_every_parameter(connector):
    out = connector(torch.randn(2, 15, 8), (3, 5))
    # A random read-out: a plain sum of LayerNorm outputs has no gradient before the norm.
    (out * torch.randn_like(out)).sum().backward()
    missing = [name for name, p in connector.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_ldpv2_factor_must_be_positive():
    with pytest.raises(ConfigError) as err:
        LDPv2Projector(8, 16, factor=0)
    assert err.value.key == "factor"


@pytest.mark.parametrize("name", ["ldp", "ldpv2"])
def test_yaml_builds_the_connector_and_cuts_the_tiny_towers_tokens_4x(make_cfg, name):
    cfg = make_cfg(f"model/connector={name}")
    model = build_vlm(cfg.model, 40, IMAGE, 64)
    assert OmegaConf.select(cfg, "model.connector._target_").endswith(type(model.connector).__name__)
    grid = model.vision.grid(64, 64)
    assert grid == (8, 8) and model.visual_tokens([(64, 64)]) == 16  # 64 patches -> 16 tokens
    assert check_model_config(cfg.model, 40).visual_tokens_per_image == 9  # a 5x5 grid keeps its edge: 3x3


def _grouped_conv_backward(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                           output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """torch's convolution_backward count (for a plain, not transposed conv) with the weight gradient / `groups`.

    torch 2.13's formula counts a grouped conv's weight gradient as if every output channel read every input
    channel: `groups` times too much for a depthwise conv (fixed upstream in pytorch/pytorch#183405).
    """
    assert not transposed
    swap = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731 - batch <-> channels, as torch frames it
    grad_input = conv_flop_count(grad_out_shape, w_shape, out_shape[0], transposed=True) if output_mask[0] else 0
    grad_weight = conv_flop_count(swap(x_shape), swap(grad_out_shape), swap(out_shape[1])) if output_mask[1] else 0
    return grad_input + grad_weight // groups


@pytest.mark.parametrize("size", [32, 40], ids=["grid4x4", "grid5x5"])
@pytest.mark.parametrize("name", ["ldp", "ldpv2"])
def test_training_flops_match_flop_counter(make_cfg, name, size):
    torch.manual_seed(0)
    model = build_vlm(make_cfg(f"model/connector={name}").model, vocab_size=40, image_token_id=IMAGE, image_size=size)
    placeholders = model.sequence_tokens([(size, size)])
    ids = torch.cat([torch.ones(BATCH, 1, dtype=torch.long), torch.full((BATCH, placeholders), IMAGE),
                     torch.randint(6, 40, (BATCH, TEXT - 1))], dim=1)
    labels = ids.clone()
    labels[:, : placeholders + 1] = -100
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
              "pixel_values": torch.randn(BATCH, 3, size, size)}
    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: _grouped_conv_backward})
    with sdpa_kernel(SDPBackend.MATH), counter:
        model(**inputs).loss.backward()
    analytic = training_flops(model, [[(size, size)]], TEXT, batch_size=BATCH)
    assert analytic.training == pytest.approx(counter.get_total_flops() / BATCH, rel=1e-9)
    connector = counter.get_flop_counts()["VisionLanguageModel.connector"]
    measured_connector = sum(connector.values()) / BATCH
    assert analytic.forward["connector"] + analytic.backward["connector"] == pytest.approx(measured_connector)
