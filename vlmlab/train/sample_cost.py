"""What a training sample and an evaluation sample cost on average: tokens and FLOPs, from their shapes.

Means are taken as training draws samples (a data mixture weights tasks, not rows). FLOPs come from
vlmlab.models.flops at the mean text length, with images grouped by the shapes of their views, so that an
aspect-preserving image costs what its own views cost. A sample is an example (one image) or an interleaved
document (0 to N images): its visual tokens are those of all its images. Padding to the longest sample of a
batch is not counted: these are the FLOPs of the samples themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import torch

from vlmlab.data.collate import Document, Example, Sample, VLMCollator
from vlmlab.data.images import ImageProcessor
from vlmlab.models.flops import View, inference_flops, training_flops
from vlmlab.models.vlm import VisionLanguageModel
from vlmlab.train.budget import SampleCost

ImageViews = tuple[View, ...]


def _shares(keyed: Iterable[tuple[tuple[ImageViews, ...], float]]) -> dict[tuple[ImageViews, ...], float]:
    """Each distinct key's share of the total weight."""
    totals: dict[tuple[ImageViews, ...], float] = defaultdict(float)
    for key, weight in keyed:
        totals[key] += weight
    whole = sum(totals.values())
    if whole <= 0:
        raise ValueError("no samples to average the cost over")
    return {key: weight / whole for key, weight in totals.items()}


def _image_views(images: ImageProcessor, pixels: torch.Tensor, training: bool) -> ImageViews:
    """The (height, width) of each view of one image."""
    height, width = pixels.shape[-2:]
    return tuple(images.view_shapes(int(height), int(width), training))


def _views(images: ImageProcessor, example: Example, training: bool) -> ImageViews:
    """The (height, width) of each view of the example's image."""
    return _image_views(images, example.pixels, training)


def _sample_images(sample: Sample) -> tuple[torch.Tensor, ...]:
    """The images of a training sample, in order: an example's one, a document's 0 to N."""
    return sample.images if isinstance(sample, Document) else (sample.pixels,)


def mean_image_tokens(count: Callable[[list[View]], int], images: ImageProcessor, samples: list[Sample],
                      training: bool) -> float | int:
    """Mean of `count` (tokens of an image's views) over every image of `samples`; an int when it is one."""
    shapes = [tuple(pixels.shape[-2:]) for sample in samples for pixels in _sample_images(sample)]
    counted = {shape: count(images.view_shapes(*shape, training)) for shape in set(shapes)}
    mean = sum(counted[shape] for shape in shapes) / max(1, len(shapes))
    return int(mean) if mean == int(mean) else round(mean, 2)


def training_sample_cost(
    model: VisionLanguageModel, collator: VLMCollator, images: ImageProcessor, examples: list[Sample],
    weights: list[float], batch_size: int,
) -> SampleCost:
    """Mean text tokens, visual tokens and training FLOPs of a sample drawn with `weights` from `examples`."""
    total = sum(weights)
    text = sum(w * collator.text_tokens(ex, training=True) for ex, w in zip(examples, weights)) / total
    shares = _shares((tuple(_image_views(images, pixels, True) for pixels in _sample_images(ex)), w)
                     for ex, w in zip(examples, weights))
    visual = sum(share * sum(model.visual_tokens(list(views)) for views in key) for key, share in shares.items())
    flops = sum(share * training_flops(model, key, text, batch_size).training for key, share in shares.items())
    return SampleCost(text_tokens=text, visual_tokens=visual, flops=flops)


def inference_sample_flops(
    model: VisionLanguageModel, collator: VLMCollator, images: ImageProcessor, examples: list[Example],
    generated_tokens: float, batch_size: int,
) -> float:
    """Mean forward FLOPs of answering one of `examples` (with its in-context shots) in `generated_tokens` tokens."""
    prompt = sum(collator.text_tokens(ex, training=False) for ex in examples) / len(examples)
    shares = _shares((tuple(_views(images, shot, False) for shot in (*ex.context, ex)), 1.0) for ex in examples)
    return sum(share * inference_flops(model, key, prompt, generated_tokens, batch_size)
               for key, share in shares.items())
