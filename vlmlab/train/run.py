"""One run, end to end: data (cached per process), tokenizer, model, Lightning training, evaluation."""

from __future__ import annotations

import functools
from collections import Counter
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.data.examples import split_examples
from vlmlab.data.images import ImageProcessor
from vlmlab.data.suite import Suite
from vlmlab.data.tokenizer import IMAGE_TOKEN, pretrained_tokenizer, synthetic_tokenizer
from vlmlab.eval.harness import evaluate, limit_per_task, with_context
from vlmlab.models.build import build_vlm, count_parameters
from vlmlab.train.datamodule import VLMDataModule
from vlmlab.train.loggers import build_loggers
from vlmlab.train.module import VLMTrainingModule


@dataclass
class RunOutcome:
    """What a finished run measured: scores per task in percent, and its cost."""

    metrics: dict[str, float]
    cost: dict[str, float | int]
    predictions: list[dict[str, str]]
    dataset_version: str


# The caches below are what lets a sweep build its dataset, tokenizer and processed images once for all runs.
@functools.lru_cache(maxsize=4)
def _suite(spec: Suite, cache_dir: str) -> datasets.DatasetDict:
    return spec.load(cache_dir)


@functools.lru_cache(maxsize=16)
def _examples(spec: Suite, cache_dir: str, images: ImageProcessor, split: str) -> list[Example]:
    return split_examples(_suite(spec, cache_dir)[split], images)


@functools.lru_cache(maxsize=8)
def _tokenizer(spec: Suite, cache_dir: str, template: str, pretrained: str | None) -> PreTrainedTokenizerBase:
    if pretrained is not None:
        return pretrained_tokenizer(pretrained)
    train = _suite(spec, cache_dir)["train"]
    corpus = [template.format(prompt=p) for p in set(train["prompt"])] + [" " + a for a in set(train["answer"])]
    return synthetic_tokenizer(corpus, Path(cache_dir) / "tokenizers")


def _mean_tokens(count, images: ImageProcessor, examples: list[Example], training: bool) -> float | int:
    """Mean tokens per image over `examples` (an int when every image costs the same, as with square images)."""
    shapes = Counter(tuple(ex.pixels.shape[-2:]) for ex in examples)
    total = sum(n * count(images.view_shapes(h, w, training)) for (h, w), n in shapes.items())
    mean = total / max(1, len(examples))
    return int(mean) if mean == int(mean) else round(mean, 2)


def train_and_evaluate(cfg: DictConfig, run_dir: Path, run_id: str) -> RunOutcome:
    """Train the configured VLM (resuming from `run_dir`'s last checkpoint if any), then evaluate it."""
    spec: Suite = instantiate(cfg.data.suite)
    images: ImageProcessor = instantiate(cfg.data.image, _convert_="all")
    cache_dir = str(cfg.paths.cache_dir)
    tokenizer = _tokenizer(spec, cache_dir, cfg.data.prompt_template, cfg.model.lm.get("pretrained"))

    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before building: the seed fixes the initial weights
    model = build_vlm(cfg.model, len(tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), images.tower_size)
    collator = VLMCollator(tokenizer, images, model.sequence_tokens, cfg.data.prompt_template)
    datamodule = VLMDataModule(
        _examples(spec, cache_dir, images, "train"), _examples(spec, cache_dir, images, "validation"),
        collator, cfg.data.batch_size, cfg.seed, cfg.data.num_workers, cfg.data.get("mixture"),
    )
    module = VLMTrainingModule(model, cfg.optim, cfg.trainer.max_steps)
    checkpoints = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0, every_n_train_steps=cfg.checkpoint_every_n_steps
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=build_loggers(cfg, run_dir, run_id), callbacks=[checkpoints], default_root_dir=run_dir
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    started = time.perf_counter()
    trainer.fit(module, datamodule, ckpt_path=last if last.exists() else None)
    train_seconds = time.perf_counter() - started

    test = limit_per_task(_examples(spec, cache_dir, images, cfg.eval.split), cfg.eval.limit_per_task)
    tasks = set(cfg.eval.tasks or spec.task_metrics())  # null: every benchmark the suite scores
    test = [ex for ex in test if ex.task in tasks]
    # k-shot evaluation (the paper's ablations are 4-shot): contexts drawn from the training split with a fixed seed.
    # Read with a default until the v2 defaults land, so that committed run ids stay valid.
    test = with_context(test, _examples(spec, cache_dir, images, "train"), cfg.eval.get("shots", 0), seed=0)
    started = time.perf_counter()
    result = evaluate(model, collator, test, cfg.eval.batch_size, cfg.eval.max_new_tokens, spec.task_metrics())
    eval_seconds = time.perf_counter() - started
    for logger in trainer.loggers:
        logger.log_metrics({f"test/{task}": score for task, score in result.scores.items()}, step=trainer.global_step)
        logger.finalize("success")

    samples = trainer.global_step * cfg.data.batch_size
    train_examples = _examples(spec, cache_dir, images, "train")
    cost = count_parameters(model) | {
        "visual_tokens_per_image": _mean_tokens(model.visual_tokens, images, train_examples, training=True),
        "visual_tokens_per_image_eval": _mean_tokens(model.visual_tokens, images, test, training=False),
        "sequence_tokens_per_image": _mean_tokens(model.sequence_tokens, images, train_examples, training=True),
        "train_steps": trainer.global_step,
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "train_samples_per_second": round(samples / train_seconds, 2) if train_seconds > 0 else None,
        "eval_samples": result.samples,
    }
    return RunOutcome(metrics=result.scores, cost=cost, predictions=result.predictions, dataset_version=spec.version)
