"""`make bench-latency AXIS=connector`: how fast every arm of an ablation serves one request, on this machine.

Each arm is composed as `vlmlab sweep AXIS overrides...` plans it (its first seed: seeds change the weights, not the
shapes), built as its run builds it (the zoo's or random weights, whatever the arm says, on the run's device and
dtype, adapted through every stage) and timed as a run times itself after its evaluation (vlmlab.eval.latency):
batch 1, greedy, KV cache, `latency.samples` test items of the run's own evaluation after one untimed request.
Untrained weights serve as fast as trained ones: every request decodes exactly `latency.new_tokens` tokens.

Usage: python -m vlmlab.bench.latency AXIS [--untuned] [key=value ...]  (e.g. trainer=gpu, latency.samples=16)
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from vlmlab.errors import ConfigError
from vlmlab.eval.latency import Latency, LatencySettings, measure_latency
from vlmlab.models.vlm import VisionLanguageModel
from vlmlab.train import run
from vlmlab.train.performance import evaluation_precision, training_device
from vlmlab.train.pipeline import DataPipeline
from vlmlab.train.sample_cost import mean_image_tokens
from vlmlab.train.stages import resolve_stages


@dataclass(frozen=True)
class ArmLatency:
    """One arm served: its visual tokens per test image, its latency, and where its backbones' weights came from."""

    arm: str
    visual_tokens: float
    latency: Latency
    weights: str


def device_name(cfg: DictConfig) -> str:
    """The device a run of `cfg` serves on, named as a record's provenance names it."""
    device = training_device(cfg.trainer)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _weights(model: VisionLanguageModel, cfg: DictConfig) -> str:
    """Where each backbone's weights come from: the zoo (it has a quality score), the hub, or random init."""
    quality = model.backbone_quality()
    parts = []
    for component, score in (("vision", quality["vision_quality"]), ("lm", quality["lm_quality"])):
        source = "zoo" if score is not None else (
            "hub" if OmegaConf.select(cfg, f"model.{component}.pretrained") else "random")
        parts.append(f"{component} {source}")
    return ", ".join(parts)


def serve(arm: str, cfg: DictConfig) -> ArmLatency:
    """The latency of the model a run of `cfg` evaluates, on the test items it evaluates, timed as it times it."""
    settings = LatencySettings.from_config(cfg.get("latency"))
    stages = resolve_stages(cfg)
    pipeline = DataPipeline.of(cfg)
    model = run.build_model(cfg, stages, pipeline.tokenizer, upto=len(stages) - 1)
    images, collator = run.stage_collator(stages[-1].config, model, pipeline)
    test = run.evaluation_examples(cfg, pipeline, images)
    with evaluation_precision(cfg.trainer):
        latency = measure_latency(model, collator, test, settings)
    if latency is None:
        raise ConfigError("latency.samples", f"is {settings.samples} with {len(test)} test items: arm '{arm}' has "
                                             "nothing to time")
    tokens = mean_image_tokens(model.visual_tokens, images, test, training=False)
    return ArmLatency(arm, tokens, latency, _weights(model, cfg))


def arm_configs(axis: str, overrides: Sequence[str], tuned: bool = True) -> dict[str, DictConfig]:
    """Each arm's config (of its first seed) as `vlmlab sweep AXIS overrides...` composes it."""
    from hydra_plugins.vlmlab_ablation_sweeper.ablation_sweeper import plan_ablation
    from vlmlab.cli.command import pinned_paths, scales, train_composer

    with train_composer() as compose:
        overrides = [*pinned_paths(compose(list(overrides)).paths), *overrides]
        plan = plan_ablation(axis, compose(overrides), compose, scales(), overrides, tuned)
    configs: dict[str, DictConfig] = {}
    for job in plan.jobs:
        configs.setdefault(job.run.arm, job.config)
    return configs


def report(axis: str, served: Sequence[ArmLatency], cfg: DictConfig) -> str:
    """One line per arm, under a line naming the device and the settings."""
    settings = LatencySettings.from_config(cfg.get("latency"))
    width = max(len(s.arm) for s in served)
    lines = [f"{axis}: serving latency on {device_name(cfg)}, precision {cfg.trainer.precision}, batch 1, greedy, "
             f"KV cache; median of {settings.samples} test items, {settings.new_tokens} new tokens each"]
    for s in served:
        lines.append(f"{s.arm:<{width}}  visual tokens/image {s.visual_tokens:>6g}  TTFT {s.latency.ttft_ms:8.1f} ms  "
                     f"decode {s.latency.decode_tokens_per_s:8.1f} tok/s  ({s.weights})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Time every arm of the ablation and print the table: 0, or 2 when the ablation is refused."""
    from hydra.errors import HydraException

    from vlmlab.sweep.ablation import AblationError

    parser = argparse.ArgumentParser(prog="python -m vlmlab.bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("axis", metavar="AXIS", help="an ablation: a file of paths.ablations_dir")
    parser.add_argument("--untuned", action="store_true", help="the arms without their `vlmlab tune` values")
    parser.add_argument("overrides", nargs="*", default=[], metavar="key=value")
    args = parser.parse_args(argv)
    try:
        configs = arm_configs(args.axis, args.overrides, tuned=not args.untuned)
        served = [serve(arm, cfg) for arm, cfg in configs.items()]
    except (AblationError, ConfigError, HydraException) as err:
        print(f"bench-latency: {err}", file=sys.stderr)
        return 2
    print(report(args.axis, served, next(iter(configs.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
