"""One run, end to end: its data pipeline (shared per process), model, Lightning training, evaluation."""

from __future__ import annotations

import signal
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig
from transformers import PreTrainedTokenizerBase

from vlmlab.data.collate import Example, VLMCollator
from vlmlab.data.images import ImageProcessor
from vlmlab.data.suite import skipped_rows
from vlmlab.data.tokenizer import IMAGE_TOKEN
from vlmlab.eval.harness import evaluate, limit_per_task, with_context
from vlmlab.eval.latency import LatencySettings, measure_latency
from vlmlab.models.build import build_vlm, count_parameters, instantiate_group
from vlmlab.models.vlm import VisionLanguageModel
from vlmlab.run_record import Cost
from vlmlab.train.budget import Budget
from vlmlab.train.datamodule import VLMDataModule
from vlmlab.train.checkpoints import ResumableCheckpoint
from vlmlab.train.interrupt import RunInterrupted, StopRequest
from vlmlab.train.ledger import Row, TrainingLedger, loss_log_csv
from vlmlab.train.loggers import StageLogger, build_loggers
from vlmlab.train.module import VLMTrainingModule
from vlmlab.train.parallel import Parallelism
from vlmlab.train.pipeline import DataPipeline, prompt_templates
from vlmlab.train.performance import (
    apply_performance, building_on, evaluation_precision, training_device, weight_dtype,
)
from vlmlab.train.sharding import full_weights, strategy_for
from vlmlab.train.sample_cost import SampleCost, inference_sample_flops, mean_image_tokens, training_sample_cost
from vlmlab.train.stages import Stage, adaptation_changed, resolve_stages


@dataclass
class RunOutcome:
    """What a finished run measured: scores per task in percent, and its cost."""

    metrics: dict[str, float]
    cost: Cost
    predictions: list[dict[str, str | float]]
    dataset_version: str
    loss_log: str  # CSV: the training and validation losses, every row once, and the test scores


@dataclass
class ValidationOutcome:
    """What a train-only run (a tuning trial) measured: the final validation loss, and its cost."""

    val_loss: float
    cost: Cost


@dataclass
class _Trained:
    """A trained model with what evaluating it needs: its data, the last stage's collator and images, costs."""

    model: VisionLanguageModel
    pipeline: DataPipeline
    collator: VLMCollator
    images: ImageProcessor
    stage_costs: list[Cost]
    loggers: list
    loss_rows: list[Row]
    is_global_zero: bool  # the process that evaluates and reports (the only one, under several processes)


@dataclass
class _StageResult:
    """What training one stage leaves: its collator and images, its cost, its ledger, the trainer's strategy."""

    collator: VLMCollator
    images: ImageProcessor
    cost: Cost
    ledger: TrainingLedger
    strategy: L.pytorch.strategies.Strategy


@dataclass
class StageData:
    """What one stage trains on: images and collator for `model`, the data module, one sample's cost."""

    images: ImageProcessor
    collator: VLMCollator
    datamodule: VLMDataModule
    sample: SampleCost


def stage_collator(cfg: DictConfig, model: VisionLanguageModel, pipeline: DataPipeline
                   ) -> tuple[ImageProcessor, VLMCollator]:
    """The image processing and collator of a stage with config `cfg`, for `model`."""
    images: ImageProcessor = instantiate(cfg.data.image, _convert_="all")
    return images, VLMCollator(pipeline.tokenizer, images, model.sequence_tokens, cfg.data.prompt_template,
                               prompt_templates(cfg.data))


def stage_data(cfg: DictConfig, model: VisionLanguageModel, pipeline: DataPipeline, layout: Parallelism) -> StageData:
    """The data of a stage with config `cfg`, in micro-batches of `layout` (`make bench` builds it this way too)."""
    performance = cfg.get("performance") or {}
    images, collator = stage_collator(cfg, model, pipeline)
    datamodule = VLMDataModule(pipeline.training_samples(images, "train"), pipeline.training_samples(images, "validation"),
                               collator, layout.micro_batch, cfg.seed, cfg.data.num_workers, cfg.data.get("mixture"),
                               pin_memory=bool(performance.get("pin_memory")),
                               prefetch_factor=performance.get("prefetch_factor"))
    # Resolved with the model as this stage trains it: what trains decides what a backward costs.
    sample = training_sample_cost(model, collator, images, datamodule.train_examples, datamodule.train_weights,
                                  layout.micro_batch)
    return StageData(images, collator, datamodule, sample)


