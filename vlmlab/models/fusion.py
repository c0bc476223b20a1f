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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from vlmlab.errors import ConfigError
from vlmlab.models.language import HFCausalLM

if TYPE_CHECKING:
    from vlmlab.models.flop_tape import Tape


@dataclass(frozen=True)
class ImageLayout:
    """Where each sample's images are: the visual tokens of each (in order) and the image placeholders' positions."""

    image_tokens: list[list[int]]  # per sample, the visual tokens of each of its images, in reading order
    placeholders: torch.Tensor  # [B, L] bool: the image placeholder positions of the input sequence

    def images_seen(self) -> torch.Tensor:
        """[B, L]: how many images have their placeholder at or before each position (one placeholder each)."""
        counts = self.placeholders.sum(-1).tolist()
        if counts != [len(images) for images in self.image_tokens]:
            raise ValueError(f"image placeholders per sample {counts} do not match the images per sample "
                             f"{[len(images) for images in self.image_tokens]}")
        return self.placeholders.long().cumsum(-1)

    def token_images(self, length: int) -> torch.Tensor:
        """[B, length]: the (1-based) image each visual token of a sample belongs to; padding gets a number no
        position ever reaches."""
        out = torch.full((len(self.image_tokens), length), torch.iinfo(torch.long).max, dtype=torch.long)
        for b, counts in enumerate(self.image_tokens):
            index = torch.arange(1, len(counts) + 1).repeat_interleave(torch.tensor(counts, dtype=torch.long))
            out[b, : index.numel()] = index
        return out.to(self.placeholders.device)


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
    def conditioned_on(self, visual: list[torch.Tensor], layout: ImageLayout | None = None) -> Iterator[None]:
        """Within the block, LM forwards see `visual` (cross-attention needs it; autoregressive does not), laid out
        as `layout` says (without one, every token of a sample sees all of its visual tokens)."""
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

    def forward(self, x: torch.Tensor, visual: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """`x` [B, Q, D] attending over `visual` [B, S, D] except where `blocked` [B, Q, S] is True."""
        mask = blocked.repeat_interleave(self.attn.num_heads, 0)  # MultiheadAttention wants [B * heads, Q, S]
        attended = self.attn(self.norm(x), visual, visual, attn_mask=mask, need_weights=False)[0]
        x = x + torch.tanh(self.attn_gate).to(x.dtype) * attended
        return x + torch.tanh(self.ff_gate).to(x.dtype) * self.ff(self.norm_ff(x))


def decoder_layers(lm: HFCausalLM) -> nn.ModuleList:
    """The decoder layer stack of a transformers causal LM (Llama, Mistral, Qwen, Phi, ... all expose it)."""
    layers = getattr(lm.model.get_decoder(), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError("model.fusion", f"cannot find the decoder layers of {type(lm.model).__name__}", absolute=True)
    return layers


@dataclass(frozen=True)
class _Context:
    """What the cross-attention blocks see during one conditioned forward."""

    visual: torch.Tensor  # [B, S, D]: each sample's visual tokens, zero-padded to the longest
    token_images: torch.Tensor  # [B, S]: the image (1-based) of each visual token; padding is never reached
    seen: torch.Tensor  # [B, L]: images whose placeholder is at or before each position of the input sequence

    @classmethod
    def build(cls, visual: list[torch.Tensor], layout: ImageLayout | None) -> _Context:
        """The context of `visual` laid out by `layout` (None: one image per sample, seen from every position)."""
        lengths = [v.shape[0] for v in visual]
        padded = visual[0].new_zeros(len(visual), max(lengths), visual[0].shape[-1])
        for i, tokens in enumerate(visual):
            padded[i, : tokens.shape[0]] = tokens
        if layout is None:
            layout = ImageLayout([[n] for n in lengths], torch.ones(len(visual), 1, dtype=torch.bool))
            seen = layout.placeholders.long()  # one column: blocked() extends it to every position
        else:
            seen = layout.images_seen()
        if [sum(counts) for counts in layout.image_tokens] != lengths:
            raise ValueError(f"visual tokens per sample {lengths} do not add up to the tokens of their images "
                             f"{layout.image_tokens}")
        return cls(padded, layout.token_images(max(lengths)).to(padded.device), seen.to(padded.device))

    def blocked(self, queries: int) -> torch.Tensor:
        """[B, queries, S]: the visual tokens each of `queries` positions may not attend to.

        A forward over the whole sequence (training, a prompt's prefill) has one query per position; a longer one
        (generation without a cache) continues after the sequence; a shorter one is a cached decoding step, whose
        new tokens come after every image.
        """
        seen, length = self.seen, self.seen.shape[1]
        if queries < length:
            seen = seen[:, -1:].expand(-1, queries)
        elif queries > length:
            seen = torch.cat([seen, seen[:, -1:].expand(-1, queries - length)], 1)
        return self.token_images[:, None, :] > seen[:, :, None]


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
        self._context: _Context | None = None

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
            if args:
                return (self._condition(block, args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = self._condition(block, kwargs["hidden_states"])
            return args, kwargs

        return hook

    def _condition(self, block: int, x: torch.Tensor) -> torch.Tensor:
        """`x` through cross-attention block `block`, each position seeing the images placed at or before it.

        Interleaved text attends to every earlier image of its document (Idefics1 on OBELICS), not only to the
        latest one (Flamingo), and never to a later one. A position before every image sees none: the block
        leaves it exactly as it was (its feed-forward too), so text before the first image, and a document
        without images, are computed as the text-only LM computes them.
        """
        blocked = self._context.blocked(x.shape[1])
        sees = ~blocked.all(-1, keepdim=True)  # [B, Q, 1]
        if not bool(sees.any()):
            return x
        # A row with every key blocked would softmax to NaN: it attends anywhere instead, and its result is dropped.
        out = self.blocks[block](x, self._context.visual, blocked & sees)
        return torch.where(sees, out, x)

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
    def conditioned_on(self, visual: list[torch.Tensor], layout: ImageLayout | None = None) -> Iterator[None]:
        self._context = _Context.build(visual, layout)
        try:
            yield
        finally:
            self._context = None
