"""LM backbones of other VLM families: LLaVA-Phi's Phi-2, MobileVLM's MobileLLaMA, and a mixture-of-experts LM.

The hub presets are built on the meta device from the real `config.json` in tests/fixtures/hub (no weights, no
network); the tiny presets of the same architectures train for real. An MoE LM trains with its router's
load-balancing loss added, and its FLOPs count the experts each token is routed to, not all of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from hydra.utils import instantiate

from vlmlab.cli import main
from vlmlab.models.build import build_vlm
from vlmlab.models.flops import inference_flops, training_flops
from vlmlab.train.module import VLMTrainingModule

from .test_flops import BATCH, SIZE, TEXT, TOLERANCE, batch, measured, tiny

HUB = Path(__file__).parent / "fixtures" / "hub"
TINY_LMS = {"tiny_phi": "phi", "tiny_mobilellama": "llama", "tiny_moe": "olmoe"}  # preset: model type
# Parameters of the hub models, as their model cards state them (vocabulary as published: none is resized).
HUB_LMS = {"phi2": 2_779_683_840, "mobilellama_1_4b": 1_364_297_728, "mobilellama_2_7b": 2_701_560_320,
           "olmoe_1b_7b": 6_919_161_856}
# A run that trains in seconds (as test_cli's).
RUN = ("logger=none", "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2",
       "data.suite.train_images=40", "trainer.max_steps=2")


@pytest.fixture(scope="module")
def hub() -> Iterator[None]:
    """The hub cache is the fixtures, offline. huggingface_hub reads both settings once, at import."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(HUB))
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setenv("HF_HUB_CACHE", str(HUB))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


def moe_router_and_experts(hf: torch.nn.Module, layer: int = 0) -> tuple[torch.nn.Parameter, torch.nn.Parameter]:
    """A layer's router weight and stacked expert weights of a transformers OLMoE LM."""
    block = hf.model.layers[layer].mlp
    return block.gate.weight, block.experts.gate_up_proj


# -- the presets -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "parameters"), HUB_LMS.items())
def test_hub_presets_build_the_published_models_on_meta(hub, make_cfg, name, parameters):
    with torch.device("meta"):
        lm = instantiate(make_cfg(f"model/lm={name}").model.lm, vocab_size=256)
    assert sum(p.numel() for p in lm.parameters()) == parameters
    assert (lm.router_aux_loss_coef is not None) == (name == "olmoe_1b_7b")


def test_tiny_presets_keep_their_familys_architecture(make_cfg):
    phi, mobile, moe = (instantiate(make_cfg(f"model/lm={name}").model.lm, vocab_size=40).model for name in TINY_LMS)
    phi_layer = phi.model.layers[0]
    # Phi-2's parallel block: attention and MLP read the same LayerNorm, and only a part of each head rotates.
    assert not hasattr(phi_layer, "post_attention_layernorm") and phi_layer.self_attn.rotary_ndims == 12
    assert type(phi_layer.mlp.activation_fn).__name__ == "NewGELUActivation"
    config = mobile.config  # MobileLLaMA's proportions: 24 layers / 16 heads, MLP 5632 / 2048, no GQA
    assert config.num_hidden_layers / config.num_attention_heads == 24 / 16
    assert config.intermediate_size / config.hidden_size == 5632 / 2048
    assert config.num_key_value_heads == config.num_attention_heads
    router, experts = moe_router_and_experts(moe)
    assert router.shape == (4, 128) and experts.shape[0] == 4 and moe.config.num_experts_per_tok == 2


# -- the router's load-balancing loss --------------------------------------------------------------------------

def switch_balance(router_logits: tuple[torch.Tensor, ...], experts: int, top_k: int) -> torch.Tensor:
    """Switch Transformer's load-balancing loss over all layers' tokens: experts x sum_e f_e P_e, with f_e the
    share of the top-k assignments that go to expert e and P_e its mean router probability (no padding)."""
    probs = torch.cat([logits.softmax(-1) for logits in router_logits])
    chosen = torch.nn.functional.one_hot(probs.topk(top_k).indices, experts).sum(1).float()
    return experts * (chosen.mean(0) * probs.mean(0)).sum()


