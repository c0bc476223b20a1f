"""The fully autoregressive vision-language model: visual tokens replace image placeholders in the LM sequence."""

from __future__ import annotations

import torch
from torch import nn

from vlmlab.models.connectors import Connector
from vlmlab.models.language import HFCausalLM
from vlmlab.models.vision import VisionTower


class VisionLanguageModel(nn.Module):
    """Vision tower -> connector -> causal LM, fused by splicing visual tokens into the token embeddings."""

    def __init__(
        self, vision: VisionTower, connector: Connector, lm: HFCausalLM, image_token_id: int, image_size: int
    ) -> None:
        super().__init__()
        self.vision = vision
        self.connector = connector
        self.lm = lm
        self.image_token_id = image_token_id
        self.image_size = image_size
        self.visual_tokens_per_image = connector.num_tokens(vision.num_patches(image_size))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        """Token embeddings with each image's placeholder run replaced by its visual tokens."""
        embeds = self.lm.embed_tokens()(input_ids)
        visual = self.connector(self.vision(pixel_values)).to(embeds.dtype)
        placeholders = input_ids == self.image_token_id
        if int(placeholders.sum()) != visual.shape[0] * visual.shape[1]:
            raise ValueError(
                f"{int(placeholders.sum())} image placeholder tokens for {visual.shape[0]} images of "
                f"{visual.shape[1]} visual tokens each"
            )
        # masked_scatter fills placeholders in row-major order: sample b's run receives visual[b] in order.
        return embeds.masked_scatter(placeholders.unsqueeze(-1), visual)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
    ):
        """The LM's output (with `.loss` when labels are given; -100 marks tokens without loss)."""
        embeds = self.embed(input_ids, pixel_values)
        return self.lm.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
    ) -> torch.Tensor:
        """Greedy continuations (new tokens only) of left-padded prompts, with the LM's KV cache."""
        embeds = self.embed(input_ids, pixel_values)
        return self.lm.model.generate(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
