"""The vision-language model: vision tower -> connector -> fusion into a causal language model."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from vlmlab.models.connectors import Connector
from vlmlab.models.fusion import Fusion
from vlmlab.models.language import HFCausalLM
from vlmlab.models.vision import VisionTower

# One image per sample, given as its views (one, or crops + the whole image), each [3, h, w].
# A [B, 3, H, W] tensor is accepted as the common case of one same-sized view per sample.
Images = list[list[torch.Tensor]] | torch.Tensor


class VisionLanguageModel(nn.Module):
    """Encodes each image's views to visual tokens and fuses them into the LM at its image placeholders."""

    def __init__(
        self, vision: VisionTower, connector: Connector, lm: HFCausalLM, fusion: Fusion, image_token_id: int,
        image_size: int,
    ) -> None:
        super().__init__()
        self.vision = vision
        self.connector = connector
        self.lm = lm
        self.fusion = fusion
        self.image_token_id = image_token_id  # the fusion is attached to the LM by the builder
        # At the configured square resolution; other shapes (aspect ratio, crops) ask visual_tokens().
        self.visual_tokens_per_image = self.visual_tokens([(image_size, image_size)])

    def visual_tokens(self, view_shapes: list[tuple[int, int]]) -> int:
        """Visual tokens the connector makes for an image with views of these (height, width) shapes."""
        return sum(self.connector.num_tokens(self.vision.grid(h, w)) for h, w in view_shapes)

    def sequence_tokens(self, view_shapes: list[tuple[int, int]]) -> int:
        """Image placeholder tokens this image takes in the LM sequence."""
        return self.fusion.sequence_tokens(self.visual_tokens(view_shapes))

    def encode_images(self, images: Images) -> list[torch.Tensor]:
        """Visual tokens per sample, [T_b, D]: views of one shape are encoded together in one batch."""
        if isinstance(images, torch.Tensor):
            images = [[image] for image in images]
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for b, views in enumerate(images):
            for v, view in enumerate(views):
                by_shape[tuple(view.shape[-2:])].append((b, v))
        encoded: dict[tuple[int, int], torch.Tensor] = {}
        for (height, width), slots in by_shape.items():
            pixels = torch.stack([images[b][v] for b, v in slots])
            tokens = self.connector(self.vision(pixels), self.vision.grid(height, width))
            encoded.update(zip(slots, tokens))
        return [torch.cat([encoded[(b, v)] for v in range(len(views))]) for b, views in enumerate(images)]

    def _embed(self, input_ids: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        embeds = self.lm.embed_tokens()(input_ids)
        return self.fusion.embed(embeds, input_ids == self.image_token_id, visual)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: Images,
        labels: torch.Tensor | None = None, num_items_in_batch: float | None = None,
    ):
        """The LM's output (with `.loss` when labels are given; -100 marks tokens without loss): the mean over
        the labelled tokens, or their sum over `num_items_in_batch` when given."""
        visual = self.encode_images(pixel_values)
        embeds = self._embed(input_ids, visual)
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        with self.fusion.conditioned_on(visual):
            return self.lm.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **extra)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: Images, max_new_tokens: int,
        eos_token_id: int, pad_token_id: int,
    ) -> torch.Tensor:
        """Greedy continuations (new tokens only) of left-padded prompts, with the LM's KV cache."""
        visual = self.encode_images(pixel_values)
        embeds = self._embed(input_ids, visual)
        with self.fusion.conditioned_on(visual):
            return self.lm.model.generate(
                inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            )
