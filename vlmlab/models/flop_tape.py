"""The FLOP tape: forward and backward FLOPs of matrix products, accumulated along one sample's data flow.

A multiply-add is 2 FLOPs. Only matrix products are counted: linear layers (nn.Linear, transformers'
Conv1D, peft's LoRA base / A / B layers), convolutions, nn.MultiheadAttention's projections and the two
products of every attention (scores Q K^T and the weighted sum A V). Elementwise work (norms, activations,
softmax, residual adds, rotary embeddings), embedding look-ups and the optimizer step are left out: they
are a few percent at most, and torch's FlopCounterMode, which the tests check this against, leaves them out
too. Attention scores cover the whole S x S matrix: dense kernels do not skip what a causal mask hides.

Backward: a product Y = X W costs one product of the forward's size for dW, only when W trains, and one
for dX, only when X requires grad (something before it in the data flow trains, or its input already did).
The tape tracks that as `grad`: off at the pixels, switched on by the first trainable parameter (a norm's
too) and kept on from there (residual streams carry it), walking modules in registration order, which is
their data-flow order in transformers models. One simplification: projections that read the same input
(q, k and v) are walked one after the other, so in the first layer of a LoRA-adapted component whose input
needs no gradient (a vision tower), k and v are counted with an input gradient they do not need (+0.3% on
the tiny default, far less on deep models).

A mixture-of-experts layer runs each token through its router and its top-k experts only (transformers computes
the routed tokens alone, expert by expert or in grouped products): `Tape.experts` counts those, never all experts.

DoRA rebuilds B A at every call (as B(A(I)), detached) for its weight norm: a cost per call, not per token,
shared by the `batch_size` samples of the call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from peft.tuners.lora import LoraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D


Special = Mapping[nn.Module, Callable[[], None]]  # modules a walk counts with their own callable


@dataclass(frozen=True)
class FlopCount:
    """Forward and backward FLOPs of one sample, per component (vision, connector, fusion, lm)."""

    forward: dict[str, float]
    backward: dict[str, float]

    @property
    def total_forward(self) -> float:
        """Forward FLOPs of all components."""
        return sum(self.forward.values())

    @property
    def training(self) -> float:
        """Forward plus backward FLOPs: what one training sample costs."""
        return self.total_forward + sum(self.backward.values())


def _trains(module: nn.Module) -> bool:
    """Whether any of the module's own parameters trains."""
    return any(p.requires_grad for p in module.parameters(recurse=False))


def _linear_dims(module: nn.Module) -> tuple[int, int]:
    """(inner, outer) width of a linear layer's product."""
    if isinstance(module, Conv1D):  # GPT-2 style: weight is [in, out]
        return module.weight.shape[0], module.weight.shape[1]
    return module.in_features, module.out_features


