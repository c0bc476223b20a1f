"""Vision towers pretrained with SigLIP's sigmoid loss on the suite's synthetic image-caption pairs.

A SigLIP vision transformer (the VLM's tower architecture) and a small text transformer embed images and captions;
every image-caption pair of a batch is a binary classification, matched or not (Zhai et al. 2023). The pairs are
drawn from generator streams of their own and leave out every scene of the suite's validation and test splits
(the grammar has only some thousands of distinct word images, so separate streams alone would repeat test
images, captions naming their answers). The probe's images are neither benchmark nor pretraining scenes. After
training only the vision transformer is kept, without the pooling head the VLM never uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn
from transformers import AutoConfig, PreTrainedTokenizerBase, SiglipTextConfig, SiglipTextModel, SiglipVisionModel

from vlmlab.data.images import SquareResize
from vlmlab.data.pretrain_images import draw_pairs, probe_set, rendered
from vlmlab.data.synthetic_v2 import SyntheticV2Spec, evaluation_keys
from vlmlab.pretrain.backbone import Built, Pretraining, save_level
from vlmlab.pretrain.loop import train
from vlmlab.pretrain.probe import probe

PAIRS_STREAM, PROBE_STREAM = "tower-pretrain", "tower-probe"


def tower_pixels(processor: SquareResize, image: Image.Image) -> torch.Tensor:
    """One image as the VLM's tower sees it (the same resizing), kept as uint8 [3, S, S] so 20,000 fit in memory."""
    view = processor.views(processor.to_uint8(image), training=False)[0]
    mean, std = (torch.tensor(v).view(-1, 1, 1) for v in (processor.mean, processor.std))
    return ((view * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)


class DualEncoder(nn.Module):
    """Image and text towers with linear projections into one space, and SigLIP's learnt temperature and bias."""

    def __init__(self, vision: SiglipVisionModel, text: SiglipTextModel, embed_dim: int) -> None:
        super().__init__()
        self.vision, self.text = vision, text
        self.image_projection = nn.Linear(vision.config.hidden_size, embed_dim)
        self.text_projection = nn.Linear(text.config.hidden_size, embed_dim)
        # SigLIP's initialisation: t' = log 10, b = -10, so that the many negatives start near probability 0
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    def loss(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The sigmoid loss of a batch whose i-th image and i-th caption match."""
        image = self.vision(pixel_values=pixels).last_hidden_state.mean(dim=1)  # the pooling the probe uses
        hidden = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        text = (hidden * mask).sum(1) / mask.sum(1)
        image = nn.functional.normalize(self.image_projection(image), dim=-1)
        text = nn.functional.normalize(self.text_projection(text), dim=-1)
        logits = image @ text.T * self.logit_scale.exp() + self.logit_bias
        # +1 on the diagonal (the matched pairs), -1 elsewhere; a caption repeated in the batch is a soft negative
        signs = 2 * torch.eye(len(logits), device=logits.device) - 1
        return -nn.functional.logsigmoid(signs * logits).sum() / len(logits)


@dataclass
class SigLIPPretraining(Pretraining):
    """A recipe: the tower's architecture (the VLM preset's `config`), the text tower's, data and the loop."""

    model: dict[str, Any]  # the vision tower's transformers config (model_type siglip_vision_model)
    text: dict[str, Any]  # the text transformer's SiglipTextConfig fields
    image_size: int
    embed_dim: int
    pairs: int  # distinct image-caption pairs drawn
    canvas: int  # side of the rendered scenes, px (the suite's)
    held_out: dict[str, int]  # the suite's seed and eval_images: whose validation and test scenes are left out
    probe_items: int  # images per probed attribute (half fit the probe, half score it)
    caption_tokens: int = 48
    metric: ClassVar[str] = "probe_accuracy"
    higher_is_better: ClassVar[bool] = True

    def build(self, tokenizer: PreTrainedTokenizerBase) -> DualEncoder:
        fields = dict(self.model)
        config = AutoConfig.for_model(fields.pop("model_type"), image_size=self.image_size, vision_use_head=False,
                                      **fields)
        text_config = SiglipTextConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                       max_position_embeddings=self.caption_tokens, **self.text)
        torch.manual_seed(self.seed)
        return DualEncoder(SiglipVisionModel(config), SiglipTextModel(text_config), self.embed_dim)

    def run(self, work_dir: Path, level_dir: Callable[[int], Path], tokenizer: PreTrainedTokenizerBase) -> Built:
        processor = SquareResize(size=self.image_size)
        benchmarks = evaluation_keys(SyntheticV2Spec(seed=self.held_out["seed"], canvas=self.canvas,
                                                     eval_images=self.held_out["eval_images"]))
        drawn = draw_pairs(self.seed, self.pairs, self.canvas, PAIRS_STREAM, exclude=benchmarks)
        pairs, seen = rendered(drawn, self.canvas), {scene.key for _, scene in drawn}
        pixels = torch.stack([tower_pixels(processor, image) for image, _ in pairs])
        tokens = tokenizer([caption for _, caption in pairs], padding="max_length", truncation=True,
                           max_length=self.caption_tokens, return_tensors="pt")
        probed = probe_set(self.seed, self.probe_items, self.canvas, PROBE_STREAM, exclude=benchmarks | seen)
        model = self.build(tokenizer)
        settings = self.loop_settings()

        def loss_at(step: int) -> torch.Tensor:
            index = torch.from_numpy(settings.batch(step, len(pairs)))
            return model.loss(processor.normalise(pixels[index]), tokens["input_ids"][index],
                              tokens["attention_mask"][index])

        qualities: list[dict[str, Any]] = []

        def keep(level: int, step: int) -> None:
            quality = {"step": step, "metric": self.metric, **probe(model.vision, probed, processor)}
            quality["value"] = quality["probe_accuracy"]
            qualities.append(quality)
            save_level(level_dir(level), model.vision.save_pretrained, quality)

        loop = train(model, loss_at, settings, work_dir, keep)
        return Built(qualities, loop, sum(p.numel() for p in model.vision.parameters()))
