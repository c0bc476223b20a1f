"""A run's data pipeline: its suite, the suite's tokenizer, and the suite's splits as samples, built once per process.

Every run on the synthetic suite v2 shares one tokenizer, fitted to the suite's language (vlmlab.data.language),
whatever its mixture, caption style or size: a pretrained zoo LM's embeddings then mean the same in every arm.
Other suites fit theirs to their training text; a pretrained hub LM brings its own.

A sweep trains its runs one after another in one process. Runs whose suite, cache and tokenizer agree share one
pipeline (`DataPipeline.of(cfg)` hands back the one built first), and runs that process images alike share its
decoded samples, so a sweep generates, tokenizes and decodes its data once. This module is where that shared
state lives; `train`, `bench` and `tune` all reach the data through it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import datasets
from hydra.utils import instantiate
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from vlmlab.data.arrow_samples import ArrowSamples, InMemorySamples, Samples
from vlmlab.data.collate import Sample
from vlmlab.data.examples import split_examples
from vlmlab.data.images import ImageProcessor
from vlmlab.data.language import suite_language
from vlmlab.data.suite import Suite
from vlmlab.data.tokenizer import pretrained_tokenizer, synthetic_tokenizer

T = TypeVar("T")


class _Kept(OrderedDict):
    """The last `size` values built, by key: what a process keeps of pipelines and decoded splits."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        if key in self:
            self.move_to_end(key)
        else:
            self[key] = build()
            while len(self) > self.size:
                self.popitem(last=False)
        return self[key]


_PIPELINES = _Kept(4)  # a sweep has one suite; tuning and tests switch between a few


def prompt_templates(data: DictConfig) -> dict[str, str]:
    """Per-task prompt templates of a data config (`data.prompt_templates`; absent in older configs)."""
    return dict(data.get("prompt_templates") or {})


@dataclass(frozen=True)
class PromptFormat:
    """A data config's prompt templates: the default, and those of the tasks that have their own."""

    default: str
    per_task: tuple[tuple[str, str], ...]  # (task, template), sorted

    @staticmethod
    def of(data: DictConfig) -> PromptFormat:
        return PromptFormat(data.prompt_template, tuple(sorted(prompt_templates(data).items())))

    def all(self) -> tuple[str, ...]:
        """Every template, the default first."""
        return (self.default, *sorted({template for _, template in self.per_task}))


@dataclass(eq=False)
class DataPipeline:
    """The suite of a run, its tokenizer, and its splits as samples for an image processor."""

    suite: Suite
    cache_dir: str
    prompts: PromptFormat
    pretrained: str | None  # the LM's hub id or directory: its own tokenizer; None: one fitted to the suite
    _splits: datasets.DatasetDict | None = field(default=None, repr=False)
    _tokenizer: PreTrainedTokenizerBase | None = field(default=None, repr=False)
    _samples: _Kept = field(default_factory=lambda: _Kept(16), repr=False)  # decoded per processor and split

    @staticmethod
    def of(cfg: DictConfig) -> DataPipeline:
        """The pipeline of run config `cfg`: the one this process built for an equal suite, cache and tokenizer,
        else a new one (its suite generated or built, and cached on disk, the first time it is read)."""
        suite: Suite = instantiate(cfg.data.suite)
        key = (suite, str(cfg.paths.cache_dir), PromptFormat.of(cfg.data), cfg.model.lm.get("pretrained"))
        return _PIPELINES.get_or_build(key, lambda: DataPipeline(*key))

    @property
    def splits(self) -> datasets.DatasetDict:
        """The suite's splits ("train", "validation", "test"), read once."""
        if self._splits is None:
            self._splits = self.suite.load(self.cache_dir)
        return self._splits

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The pretrained LM's tokenizer, or the suite's: fitted to its language, or else to its training text and
        the prompt templates."""
        if self._tokenizer is None:
            self._tokenizer = pretrained_tokenizer(self.pretrained) if self.pretrained is not None else \
                synthetic_tokenizer(self._corpus(), Path(self.cache_dir) / "tokenizers")
        return self._tokenizer

    def _corpus(self) -> list[str]:
        language = suite_language(self.suite, dict(self.prompts.per_task), self.prompts.default)
        if language is not None:
            return language
        train = self.splits["train"]
        prompts = set(train["prompt"])
        corpus = [t.format(prompt=p) for t in self.prompts.all() for p in prompts]
        corpus += [" " + answer for answer in set(train["answer"])]
        if "texts" in train.column_names:  # interleaved documents: their text segments
            corpus += sorted({" " + text for texts in train["texts"] for text in texts if text})
        return corpus

    def examples(self, images: ImageProcessor, split: str, tasks: tuple[str, ...] | None = None) -> list[Sample]:
        """The samples of `split` (of `tasks` only, if given), decoded at `images`' resolution, once."""
        return self._samples.get_or_build(("decoded", images, split, tasks),
                                          lambda: split_examples(self.splits[split], images, tasks))

    def training_samples(self, images: ImageProcessor, split: str) -> Samples:
        """A split's samples to train (or validate) on: decoded into memory once, when the suite says it fits
        (a generated suite), else read from its Arrow files by the loader's workers (a hub suite, any size)."""
        if self.suite.in_memory:
            return self._samples.get_or_build(("in memory", images, split),
                                              lambda: InMemorySamples(self.examples(images, split)))
        return self._samples.get_or_build(("arrow", images, split),
                                          lambda: ArrowSamples(self.splits[split], images))

    def context_pool(self, images: ImageProcessor, tasks: set[str]) -> list[Sample]:
        """The training rows k-shot evaluation draws its shots from: those of the tasks the shots come from."""
        sources = self.suite.context_tasks()
        return self.examples(images, "train", tuple(sorted({sources.get(t, t) for t in tasks})))
