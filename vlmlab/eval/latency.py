"""Serving latency: how long one request waits for its first token, and how fast the rest of its answer comes.

A small device serves one request at a time (the cost MobileVLM and LLaVA-Phi report): batch 1, greedy decoding,
the LM's KV cache. Each timed request goes through `VisionLanguageModel.generate` as evaluation does, asking for
exactly `new_tokens` tokens with an end-of-sequence id the LM cannot produce, so every arm decodes the same length
whatever it answers. A hook on the LM stamps the end of each of its forward passes: the first ends with the first
new token's logits (image encoding + prefill + one token: the time to first token), each later one adds a token
(decode throughput). One untimed request first: the first call of a process allocates and picks its kernels.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.errors import ConfigError, is_int
from vlmlab.models.vlm import VisionLanguageModel




@dataclass(frozen=True)
class LatencySettings:
    """What a run times after its evaluation (the config's `latency` block): `samples` test requests (0: none)."""

    samples: int = 8
    new_tokens: int = 16  # per request: the first gives the time to first token, the other ones the decode rate

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | None) -> LatencySettings:
        """The settings of a `latency` block (defaults for a config without one); ConfigError naming a bad key."""
        values = {**vars(cls()), **dict(node or {})}
        if unknown := sorted(set(values) - set(vars(cls()))):
            raise ConfigError(f"latency.{unknown[0]}", "is not a latency setting (samples, new_tokens)")
        if not (is_int(values["samples"]) and values["samples"] >= 0):
            raise ConfigError("latency.samples", f"must be an integer >= 0 (0: no latency), got {values['samples']!r}")
        # A decode rate needs a token after the first one.
        if not (is_int(values["new_tokens"]) and values["new_tokens"] >= 2):
            raise ConfigError("latency.new_tokens", f"must be an integer >= 2, got {values['new_tokens']!r}")
        return cls(**values)


@dataclass(frozen=True)
class Latency:
    """Medians over the timed requests: ms to the first new token, and new tokens per second after it."""

    ttft_ms: float
    decode_tokens_per_s: float
    requests: int
    new_tokens: int


@dataclass(frozen=True)
class Request:
    """One timed request: seconds to its first token, seconds for the tokens after it, and the LM's forwards."""

    first_token_s: float
    decode_s: float
    forwards: int

    @property
    def decode_tokens_per_s(self) -> float:
        """New tokens per second after the first (each forward after the first makes one)."""
        return (self.forwards - 1) / self.decode_s if self.decode_s > 0 else math.inf


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it sees the work done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _forward_ends(lm: nn.Module, device: torch.device) -> Iterator[list[float]]:
    """The clock at the end of each forward pass of `lm` while inside (the device synchronised: a greedy step
    waits for its token anyway, to check for the end of the sequence)."""
    ends: list[float] = []

    def stamp(module: nn.Module, args: Any, output: Any) -> None:
        _sync(device)
        ends.append(time.perf_counter())

    handle = lm.register_forward_hook(stamp)
    try:
        yield ends
    finally:
        handle.remove()


def unreachable_token(model: VisionLanguageModel) -> int:
    """A token id the LM's head cannot score (its logits stop below it): as end of sequence, it never ends one."""
    return int(model.lm.model.get_output_embeddings().weight.shape[0])


def time_request(model: VisionLanguageModel, batch: dict[str, Any], new_tokens: int, pad_token_id: int) -> Request:
    """Generate exactly `new_tokens` greedy tokens for one collated request already on the model's device, timed."""
    device = batch["input_ids"].device
    with _forward_ends(model.lm.model, device) as ends:
        _sync(device)
        started = time.perf_counter()
        model.generate(**batch, max_new_tokens=new_tokens, eos_token_id=unreachable_token(model),
                       pad_token_id=pad_token_id)
    return Request(first_token_s=ends[0] - started, decode_s=ends[-1] - ends[0], forwards=len(ends))


def spread(examples: list[Example], count: int) -> list[Example]:
    """`count` of `examples` evenly spaced over them (every task of a task-ordered list gets its share)."""
    count = min(count, len(examples))
    return [examples[i * len(examples) // count] for i in range(count)]


@torch.no_grad()
def measure_latency(model: VisionLanguageModel, collator: VLMCollator, examples: list[Example],
                    settings: LatencySettings) -> Latency | None:
    """Time one request at a time on `settings.samples` of `examples` (evenly spread) after one untimed request;
    None when nothing is to be timed."""
    chosen = spread(examples, settings.samples)
    if not chosen:
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = collator.tokenizer.pad_token_id
    batches = [move_data_to_device(collator.generation_batch([ex]), device) for ex in chosen]
    time_request(model, batches[0], settings.new_tokens, pad)  # the warm-up
    requests = [time_request(model, batch, settings.new_tokens, pad) for batch in batches]
    model.train(was_training)
    ttft = statistics.median(r.first_token_s for r in requests)
    rate = statistics.median(r.decode_tokens_per_s for r in requests)
    if not (math.isfinite(ttft) and math.isfinite(rate)):
        return None
    return Latency(ttft_ms=1000.0 * ttft, decode_tokens_per_s=rate, requests=len(requests),
                   new_tokens=settings.new_tokens)