def test_a_moe_lm_trains_with_its_routers_balance_loss_added(make_cfg):
    model = tiny(make_cfg, ["model/lm=tiny_moe"])
    inputs = batch(model)
    coef = model.lm.router_aux_loss_coef
    assert coef == 0.01
    out = model(**inputs)
    assert out.aux_loss.item() == pytest.approx(switch_balance(out.router_logits, 4, 2).item(), rel=1e-5)
    with torch.no_grad():
        lm_loss = model.eval()(**inputs)
    assert lm_loss.aux_loss is None, "evaluation reports the LM loss alone, comparable with a dense LM's"
    assert out.loss.item() == pytest.approx(lm_loss.loss.item() + coef * out.aux_loss.item(), abs=1e-6)
    assert out.aux_loss.item() > 1.0  # top_k (2) when balanced: the added term is not zero

    out.aux_loss.backward()
    for layer in range(4):
        router, _ = moe_router_and_experts(model.lm.model, layer)
        assert router.grad is not None and router.grad.abs().sum() > 0, "the balance loss trains every router"
    _, last = moe_router_and_experts(model.lm.model, -1)
    assert last.grad is None or not last.grad.any(), "not the experts no router reads (the loss is the routers')"


def test_a_dense_lm_trains_on_its_loss_alone(make_cfg):
    model = tiny(make_cfg, ["model/lm=tiny_llama"])
    inputs = batch(model)
    assert model.lm.router_aux_loss_coef is None
    out = model(**inputs)
    with torch.no_grad():
        evaluated = model.eval()(**inputs)
    assert getattr(out, "aux_loss", None) is None and out.loss.item() == pytest.approx(evaluated.loss.item())


@pytest.mark.parametrize("lm", ["tiny_moe", "tiny_llama"])
def test_the_training_step_logs_the_balance_loss_of_a_moe_only(make_cfg, lm):
    cfg = make_cfg(f"model/lm={lm}")
    model = tiny(make_cfg, [f"model/lm={lm}"])
    module = VLMTrainingModule(model, cfg.optim, total_steps=2)
    logged: dict[str, float] = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value.item())
    loss = module.training_step(batch(model), 0)
    assert logged["train/loss"] == loss.item()
    assert ("train/router_aux_loss" in logged) == (lm == "tiny_moe")


# -- FLOPs -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lm", TINY_LMS)
def test_training_flops_match_flop_counter(make_cfg, lm):
    model = tiny(make_cfg, [f"model/lm={lm}"])
    if lm == "tiny_moe":
        # transformers' default grouped products of the experts are invisible to FlopCounterMode; its eager
        # experts run the same products (each expert on the tokens routed to it), one visible matmul each.
        model.lm.model.set_experts_implementation("eager")
    inputs = batch(model)
    real = measured(lambda: model(**inputs).loss.backward())
    analytic = training_flops(model, [[(SIZE, SIZE)]], TEXT, batch_size=BATCH)
    assert analytic.training == pytest.approx(real, rel=TOLERANCE)


def test_moe_flops_charge_the_routed_experts_and_the_router_per_token(hub, make_cfg):
    """OLMoE at full size, by hand: per token, 16 layers of attention projections, a router over 64 experts and
    8 of those experts' SwiGLU MLPs (not 64), then the LM head over its vocabulary."""
    with torch.device("meta"):
        model = build_vlm(make_cfg("model/lm=olmoe_1b_7b").model, vocab_size=256, image_token_id=0,
                          image_size=SIZE)
    hidden, expert_mlp, vocab, layers = 2048, 1024, 50304, 16
    per_layer = 4 * hidden * hidden + 64 * hidden + 8 * 3 * hidden * expert_mlp
    attention = 2 * 2 * hidden  # scores and weighted sum, one query over one key
    expected = 2 * (layers * per_layer + vocab * hidden) + layers * attention
    assert training_flops(model, [], 1).forward["lm"] == expected
    assert inference_flops(model, [], 1, 1) == expected


# -- training through the command line -------------------------------------------------------------------------

@pytest.mark.slow  # three short runs through the CLI: `make test` keeps within its 10 minutes
@pytest.mark.parametrize("lm", TINY_LMS)
def test_tiny_presets_train_through_the_command_line(checkout, cache_dir, lm):
    assert main(["train", f"paths.cache_dir={cache_dir}", *RUN, f"model/lm={lm}"]) == 0
    [path] = (checkout / "results" / "runs" / "adhoc" / "default").glob("*.json")
    record = json.loads(path.read_text())
    assert record["status"] == "done" and record["config"]["model"]["lm"]["config"]["model_type"] == TINY_LMS[lm]
    assert record["cost"]["train_flops"] > 0
