"""Fully sharded data parallel (FSDP) for a VLM: which layers are the units, and the Lightning strategy.

FSDP gathers one unit's parameters at a time, so the units must be the repeated blocks: the vision encoder's
layers and the LM's decoder layers. Their classes are not configured by hand (they differ per tower and LM
family); they are the classes that transformers marks as not to be split (`_no_split_modules`) and that
the model stacks in a ModuleList. Everything else (embeddings, connector, heads) stays in the root unit.
"""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedModel

from vlmlab.errors import ConfigError


def layer_classes(model: nn.Module) -> set[type[nn.Module]]:
    """The classes of the repeated transformer blocks of every transformers model inside `model`."""
    names: set[str] = set()
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            names.update(module._no_split_modules or ())
    stacked = {type(child) for module in model.modules() if isinstance(module, nn.ModuleList) for child in module}
    return {cls for cls in stacked if cls.__name__ in names}


def fully_sharded(model: nn.Module, sharding_strategy: str = "FULL_SHARD", activation_checkpointing: bool = False,
                  state_dict_type: str = "sharded", cpu_offload: bool = False):
    """Lightning's FSDPStrategy wrapping `model`'s encoder and decoder layers (conf/trainer/fsdp.yaml)."""
    from lightning.pytorch.strategies import FSDPStrategy

    layers = layer_classes(model)
    if not layers:
        raise ConfigError("trainer.strategy", "FSDP found no layer classes to wrap: no transformers model inside "
                          "this VLM names repeated blocks in `_no_split_modules`; use trainer=ddp", absolute=True)
    return FSDPStrategy(
        auto_wrap_policy=layers,
        activation_checkpointing_policy=layers if activation_checkpointing else None,
        sharding_strategy=sharding_strategy,
        state_dict_type=state_dict_type,
        cpu_offload=cpu_offload,
        # Frozen and trained parameters share units (a LoRA adapter beside its frozen base weight).
        use_orig_params=True,
        limit_all_gathers=True,
    )


def strategy_for(trainer_cfg, model: nn.Module) -> dict:
    """The Trainer's `strategy` argument when the config leaves it to be completed with the model
    (`_partial_: true`, as conf/trainer/fsdp.yaml does); empty otherwise (Hydra builds it, or it is a name)."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    node = trainer_cfg.get("strategy")
    if isinstance(node, DictConfig) and node.get("_partial_"):
        return {"strategy": instantiate(node)(model)}
    return {}


def full_weights(strategy) -> dict | None:
    """Every weight of an FSDP-trained module gathered whole on rank 0 (on the CPU); None on the other ranks.
    Every rank must call it: the gathering is collective."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullStateDictConfig, FullyShardedDataParallel, StateDictType

    if not isinstance(strategy, FSDPStrategy):
        return None
    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FullyShardedDataParallel.state_dict_type(strategy.model, StateDictType.FULL_STATE_DICT, config):
        state = strategy.model.state_dict()
    return state if strategy.is_global_zero else None
