"""`make bench`: vlmlab's Lightning training loop against a bare PyTorch loop, same model, data and optimizer.

Both loops run in this one process, alternating, so their ratio is measured under the same conditions. Each
builds its model the way `vlmlab train` does (device, dtype, the `performance` knobs) and times the steps after
a warm-up (the first steps allocate, autotune and compile). It prints ms/step, samples/s, the model FLOPs
utilisation (vlmlab's analytic training FLOPs per sample × samples/s over the device's peak; on a GPU), the
peak memory of each loop, and the share of a bare step spent waiting for data.

Usage: python -m vlmlab.bench [--steps N] [--warmup W] [--repeats R] [--peak-tflops P] [key=value ...]
On a GPU: `make bench-gpu` runs it at the tiny default and at SigLIP-SO400M + 1.1B-Llama shapes
(`+shapes=siglip400m_llama1b`, random weights from configs, no download).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import DictConfig

from vlmlab.cli import CONF_DIR
from vlmlab.train import run
from vlmlab.train.datamodule import VLMDataModule
from vlmlab.train.memory import memory_probe
from vlmlab.train.module import VLMTrainingModule
from vlmlab.train.parallel import Parallelism
from vlmlab.train.pipeline import DataPipeline
from vlmlab.train.performance import training_device
from vlmlab.train.sharding import strategy_for
from vlmlab.train.stages import resolve_stages


@dataclass
class Measured:
    """One loop's timing: seconds per step after the warm-up, peak memory in MB (the CUDA allocator's on a GPU,
    the resident set's growth on the CPU), seconds waiting for data."""

    step_s: float
    peak_mb: float | None
    data_s: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _setup(cfg: DictConfig):
    """The model and its data module, built as a run builds them, and the FLOPs of one training sample."""
    pipeline = DataPipeline.of(cfg)
    model = run.build_model(cfg, resolve_stages(cfg), pipeline.tokenizer, upto=0)
    data = run.stage_data(cfg, model, pipeline, Parallelism.from_config(cfg, devices=1))
    return model, data.datamodule, data.sample.flops


class _StepTimes(L.Callback):
    """The time at the end of every step (the device synchronised), for the steps after the warm-up."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _sync(pl_module.device)
        self.ends.append(time.perf_counter())


def lightning_loop(cfg: DictConfig, steps: int, warmup: int) -> Measured:
    """vlmlab's Trainer as a sweep run builds it, minus checkpoints, loggers and validation."""
    model, datamodule, _flops = _setup(cfg)
    device = training_device(cfg.trainer)
    timer = _StepTimes()
    trainer = instantiate(cfg.trainer, max_steps=warmup + steps, logger=False, enable_checkpointing=False,
                          val_check_interval=None, limit_val_batches=0, callbacks=[timer],
                          default_root_dir=str(Path(cfg.paths.output_dir) / "bench"),
                          **Parallelism.from_config(cfg, devices=1).trainer_arguments(),
                          **strategy_for(cfg.trainer, model))
    probe = memory_probe(device)
    probe.start()
    trainer.fit(VLMTrainingModule(model, cfg.optim, warmup + steps, cfg.get("performance")), datamodule)
    ends = timer.ends[warmup - 1:] if warmup else timer.ends
    return Measured((ends[-1] - ends[0]) / (len(ends) - 1), probe.stop())


def bare_loop(cfg: DictConfig, steps: int, warmup: int) -> Measured:
    """A hand-written loop: forward under the run's autocast, backward, clip, optimizer step, scheduler step."""
    model, datamodule, _flops = _setup(cfg)
    device = training_device(cfg.trainer)
    module = VLMTrainingModule(model, cfg.optim, warmup + steps, cfg.get("performance"))
    # The module, not only its model: the optimizer is chosen by `module.device` (the fused kernel on a GPU), which
    # moving the inner model leaves on the CPU. Measured on an H100 at +shapes=siglip400m_llama1b with the model
    # alone moved, the bare loop stepped an unfused AdamW: 672 ms/step against Lightning's 395 (521 against 388 once
    # fixed; the rest of the gap is not explained).
    module.to(device)
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    precision = str(cfg.trainer.precision)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    batches = iter(_endless(datamodule))
    model.train()
    probe = memory_probe(device)
    probe.start()
    waited, started = 0.0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            started, waited = time.perf_counter(), 0.0
        fetch = time.perf_counter()
        batch = move_data_to_device(next(batches), device)
        waited += time.perf_counter() - fetch
        with autocast:
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
    _sync(device)
    return Measured((time.perf_counter() - started) / steps, probe.stop(), waited / steps)


def _endless(datamodule: VLMDataModule):
    """Batches over epochs from one DataLoader, as Lightning draws them: its persistent workers start once (a
    new DataLoader per epoch restarted them, which the bare loop paid every few steps on a small train split)."""
    loader = datamodule.train_dataloader()
    epoch = 0
    while True:
        datamodule.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _release() -> None:
    """Free the last loop's model before the next is built. Lightning's trainer and module refer to each other, so
    a finished fit keeps its model, gradients and optimizer state until the garbage collector runs, and the loop
    timed next would share the GPU with them. (On an H100 at +shapes=siglip400m_llama1b this was not what kept the
    bare loop slower than Lightning: 521 ms/step before, 494 after, against Lightning's 388 and 376.)"""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the device's dense peak for MFU (H100 SXM bf16: 989)")
    args, overrides = parser.parse_known_args()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=none", *overrides])
    L.seed_everything(0, verbose=False)
    _model, _data, flops_per_sample = _setup(cfg)
    del _model, _data
    # One untimed pass first: the first loop in a process pays for what the process keeps afterwards (compiled
    # layers, which compile again as new text lengths appear; the allocator's cached blocks; kernel choices).
    # Measured on an H100 at +shapes=siglip400m_llama1b without it: the bare loop, timed first, 702 ms/step
    # against Lightning's 399.
    bare_loop(cfg, args.warmup, args.warmup)
    bare, lit = [], []
    for _ in range(args.repeats):
        _release()
        bare.append(bare_loop(cfg, args.steps, args.warmup))
        _release()
        lit.append(lightning_loop(cfg, args.steps, args.warmup))
    batch = int(cfg.data.batch_size)
    device = training_device(cfg.trainer)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device={name} precision={cfg.trainer.precision} steps={args.steps} warmup={args.warmup} "
          f"repeats={args.repeats} batch={batch} overrides={' '.join(overrides) or '-'}")
    print(f"analytic training FLOPs per sample: {flops_per_sample / 1e12:.4f} TFLOPs")
    for label, runs in (("bare PyTorch loop ", bare), ("vlmlab (Lightning)", lit)):
        step = statistics.median(r.step_s for r in runs)
        peak = max((r.peak_mb for r in runs if r.peak_mb is not None), default=None)
        mfu = flops_per_sample * batch / step / (args.peak_tflops * 1e12) if device.type == "cuda" else None
        print(f"{label}: {1000 * step:8.1f} ms/step  {batch / step:8.1f} samples/s"
              + (f"  MFU {100 * mfu:5.1f}%" if mfu is not None else "")
              + (f"  peak {peak / 1024:6.2f} GiB ({memory_probe(device).kind})" if peak is not None else ""))
    data_share = statistics.median(r.data_s / r.step_s for r in bare)
    print(f"data loading: {100 * data_share:.1f}% of a bare step")
    ratio = statistics.median(r.step_s for r in lit) / statistics.median(r.step_s for r in bare)
    print(f"ratio Lightning / bare: {ratio:.3f}")


if __name__ == "__main__":
    main()