@dataclass
class Tape:
    """Accumulates the FLOPs of one sample's forward and backward in data-flow order."""

    grad: bool = False  # whether the activation flowing now requires grad
    batch_size: int = 1  # samples sharing one call, for the costs that do not grow with the batch
    component: str = "model"
    forward: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    backward: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _backward_on: bool = True

    @contextmanager
    def counting(self, component: str) -> Iterator[None]:
        """Within the block, FLOPs are booked to `component`."""
        before, self.component = self.component, component
        try:
            yield
        finally:
            self.component = before

    @contextmanager
    def forward_only(self) -> Iterator[None]:
        """Work whose output never reaches the loss (a vision layer after the feature layer): no backward."""
        self._backward_on = False
        try:
            yield
        finally:
            self._backward_on = True

    def product(self, rows: float, inner: int, cols: int, weight_trains: bool, input_grad: bool | None = None) -> None:
        """rows x inner times inner x cols with a weight on the right; `input_grad` defaults to the flow's state."""
        flops = 2.0 * rows * inner * cols
        input_grad = self.grad if input_grad is None else input_grad
        self.forward[self.component] += flops
        if self._backward_on:
            self.backward[self.component] += flops * (int(weight_trains) + int(input_grad))

    def linear(self, module: nn.Module, rows: float) -> None:
        """A linear layer applied to `rows` tokens; its output requires grad if its input or weights do."""
        trains = _trains(module)
        self.product(rows, *_linear_dims(module), weight_trains=trains)
        self.grad = self.grad or trains

    def weight(self, weight: torch.Tensor, rows: float) -> None:
        """`rows` tokens through a bare [..., out, in] weight applied outside a linear layer (an MoE router)."""
        self.product(rows, weight.shape[-1], weight.shape[-2], weight_trains=weight.requires_grad)
        self.grad = self.grad or weight.requires_grad

    def experts(self, module: nn.Module, rows: float, top_k: int) -> None:
        """A mixture-of-experts layer's stacked experts ([experts, out, in] weights, in data-flow order): each of
        the `rows` tokens runs through `top_k` of the experts, not all of them."""
        for weight in module.parameters(recurse=False):
            if weight.ndim == 3:  # the biases of some ([experts, out]) are elementwise
                self.weight(weight, rows * top_k)

    def conv(self, module: nn.Conv2d, positions: float) -> None:
        """A convolution producing `positions` output positions (a patch embedding: one per patch)."""
        kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        trains = _trains(module)
        self.product(positions, kernel, module.out_channels, weight_trains=trains)
        self.grad = self.grad or trains

    def attention(self, queries: float, keys: float, width: int) -> None:
        """Scores Q K^T and weighted sum A V over `width` = heads x head_dim; backward twice each when they need it."""
        flops = 2 * 2.0 * queries * keys * width
        self.forward[self.component] += flops
        if self._backward_on and self.grad:
            self.backward[self.component] += 2 * flops

    def multihead(self, mha: nn.MultiheadAttention, queries: float, keys: float, context_grad: bool) -> None:
        """nn.MultiheadAttention: queries from the flow, keys and values from a context that may require grad."""
        trains = _trains(mha)
        query_grad = self.grad
        self.product(queries, mha.embed_dim, mha.embed_dim, trains, query_grad)
        self.product(keys, mha.kdim, mha.embed_dim, trains, context_grad)
        self.product(keys, mha.vdim, mha.embed_dim, trains, context_grad)
        self.grad = query_grad or context_grad or trains
        self.attention(queries, keys, mha.embed_dim)
        self.linear(mha.out_proj, queries)

    def walk(self, module: nn.Module, tokens: float, special: Special | None = None) -> None:
        """Every matrix-product layer under `module` in registration order, each on `tokens` rows.

        A module in `special` is counted by its callable instead (a layer stack with its attention, a patch
        embedding over the patches only, an LM head over fewer rows).
        """
        special = special or {}
        layer = next((count for kind, count in _LAYERS.items() if isinstance(module, kind)), None)
        if module in special:
            special[module]()
        elif layer is not None:
            layer(self, module, tokens)
        else:
            for child in module.children():
                self.walk(child, tokens, special)
            if isinstance(module, LoraLayer):
                self._dora_weights(module)
            self.grad = self.grad or _trains(module)  # a norm, a position embedding, a DoRA magnitude

    def _dora_weights(self, layer: LoraLayer) -> None:
        """DoRA's B(A(I)) per call (forward only: the weight norm is detached), shared by the batch."""
        for name in layer.lora_magnitude_vector:
            inner, rank, outer = layer.in_features, layer.lora_A[name].out_features, layer.out_features
            self.forward[self.component] += 2.0 * (inner * inner * rank + inner * rank * outer) / self.batch_size

    def result(self) -> FlopCount:
        """What the tape counted, per component."""
        return FlopCount(dict(self.forward), dict(self.backward))


# How each kind of matrix-product layer is counted on the tokens it runs on; an nn.MultiheadAttention met in a
# walk is a self-attention (a connector or fusion that cross-attends counts its own with Tape.multihead).
_LAYERS: dict[type[nn.Module], Callable[[Tape, nn.Module, float], None]] = {
    nn.MultiheadAttention: lambda tape, mha, tokens: tape.multihead(mha, tokens, tokens, tape.grad),
    nn.Linear: Tape.linear,
    Conv1D: Tape.linear,
    nn.Conv2d: Tape.conv,
}