def _train_stage(
    stage: Stage, model: VisionLanguageModel, pipeline: DataPipeline, loggers: list,
    offset: int, checkpoint_dir: Path, stop: StopRequest | None, validate: bool = False,
) -> _StageResult:
    """Train `model` for one stage, resuming exactly from its last checkpoint if any, with the validation loss
    of the trained model in its cost when `validate`."""
    cfg, batch = stage.config, stage.config.data.batch_size
    layout = Parallelism.from_config(cfg)  # batch is the global batch; each process runs micro-batches of it
    data = stage_data(cfg, model, pipeline, layout)
    images, collator, datamodule, sample = data.images, data.collator, data.datamodule, data.sample
    # Every training row, decoded or described (its image shapes without its pixels).
    train = pipeline.training_samples(images, "train").described()
    budget = Budget.from_config(cfg.get("budget"))
    steps = budget.steps(cfg.trainer.max_steps, batch, sample)
    last = checkpoint_dir / "last.ckpt"
    ledger = TrainingLedger(step_offset=offset, log_every_n_steps=cfg.trainer.log_every_n_steps)
    checkpoints = ResumableCheckpoint(last, cfg.checkpoint_every_n_steps, stop)
    trainer: L.Trainer = instantiate(
        cfg.trainer, max_steps=steps, logger=[StageLogger(logger, offset, stage.name) for logger in loggers],
        callbacks=[ledger, checkpoints], default_root_dir=checkpoint_dir.parent,
        **layout.trainer_arguments(), **strategy_for(cfg.trainer, model),
    )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    try:
        with stop.deferred() if stop is not None else nullcontext(), warnings.catch_warnings():
            # Lightning looks for the data position in the DataLoader; VLMDataModule keeps it instead.
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
            trainer.fit(VLMTrainingModule(model, cfg.optim, steps, cfg.get("performance")), datamodule,
                        ckpt_path=last if last.exists() else None)
    except SIGTERMException:  # Lightning's own SIGTERM exit at an epoch end, between two of our checks
        raise RunInterrupted(signal.SIGTERM) from None
    samples = trainer.global_step * batch
    val_loss = None
    if validate:  # the same validation batches for every trial: a fair, cheap ranking of learning rates
        module = trainer.lightning_module
        val_loss = float(trainer.validate(module, datamodule, verbose=False)[0]["val/loss"])
    seconds = ledger.seconds
    return _StageResult(collator, images, Cost(
        **count_parameters(model),
        **model.backbone_quality(),
        val_loss=val_loss,
        stage=stage.name,
        budget=budget.record(steps),
        train_steps=trainer.global_step,
        train_seconds=round(seconds, 3),
        train_samples_per_second=round(samples / seconds, 2) if seconds > 0 else None,
        visual_tokens_per_image=mean_image_tokens(model.visual_tokens, images, train, training=True),
        sequence_tokens_per_image=mean_image_tokens(model.sequence_tokens, images, train, training=True),
        train_flops_per_sample=round(sample.flops),
        train_flops=round(sample.flops * samples),
        train_tokens=round(sample.tokens * samples),
        train_images=samples,
        peak_memory_mb=None if ledger.peak_mb is None else round(ledger.peak_mb, 1),
        peak_memory_kind=ledger.peak_kind,
        devices=layout.world_size,
        micro_batch_size=layout.micro_batch,
        accumulation=layout.accumulation,
        checkpoint_seconds=round(checkpoints.seconds, 3),
        checkpoint_saves=checkpoints.saves,
        checkpoint_bytes=checkpoints.bytes,
    ), ledger, trainer.strategy)


