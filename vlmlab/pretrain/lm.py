"""Causal LMs pretrained on the suite's language: its captions and question-answer pairs as text, and its facts.

The corpus (vlmlab.data.language) is the text of the suite's tasks in the prompt format the VLM reads, drawn
from streams disjoint from every benchmark split, plus a table of facts that only this corpus states (the
knowledge benchmark `synth_know` asks about them). The LM uses the suite's tokenizer, the one every VLM run on
the suite shares, so its embeddings mean the same in every arm. Its quality is the perplexity on a held-out
draw of the same language.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from vlmlab.data.language import language_texts
from vlmlab.pretrain.backbone import Built, Pretraining, save_level
from vlmlab.pretrain.loop import train

TRAIN_STREAM, HELD_OUT_STREAM = "lm-pretrain", "lm-heldout"


def token_blocks(texts: list[str], tokenizer: PreTrainedTokenizerBase, length: int) -> torch.Tensor:
    """`texts`, each between bos and eos, concatenated and cut into blocks [N, length] (the tail dropped)."""
    ids: list[int] = []
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids += [tokenizer.bos_token_id, *encoded, tokenizer.eos_token_id]
    blocks = len(ids) // length
    return torch.tensor(ids[: blocks * length]).view(blocks, length)


@torch.no_grad()
def perplexity(model: PreTrainedModel, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """exp of the mean next-token loss over every predicted token of `blocks`."""
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start:start + batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        predicted = batch.shape[0] * (batch.shape[1] - 1)
        total, count = total + float(loss) * predicted, count + predicted
    return math.exp(total / count)


@dataclass
class CausalLMPretraining(Pretraining):
    """A recipe: the LM's architecture (the VLM preset's `config`), the corpus and the loop."""

    model: dict[str, Any]  # transformers config fields with model_type (the vocabulary is the suite tokenizer's)
    language: dict[str, Any]  # language_texts' seed and per_task, for the training and the held-out corpus
    templates: Mapping[str, str]  # the suite's per-task prompt templates (data.prompt_templates)
    default_template: str  # data.prompt_template
    block: int  # tokens per training sequence
    metric: ClassVar[str] = "perplexity"
    higher_is_better: ClassVar[bool] = False

    def build(self, vocab_size: int) -> PreTrainedModel:
        fields = dict(self.model)
        torch.manual_seed(self.seed)
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(fields.pop("model_type"), vocab_size=vocab_size,
                                                                     **fields))

    def corpus(self, stream: str, per_task: int) -> list[str]:
        return language_texts(self.language["seed"], per_task, stream, dict(self.templates), self.default_template)

    def run(self, work_dir: Path, level_dir: Callable[[int], Path], tokenizer: PreTrainedTokenizerBase) -> Built:
        blocks = token_blocks(self.corpus(TRAIN_STREAM, self.language["per_task"]), tokenizer, self.block)
        held_out = token_blocks(self.corpus(HELD_OUT_STREAM, self.language["held_out_per_task"]), tokenizer,
                                self.block)
        model = self.build(len(tokenizer))
        settings = self.loop_settings()

        def loss_at(step: int) -> torch.Tensor:
            batch = blocks[torch.from_numpy(settings.batch(step, len(blocks)))]
            return model(input_ids=batch, labels=batch).loss

        qualities: list[dict[str, Any]] = []

        def keep(level: int, step: int) -> None:
            value = perplexity(model, held_out)
            quality = {"step": step, "metric": self.metric, "value": value, "perplexity": value,
                       "train_tokens": step * self.batch_size * self.block}
            qualities.append(quality)

            def write(directory: Path) -> None:
                model.save_pretrained(directory)
                tokenizer.save_pretrained(directory)  # the suite's: a zoo LM loads like a hub LM, with its own

            save_level(level_dir(level), write, quality)

        loop = train(model, loss_at, settings, work_dir, keep)
        return Built(qualities, loop, sum(p.numel() for p in model.parameters()))
