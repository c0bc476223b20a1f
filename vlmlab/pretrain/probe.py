"""A tower's quality: linear-probe accuracy on held-out attributes of images it never trained on.

The laptop's version of the paper's ImageNet linear-probe axis (Table 2): the tower is frozen, its patch features
are mean-pooled (what a connector could at least extract), and one multinomial logistic regression per attribute
is fitted on half of the probe images and scored on the other half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from PIL import Image
from torch import nn

from vlmlab.data.images import SquareResize

L2 = 1e-3  # ridge on the probe's weights: the features are few and the images some hundreds


@torch.no_grad()
def pooled_features(tower: nn.Module, images: Sequence[Image.Image], processor: SquareResize,
                    batch_size: int = 256) -> torch.Tensor:
    """Mean-pooled final patch features [N, D] of `images` through `tower` (a transformers vision model)."""
    out = []
    for start in range(0, len(images), batch_size):
        pixels = torch.stack([processor.views(processor.to_uint8(im), training=False)[0]
                              for im in images[start:start + batch_size]])
        out.append(tower(pixel_values=pixels).last_hidden_state.mean(dim=1))
    return torch.cat(out)


def probe_accuracy(features: torch.Tensor, labels: Sequence[int], steps: int = 200) -> float:
    """Test accuracy (%) of a logistic regression fitted on the first half of (features, labels), on the second."""
    y = torch.as_tensor(labels)
    half = len(y) // 2
    x = features.float()
    mean, std = x[:half].mean(0), x[:half].std(0).clamp_min(1e-6)
    x = (x - mean) / std  # standardised on the fitting half only
    classes = int(y.max()) + 1
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x[:half] @ weight + bias, y[:half]) + L2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    predicted = (x[half:] @ weight + bias).argmax(dim=1)
    return 100.0 * float((predicted == y[half:]).float().mean())


def probe(tower: nn.Module, attributes: Mapping[str, tuple[Sequence[Image.Image], Sequence[int]]],
          processor: SquareResize) -> dict[str, float]:
    """Probe accuracy (%) per attribute, and their mean as "probe_accuracy"."""
    scores = {name: probe_accuracy(pooled_features(tower, images, processor), labels)
              for name, (images, labels) in attributes.items()}
    return {"probe_accuracy": sum(scores.values()) / len(scores), **{f"probe_{k}": v for k, v in scores.items()}}
