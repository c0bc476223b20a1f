"""The speed knobs of `performance` in conf/train.yaml applied to a built model: none changes what it learns.

Where a model is built also belongs here: on the device the process trains on and in the dtype it trains in
(bf16 under `bf16-true`), so that a pretrained 7B LM is never first materialised in fp32 on the CPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from omegaconf import DictConfig
from torch import nn
from transformers import PreTrainedModel

from vlmlab.train.parallel import local_rank
from vlmlab.train.sharding import layer_classes

# Lightning precisions whose weights themselves are in a half type; the mixed ones keep fp32 weights.
_WEIGHT_DTYPES = {"bf16-true": torch.bfloat16, "bf16": torch.bfloat16, "16-true": torch.float16,
                  "64-true": torch.float64, "64": torch.float64}

# The mixed precisions: fp32 weights, computation autocast to a half type.
_AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def training_device(trainer: DictConfig) -> torch.device:
    """The device this process trains on: its own GPU under a CUDA trainer, else the CPU."""
    if str(trainer.get("accelerator", "cpu")) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank())
    return torch.device("cpu")


def weight_dtype(trainer: DictConfig) -> torch.dtype:
    """The dtype the weights train in under `trainer.precision` (fp32 for the mixed precisions)."""
    return _WEIGHT_DTYPES.get(str(trainer.get("precision", "32-true")), torch.float32)


@contextmanager
def building_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """New tensors (random weights, and pretrained ones: the towers read the defaults) on `device` in `dtype`."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            yield
    finally:
        torch.set_default_dtype(previous)


def _hf_models(model: nn.Module) -> list[PreTrainedModel]:
    return [module for module in model.modules() if isinstance(module, PreTrainedModel)]


def apply_performance(model: nn.Module, performance: DictConfig | None) -> None:
    """Set the attention kernel, gradient checkpointing and compilation of `model`'s transformers parts."""
    performance = performance or {}
    attention = performance.get("attn_implementation")
    for hf_model in _hf_models(model):
        if attention and hf_model.config._attn_implementation != attention:
            hf_model.set_attn_implementation(attention)
        if performance.get("gradient_checkpointing") and hf_model.supports_gradient_checkpointing:
            # Non-reentrant: works with frozen inputs (a frozen tower feeding LoRA) and with FSDP.
            hf_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if performance.get("compile"):
        # Block by block, in place: each encoder or decoder layer is one graph (short compiles, no graph break
        # across the VLM's own Python), and the class is unchanged, so FSDP still finds its units.
        wanted = layer_classes(model)
        for module in model.modules():
            if type(module) in wanted:
                module.compile()


def fused_optimizer(performance: DictConfig | None, device: torch.device,
                    optimizer: Callable[..., torch.optim.Optimizer]) -> dict[str, bool]:
    """The keyword for `optimizer`'s fused kernel when `performance.fused_optimizer` asks and both have one."""
    wanted = bool((performance or {}).get("fused_optimizer"))
    # The optimizer's own signature says whether it has a fused kernel (AdamW, SGD do; Adafactor does not), so a
    # preset that asks for it runs any optimizer, fused where it can be.
    return {"fused": True} if wanted and device.type == "cuda" and _accepts(optimizer, "fused") else {}


def _accepts(function: Callable, keyword: str) -> bool:
    """Whether `function` (a class, a partial) takes `keyword`."""
    try:
        return keyword in inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): do not guess
        return False


def evaluation_precision(trainer: DictConfig):
    """The autocast evaluation runs under: the one training ran under (bf16 autocast for bf16-mixed on a GPU)."""
    dtype = _AUTOCAST_DTYPES.get(str(trainer.get("precision", "32-true")))
    device = training_device(trainer)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None and device.type == "cuda" else nullcontext()
