"""The real-model path: towers, LMs and tokenizers by hub id, here saved locally and loaded with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from vlmlab.errors import ConfigError
from vlmlab.data.tokenizer import IMAGE_TOKEN, pretrained_tokenizer, synthetic_tokenizer
from vlmlab.models.language import HFCausalLM
from vlmlab.models.vision import HFVisionTower

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=8, image_size=32)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_vision_tower_loads_saved_weights(tmp_path):
    saved = AutoModel.from_config(AutoConfig.for_model("siglip_vision_model", **VISION))
    saved.save_pretrained(tmp_path / "siglip")
    tower = HFVisionTower(image_size=32, pretrained=str(tmp_path / "siglip"))
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tower(pixels), saved.eval()(pixel_values=pixels).last_hidden_state)
    assert tower.grid(32, 32) == (4, 4)


def test_vision_half_of_a_dual_encoder_checkpoint(tmp_path):
    config = AutoConfig.for_model(
        "siglip", vision_config=VISION, text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                         num_attention_heads=2, vocab_size=50),
    )
    dual = AutoModel.from_config(config)
    dual.save_pretrained(tmp_path / "siglip-dual")
    tower = HFVisionTower(image_size=32, pretrained=str(tmp_path / "siglip-dual"))
    pixels = torch.randn(1, 3, 32, 32)
    expected = dual.eval().vision_model(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(tower(pixels), expected)


def test_pretrained_tower_at_another_resolution_interpolates_positions(tmp_path):
    AutoModel.from_config(AutoConfig.for_model("siglip_vision_model", **VISION)).save_pretrained(tmp_path / "s")
    tower = HFVisionTower(image_size=48, pretrained=str(tmp_path / "s"))
    assert tower(torch.randn(1, 3, 48, 48)).shape == (1, 36, 32)


def test_language_model_and_tokenizer_from_a_saved_checkpoint(tmp_path, cache_dir):
    source = synthetic_tokenizer(["question: what word is written? answer:", " cat", " dog"], tmp_path / "tok")
    source.save_pretrained(tmp_path / "llama")
    lm_config = AutoConfig.for_model("llama", vocab_size=len(source) - 1, hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    AutoModelForCausalLM.from_config(lm_config).save_pretrained(tmp_path / "llama")

    tokenizer = pretrained_tokenizer(str(tmp_path / "llama"))
    assert tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) != tokenizer.unk_token_id
    lm = HFCausalLM(vocab_size=len(tokenizer) + 1, pretrained=str(tmp_path / "llama"))
    # The image token may be new to a pretrained vocabulary: the embeddings grow to hold it.
    assert lm.embed_tokens().num_embeddings == len(tokenizer) + 1
    assert lm.hidden_size == 32


def test_unknown_model_while_offline_says_so_and_how_to_fetch_it(tmp_path):
    with pytest.raises(ConfigError, match=r"while offline.*hf download no-such-org/no-such-model") as err:
        HFVisionTower(image_size=32, pretrained="no-such-org/no-such-model")
    assert err.value.key == "pretrained"


def test_meta_build_of_a_pretrained_component_reads_no_weights(tmp_path):
    AutoModel.from_config(AutoConfig.for_model("siglip_vision_model", **VISION)).save_pretrained(tmp_path / "s")
    (tmp_path / "s" / "model.safetensors").unlink()  # only config.json is left: a weight read would fail
    with torch.device("meta"):
        tower = HFVisionTower(image_size=32, pretrained=str(tmp_path / "s"))
    assert next(tower.parameters()).device.type == "meta"


def test_pretrained_weights_load_in_the_training_dtype_not_the_checkpoints(tmp_path):
    from vlmlab.train.performance import building_on

    saved = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2))
    saved.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    assert HFCausalLM(vocab_size=40, pretrained=str(tmp_path / "bf16")).model.dtype == torch.float32, \
        "fp32 training (and the fp32 master weights of bf16-mixed) gets fp32 weights from a bf16 checkpoint"
    with building_on(torch.device("cpu"), torch.bfloat16):  # what a bf16-true trainer builds under
        lm = HFCausalLM(vocab_size=40, pretrained=str(tmp_path / "bf16"))
        tower = HFVisionTower(image_size=32, pretrained=_saved_tower(tmp_path))
    assert lm.model.dtype == torch.bfloat16 and next(tower.parameters()).dtype == torch.bfloat16
    assert torch.get_default_dtype() == torch.float32, "the default dtype is restored"


def _saved_tower(tmp_path) -> str:
    AutoModel.from_config(AutoConfig.for_model("siglip_vision_model", **VISION)).save_pretrained(tmp_path / "tower")
    return str(tmp_path / "tower")
