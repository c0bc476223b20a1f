"""Language models: causal decoders from transformers, by hub id or from a config with random weights."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from vlmlab.errors import ConfigError
from vlmlab.models.hub import building_on_meta, hub_config, weight_loading


class HFCausalLM(nn.Module):
    """A transformers causal LM (Llama, Mistral, Qwen, ...) whose token embeddings the VLM can splice into."""

    quality: dict[str, Any] | None = None  # a zoo LM's quality score (vlmlab.models.zoo); None for any other

    def __init__(self, vocab_size: int, pretrained: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if (pretrained is None) == (config is None):
            raise ConfigError("pretrained", "give exactly one of `pretrained` (a hub id or path) or `config`")
        self.pretrained = pretrained
        if pretrained is not None:
            config = hub_config(pretrained)
            self.model: PreTrainedModel = (AutoModelForCausalLM.from_config(config) if building_on_meta()
                                           else AutoModelForCausalLM.from_pretrained(pretrained, **weight_loading()))
            # The image placeholder token may be new to a pretrained vocabulary.
            if vocab_size > self.model.get_input_embeddings().num_embeddings:
                self.model.resize_token_embeddings(vocab_size)
        else:
            fields = dict(config)
            model_type = fields.pop("model_type", None)
            if model_type is None:
                raise ConfigError("config.model_type", "a config preset must name its model_type")
            self.model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, vocab_size=vocab_size, **fields))

    @property
    def router_aux_loss_coef(self) -> float | None:
        """The weight of a mixture-of-experts LM's router load-balancing loss in training; None for a dense LM."""
        # transformers' MoE configs (Mixtral, OLMoE, Qwen-MoE, ...) carry both: the coefficient, and the switch
        # that makes the model return its router logits and add coef x load-balancing loss to `loss`.
        config = self.model.config
        if not hasattr(config, "output_router_logits"):
            return None
        coef = getattr(config, "router_aux_loss_coef", None)
        return None if coef is None else float(coef)

    @property
    def hidden_size(self) -> int:
        """Width of the token embeddings."""
        return self.model.config.hidden_size

    def embed_tokens(self) -> nn.Embedding:
        """The input embedding table."""
        return self.model.get_input_embeddings()