def _run_cost(stage_costs: list[Cost], **measured_after: Any) -> Cost:
    """The cost of the whole run from its stages' (sizes as the last stage trained; FLOPs, tokens, images, steps,
    time and checkpoint time summed; the highest peak memory and largest checkpoint), plus what was measured after
    training."""
    last = stage_costs[-1]
    images = sum(c.train_images for c in stage_costs)
    flops = sum(c.train_flops for c in stage_costs)
    seconds = sum(c.train_seconds for c in stage_costs)
    return Cost(
        params_total=last.params_total, params_trainable=last.params_trainable,
        params_by_component=last.params_by_component, visual_tokens_per_image=last.visual_tokens_per_image,
        sequence_tokens_per_image=last.sequence_tokens_per_image,
        train_steps=sum(c.train_steps for c in stage_costs),
        train_seconds=round(seconds, 3),
        train_samples_per_second=round(images / seconds, 2) if seconds > 0 else None,
        train_flops=flops, train_tokens=sum(c.train_tokens for c in stage_costs), train_images=images,
        train_flops_per_sample=round(flops / images) if images else None,
        peak_memory_mb=max((c.peak_memory_mb for c in stage_costs if c.peak_memory_mb is not None), default=None),
        peak_memory_kind=stage_costs[0].peak_memory_kind,
        devices=last.devices, micro_batch_size=last.micro_batch_size, accumulation=last.accumulation,
        checkpoint_seconds=round(sum(c.checkpoint_seconds for c in stage_costs), 3),
        checkpoint_saves=sum(c.checkpoint_saves for c in stage_costs),
        checkpoint_bytes=max(c.checkpoint_bytes for c in stage_costs),
        vision_quality=last.vision_quality, lm_quality=last.lm_quality,
        stages=stage_costs if len(stage_costs) > 1 else None,
        **measured_after,
    )


def _adapt_for_stage(model: VisionLanguageModel, before: Stage, stage: Stage) -> None:
    """Apply a stage's change of adaptation (freeze, unfreeze, inject adapters) to the trained model."""
    for component, module_attr in (("vision", ("vision", "encoder")), ("lm", ("lm", "model"))):
        if adaptation_changed(before.config, stage.config, component):
            owner = getattr(model, module_attr[0])
            adaptation = instantiate_group(f"model.adapt.{component}", stage.config.model.adapt[component])
            setattr(owner, module_attr[1], adaptation.apply(getattr(owner, module_attr[1])))


def build_model(cfg: DictConfig, stages: list[Stage], tokenizer: PreTrainedTokenizerBase, upto: int,
                 speed: bool = True) -> VisionLanguageModel:
    """The run's VLM as stage `upto` trains it (adapted by every stage before), on the training device and dtype,
    its weights fixed by the run's seed; `speed`: with the performance knobs applied."""
    first = stages[0].config
    tower_size = instantiate(first.data.image, _convert_="all").tower_size
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before building: the seed fixes the initial weights
    with building_on(training_device(cfg.trainer), weight_dtype(cfg.trainer)):
        model = build_vlm(first.model, len(tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), tower_size)
    for index in range(1, upto + 1):
        _adapt_for_stage(model, stages[index - 1], stages[index])
    if speed:
        apply_performance(model, cfg.get("performance"))
    return model


def _train(cfg: DictConfig, run_dir: Path, run_id: str, stop: StopRequest | None, validate: bool = False) -> _Trained:
    """Train the configured VLM stage by stage, resuming from the last checkpoints (and validate the last stage)."""
    stages = resolve_stages(cfg)
    pipeline = DataPipeline.of(cfg)
    tokenizer = pipeline.tokenizer
    model = build_model(cfg, stages, tokenizer, upto=0)
    loggers = build_loggers(cfg, run_id)
    stage_costs: list[dict] = []
    loss_rows: list[Row] = []
    for index, stage in enumerate(stages):
        if index:
            _adapt_for_stage(model, stages[index - 1], stage)
        # A single-stage run keeps its checkpoints where it always did: resuming works across versions.
        checkpoint_dir = run_dir / ("checkpoints" if len(stages) == 1 else f"stage{index}-{stage.name}")
        offset = sum(c.train_steps for c in stage_costs)
        at_end = validate and index == len(stages) - 1
        result = _train_stage(stage, model, pipeline, loggers, offset, checkpoint_dir, stop, at_end)
        stage_costs.append(result.cost)
        loss_rows.extend(result.ledger.rows)
    # Evaluation runs on rank 0 alone. DDP left it the whole model; FSDP left each rank a shard, so the weights
    # are gathered on rank 0 and loaded into a model of its own.
    if (weights := full_weights(result.strategy)) is not None:
        model = build_model(cfg, stages, tokenizer, upto=len(stages) - 1, speed=False)
        model.load_state_dict({key.removeprefix("model."): value for key, value in weights.items()})
    return _Trained(model, pipeline, result.collator, result.images, stage_costs, loggers, loss_rows,
                    result.strategy.is_global_zero)


def export_trainable(model: VisionLanguageModel, path: Path) -> None:
    """Write the trained parameters of `model` (connector, adapters, what was fine-tuned) as safetensors: with the
    run's config, which rebuilds the frozen rest, they are the trained model."""
    from safetensors.torch import save_file

    trained = {name: param.detach().cpu().contiguous() for name, param in model.named_parameters()
               if param.requires_grad}
    partial = path.with_name(f".{path.name}.partial")
    save_file(trained, str(partial))
    partial.replace(path)


