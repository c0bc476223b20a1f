"""`make bench`: the Lightning training loop against a bare PyTorch loop on the same model, data and optimizer.

Both loops run in this one process, alternating, so the ratio is measured under the same conditions.
Usage: python -m vlmlab.bench [--steps N] [--repeats R] [key=value ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vlmlab.cli import CONF_DIR
from vlmlab.data.tokenizer import IMAGE_TOKEN
from vlmlab.models.build import build_vlm
from vlmlab.train import run
from vlmlab.train.datamodule import VLMDataModule
from vlmlab.data.collate import VLMCollator
from vlmlab.train.module import VLMTrainingModule


def _setup(cfg):
    spec, images = instantiate(cfg.data.suite), instantiate(cfg.data.image, _convert_="all")
    tokenizer = run._tokenizer(spec, cfg.paths.cache_dir, run.all_templates(cfg.data), None)
    torch.manual_seed(0)
    model = build_vlm(cfg.model, len(tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), images.tower_size)
    collator = VLMCollator(tokenizer, images, model.sequence_tokens, cfg.data.prompt_template,
                           run.prompt_templates(cfg.data))
    train = run._examples(spec, cfg.paths.cache_dir, images, "train")
    return model, VLMDataModule(train, train[:16], collator, cfg.data.batch_size, cfg.seed)


def bare_loop(cfg, steps: int) -> float:
    """Seconds per step of a hand-written loop: forward, backward, clip, AdamW step, scheduler step."""
    model, datamodule = _setup(cfg)
    module = VLMTrainingModule(model, cfg.optim, steps)
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    batches = iter(datamodule.train_dataloader())
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        loss = model(**next(batches)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.gradient_clip_val)
        optimizer.step()
        scheduler.step()
    return (time.perf_counter() - started) / steps


def lightning_loop(cfg, steps: int) -> float:
    """Seconds per step of vlmlab's Trainer (same settings as a sweep run, minus checkpoints and loggers)."""
    model, datamodule = _setup(cfg)
    trainer = instantiate(cfg.trainer, max_steps=steps, logger=False, enable_checkpointing=False, val_check_interval=None,
                          limit_val_batches=0, default_root_dir=str(Path(cfg.paths.output_dir) / "bench"))
    started = time.perf_counter()
    trainer.fit(VLMTrainingModule(model, cfg.optim, steps), datamodule)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args, overrides = parser.parse_known_args()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["logger=none", *overrides])
    L.seed_everything(0, verbose=False)
    bare_loop(cfg, 5), lightning_loop(cfg, 5)  # warm-up: caches, allocator, first-call overheads
    bare, lit = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(cfg, args.steps))
        lit.append(lightning_loop(cfg, args.steps))
    b, l = statistics.median(bare), statistics.median(lit)
    print(f"threads={torch.get_num_threads()} steps={args.steps} repeats={args.repeats} batch={cfg.data.batch_size}")
    print(f"bare PyTorch loop : {1000 * b:7.1f} ms/step (median)")
    print(f"vlmlab (Lightning): {1000 * l:7.1f} ms/step (median)")
    print(f"ratio Lightning / bare: {l / b:.3f}")


if __name__ == "__main__":
    main()
