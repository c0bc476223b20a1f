"""The vision-language model: vision tower -> connector -> fusion into a causal language model."""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from vlmlab.models.connectors import Connector
from vlmlab.models.fusion import Fusion, ImageLayout
from vlmlab.models.language import HFCausalLM
from vlmlab.models.vision import VisionTower

# Each sample's images (0 to N), given as their views (one, or crops + the whole image) one image after another,
# each [3, h, w]. A [B, 3, H, W] tensor is accepted as the common case of one same-sized view per sample.
Images = list[list[torch.Tensor]] | torch.Tensor
# How many of a sample's views each of its images has, in order (None: a sample's views are all of one image).
ViewsPerImage = list[list[int]]


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

    def backbone_quality(self) -> dict[str, float | None]:
        """The quality scores of zoo backbones (vlmlab.models.zoo) this model starts from, None for others: the
        tower's linear-probe accuracy and the LM's held-out perplexity, as Cost's vision_quality and lm_quality."""
        return {"vision_quality": self.vision.quality["value"] if self.vision.quality else None,
                "lm_quality": self.lm.quality["value"] if self.lm.quality else None}

    def visual_tokens(self, view_shapes: list[tuple[int, int]]) -> int:
        """Visual tokens the connector makes for an image with views of these (height, width) shapes."""
        return sum(self.connector.num_tokens(self.vision.grid(h, w)) for h, w in view_shapes)

    def sequence_tokens(self, view_shapes: list[tuple[int, int]]) -> int:
        """Image placeholder tokens this image takes in the LM sequence."""
        return self.fusion.sequence_tokens(self.visual_tokens(view_shapes))

    def encode_images(self, images: Images) -> list[torch.Tensor]:
        """Visual tokens per sample, [T_b, D] (T_b = 0 without images): views of one shape are encoded together."""
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
        none = self._no_visual_tokens(next(iter(encoded.values()), None))
        return [torch.cat([none, *(encoded[(b, v)] for v in range(len(views)))]) for b, views in enumerate(images)]

    def _no_visual_tokens(self, like: torch.Tensor | None) -> torch.Tensor:
        """[0, D]: what a sample without images encodes to (of the dtype and device of `like`, a visual token)."""
        table = self.lm.embed_tokens().weight
        return table.new_zeros(0, self.lm.hidden_size) if like is None else like.new_zeros(0, like.shape[-1])

    def image_layout(self, input_ids: torch.Tensor, images: Images, views_per_image: ViewsPerImage | None
                     ) -> ImageLayout:
        """The visual tokens of each image of each sample, and where the sequence holds image placeholders."""
        samples = [[image] for image in images] if isinstance(images, torch.Tensor) else images
        tokens = []
        for b, views in enumerate(samples):
            counts = views_per_image[b] if views_per_image is not None else ([len(views)] if views else [])
            if sum(counts) != len(views):
                raise ValueError(f"sample {b}: views per image {counts} for {len(views)} views")
            shapes, start = [tuple(v.shape[-2:]) for v in views], 0
            tokens.append([])
            for count in counts:
                tokens[-1].append(self.visual_tokens(shapes[start : start + count]))
                start += count
        return ImageLayout(tokens, input_ids == self.image_token_id)

    def _embed(self, input_ids: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        embeds = self.lm.embed_tokens()(input_ids)
        return self.fusion.embed(embeds, input_ids == self.image_token_id, visual)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: Images,
        labels: torch.Tensor | None = None, num_items_in_batch: float | None = None,
        views_per_image: ViewsPerImage | None = None,
    ):
        """The LM's output (with `.loss` when labels are given; -100 marks tokens without loss): the mean over
        the labelled tokens, or their sum over `num_items_in_batch` when given. `views_per_image` (the collator's)
        says which of a sample's views make up each of its images; without it a sample's views are one image.

        A mixture-of-experts LM in training adds its router's load-balancing loss, times its
        `router_aux_loss_coef`, to `.loss` and returns it unweighted as `.aux_loss`; in eval mode `.loss` is the
        LM loss alone, comparable with a dense LM's."""
        visual = self.encode_images(pixel_values)
        embeds = self._embed(input_ids, visual)
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        if self.training and self.lm.router_aux_loss_coef is not None:
            # transformers' MoE heads, asked for their router logits with labels, compute the load-balancing
            # loss over the unpadded tokens and add coef x it to the loss themselves.
            extra["output_router_logits"] = True
        with self.fusion.conditioned_on(visual, self.image_layout(input_ids, pixel_values, views_per_image)):
            return self.lm.model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels, **extra)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: Images, max_new_tokens: int,
        eos_token_id: int, pad_token_id: int, views_per_image: ViewsPerImage | None = None,
    ) -> torch.Tensor:
        """Greedy continuations (new tokens only) of left-padded prompts, with the LM's KV cache."""
        visual = self.encode_images(pixel_values)
        embeds = self._embed(input_ids, visual)
        with self.fusion.conditioned_on(visual, self.image_layout(input_ids, pixel_values, views_per_image)):
            return self.lm.model.generate(
                inputs_embeds=embeds, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
            )
