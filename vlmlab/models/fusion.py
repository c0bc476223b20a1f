"""Fusion: how visual tokens reach the language model.

Fully autoregressive (Idefics2, LLaVA): the visual tokens take the place of image placeholders in the
LM's input sequence. Gated cross-attention (Flamingo, Idefics1): the sequence keeps one placeholder per
image, and new cross-attention blocks inserted before every N-th decoder layer attend to the visual
tokens. The blocks are attached with forward pre-hooks, so any Llama-like decoder stack from
transformers works without editing its code, and its module tree and weight names stay untouched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlmlab.errors import ConfigError
from vlmlab.models.language import HFCausalLM

if TYPE_CHECKING:
    from vlmlab.models.flop_tape import Tape


class Fusion(nn.Module, ABC):
    """Puts visual tokens (one [T_i, D] tensor per sample) into the language model's computation."""

    in_sequence: bool = True  # whether the visual tokens enter the LM's input sequence (and bring their gradient)

    def attach(self, lm: HFCausalLM) -> None:
        """Wire the fusion into `lm` once, at build time."""

    @abstractmethod
    def sequence_tokens(self, visual_tokens: int) -> int:
        """Placeholder tokens in the LM sequence for an image of `visual_tokens` visual tokens."""

    @abstractmethod
    def embed(self, embeds: torch.Tensor, placeholders: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        """The LM's input embeddings given the token embeddings and the placeholder mask."""

    @contextmanager
    def conditioned_on(self, visual: list[torch.Tensor]) -> Iterator[None]:
        """Within the block, LM forwards see `visual` (cross-attention needs it; autoregressive does not)."""
        yield

    def count_flops(self, tape: Tape, layer: int, queries: float, visual_tokens: float, visual_grad: bool) -> None:
        """Count what this fusion computes before decoder layer `layer` for `queries` positions (nothing by default)."""


class Autoregressive(Fusion):
    """Visual tokens replace the image placeholders in the LM's sequence."""

    def sequence_tokens(self, visual_tokens: int) -> int:
        return visual_tokens

    def embed(self, embeds: torch.Tensor, placeholders: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        tokens = torch.cat(visual).to(embeds.dtype)
        if int(placeholders.sum()) != tokens.shape[0]:
            raise ValueError(f"{int(placeholders.sum())} image placeholder tokens for {tokens.shape[0]} visual tokens")
        # masked_scatter fills placeholders in row-major order: sample b's run receives visual[b] in order.
        return embeds.masked_scatter(placeholders.unsqueeze(-1), tokens)


class GatedCrossAttentionBlock(nn.Module):
    """Flamingo's block: tanh-gated cross-attention then a tanh-gated MLP; gates start at 0 (an identity)."""

    def __init__(self, dim: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn_gate = nn.Parameter(torch.zeros(1))
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, visual: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        attended = self.attn(self.norm(x), visual, visual, key_padding_mask=padding, need_weights=False)[0]
        x = x + torch.tanh(self.attn_gate).to(x.dtype) * attended
        return x + torch.tanh(self.ff_gate).to(x.dtype) * self.ff(self.norm_ff(x))


def decoder_layers(lm: HFCausalLM) -> nn.ModuleList:
    """The decoder layer stack of a transformers causal LM (Llama, Mistral, Qwen, Phi, ... all expose it)."""
    layers = getattr(lm.model.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError("model.fusion", f"cannot find the decoder layers of {type(lm.model).__name__}", absolute=True)
    return layers


class GatedCrossAttention(Fusion):
    """One placeholder per image in the sequence; cross-attention blocks before every N-th decoder layer."""

    in_sequence = False

    def __init__(self, every_n_layers: int = 1, heads: int = 4, ff_mult: int = 4) -> None:
        super().__init__()
        for key, value in (("every_n_layers", every_n_layers), ("heads", heads), ("ff_mult", ff_mult)):
            if value <= 0:
                raise ConfigError(key, f"must be positive, got {value}")
        self.every_n_layers, self.heads, self.ff_mult = every_n_layers, heads, ff_mult
        self.blocks = nn.ModuleList()
        self._context: tuple[torch.Tensor, torch.Tensor] | None = None

    def attach(self, lm: HFCausalLM) -> None:
        layers = decoder_layers(lm)
        if self.every_n_layers > len(layers):
            raise ConfigError("every_n_layers", f"{self.every_n_layers} is more than the language model's "
                              f"{len(layers)} layers (model.lm.config.num_hidden_layers): no block would be inserted")
        if lm.hidden_size % self.heads:
            raise ConfigError("heads", f"{self.heads} heads do not divide the language model width {lm.hidden_size} "
                              "(model.lm.config.hidden_size)")
        for index in range(0, len(layers), self.every_n_layers):
            self.blocks.append(GatedCrossAttentionBlock(lm.hidden_size, self.heads, self.ff_mult))
            layers[index].register_forward_pre_hook(self._pre_hook(len(self.blocks) - 1), with_kwargs=True)

    def _pre_hook(self, block: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict):
            if self._context is None:  # a text-only forward: the LM runs as it was
                return None
            visual, padding = self._context
            if args:
                return (self.blocks[block](args[0], visual, padding), *args[1:]), kwargs
            kwargs["hidden_states"] = self.blocks[block](kwargs["hidden_states"], visual, padding)
            return args, kwargs

        return hook

    def sequence_tokens(self, visual_tokens: int) -> int:
        return 1

    def count_flops(self, tape: Tape, layer: int, queries: float, visual_tokens: float, visual_grad: bool) -> None:
        if layer % self.every_n_layers:
            return
        block = self.blocks[layer // self.every_n_layers]
        tape.walk(block.norm, queries)  # a trainable norm makes the queries require grad
        # The keys and values are the visual tokens, projected again at every call (decode steps included).
        tape.multihead(block.attn, queries, visual_tokens, visual_grad)
        tape.walk(block.ff, queries)

    def embed(self, embeds: torch.Tensor, placeholders: torch.Tensor, visual: list[torch.Tensor]) -> torch.Tensor:
        return embeds  # the placeholder keeps its own (learned) token embedding

    @contextmanager
    def conditioned_on(self, visual: list[torch.Tensor]) -> Iterator[None]:
        longest = max(v.shape[0] for v in visual)
        padded = visual[0].new_zeros(len(visual), longest, visual[0].shape[-1])
        padding = torch.ones(len(visual), longest, dtype=torch.bool, device=visual[0].device)
        for i, tokens in enumerate(visual):
            padded[i, : tokens.shape[0]] = tokens
            padding[i, : tokens.shape[0]] = False
        self._context = (padded, padding)
        try:
            yield
        finally:
            self._context = None