def train_and_validate(cfg: DictConfig, run_dir: Path, run_id: str,
                       stop: StopRequest | None = None) -> ValidationOutcome:
    """Train the configured VLM (resuming from the last checkpoints) and measure its validation loss; no test set."""
    trained = _train(cfg, run_dir, run_id, stop, validate=True)
    for logger in trained.loggers:
        logger.finalize("success")
    costs = trained.stage_costs
    return ValidationOutcome(val_loss=costs[-1].val_loss, cost=Cost(
        train_steps=sum(c.train_steps for c in costs), train_seconds=round(sum(c.train_seconds for c in costs), 3),
    ))


def evaluation_examples(cfg: DictConfig, pipeline: DataPipeline, images: ImageProcessor) -> list[Example]:
    """The test items a run with config `cfg` evaluates on, at `images`' processing, with their k-shot contexts."""
    spec = pipeline.suite
    test = limit_per_task(pipeline.examples(images, cfg.eval.split), cfg.eval.limit_per_task)
    tasks = set(cfg.eval.tasks or spec.task_metrics())  # null: every benchmark the suite scores
    test = [ex for ex in test if ex.task in tasks]
    # k-shot evaluation (the paper's ablations are 4-shot): contexts drawn from the training split with a fixed seed.
    shots = cfg.eval.get("shots", 0)
    pool = pipeline.context_pool(images, tasks) if shots > 0 else []  # zero-shot decodes no training rows for it
    return with_context(test, pool, shots, seed=0, sources=spec.context_tasks())


def train_and_evaluate(cfg: DictConfig, run_dir: Path, run_id: str,
                       stop: StopRequest | None = None) -> RunOutcome | None:
    """Train the configured VLM stage by stage (resuming exactly from the last checkpoints), then evaluate it and
    time it serving single requests; None on every process but rank 0 of a multi-process run, which alone
    evaluates and reports."""
    latency = LatencySettings.from_config(cfg.get("latency"))  # read now: a bad value fails before training
    trained = _train(cfg, run_dir, run_id, stop)
    if not trained.is_global_zero:
        return None
    model, pipeline, collator, images = trained.model, trained.pipeline, trained.collator, trained.images
    spec = pipeline.suite
    model.to(training_device(cfg.trainer))  # Lightning hands the model back on the CPU after fit
    if (cfg.get("checkpoint") or {}).get("export_final"):
        export_trainable(model, run_dir / "final.safetensors")
    stage_costs, loggers = trained.stage_costs, trained.loggers
    test = evaluation_examples(cfg, pipeline, images)
    started = time.perf_counter()
    with evaluation_precision(cfg.trainer):
        result = evaluate(model, collator, test, cfg.eval.batch_size, cfg.eval.max_new_tokens, spec.task_metrics())
    eval_seconds = time.perf_counter() - started
    with evaluation_precision(cfg.trainer):  # after eval_seconds: the evaluation's time stays what it measured
        served = measure_latency(model, collator, test, latency)
    steps = sum(c.train_steps for c in stage_costs)
    test_row = {f"test/{task}": score for task, score in result.scores.items()}
    for logger in loggers:
        logger.log_metrics(test_row, step=steps)
        logger.finalize("success")

    cost = _run_cost(
        stage_costs,
        visual_tokens_per_image_eval=mean_image_tokens(model.visual_tokens, images, test, training=False),
        budget=Budget.from_config(cfg.get("budget")).record(sum(c.budget["steps"] for c in stage_costs)),
        eval_seconds=round(eval_seconds, 3),
        eval_samples=result.samples,
        eval_generated_tokens=round(result.generated_tokens, 2),
        inference_flops_per_sample=round(inference_sample_flops(
            model, collator, images, test, result.generated_tokens, max(1, min(cfg.eval.batch_size, len(test))),
        )) if test else None,
        data_skipped=skipped_rows(spec, pipeline.cache_dir) or None,
        ttft_ms=None if served is None else round(served.ttft_ms, 2),
        decode_tokens_per_s=None if served is None else round(served.decode_tokens_per_s, 1),
    )
    return RunOutcome(metrics=result.scores, cost=cost, predictions=result.predictions, dataset_version=spec.version,
                      loss_log=loss_log_csv([*trained.loss_rows, {"step": steps, **test_row}]))
