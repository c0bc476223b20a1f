"""How one run's global batch spreads over processes: devices × nodes × micro-batches × accumulation.

`data.batch_size` is the global batch, the samples behind one optimizer step. It is the run's science and
is in its identity; the way it is computed is not: `trainer.devices`, `trainer.num_nodes` and
`performance.micro_batch_size` (the batch one process runs at once) only decide how many micro-batches
each process accumulates before the step. The same global batch on one GPU or eight is the same run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from vlmlab.errors import ConfigError, is_int


def _count(value: Any, key: str) -> int | None:
    """A device or node count from a Trainer argument: an int, a list of device ids, or "auto"/-1 (None: the
    devices visible where it runs)."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a positive integer, a list of device ids, -1 or 'auto', got {value!r}")
    if isinstance(value, int) and value > 0:
        return value
    if value in (-1, "auto", "-1"):
        return None
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    if isinstance(value, (list, tuple)) or (hasattr(value, "__len__") and not isinstance(value, str)):
        if len(value) == 0:
            raise ConfigError(key, "is an empty list of devices")
        return len(value)
    raise ConfigError(key, f"must be a positive integer, a list of device ids, -1 or 'auto', got {value!r}")


def global_rank() -> int:
    """This process's rank in a multi-process run, from the variables launchers set (0 when alone)."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):  # torchrun / Lightning / vlmlab, SLURM's srun, Lightning
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def local_rank() -> int:
    """This process's index among the run's processes on its node (0 when alone)."""
    for variable in ("LOCAL_RANK", "SLURM_LOCALID"):  # torchrun / Lightning / vlmlab's launcher, SLURM's srun
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 0


def launched_from_outside() -> bool:
    """Whether this process is one rank of a run some launcher (torchrun, srun, submitit, vlmlab) started."""
    if "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ:
        return True
    return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ


def visible_devices(accelerator: str) -> int:
    """How many devices of `accelerator` this machine has (1 for the CPU: one process trains there)."""
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    if accelerator == "auto":
        return max(1, torch.cuda.device_count())
    return 1


@dataclass(frozen=True)
class Parallelism:
    """One run's layout: processes per node, nodes, and what each process runs per optimizer step."""

    devices: int  # processes per node
    nodes: int
    micro_batch: int  # samples one process runs in one forward/backward
    accumulation: int  # micro-batches each process runs per optimizer step
    global_batch: int

    @property
    def world_size(self) -> int:
        """Processes that train the run together."""
        return self.devices * self.nodes

    @classmethod
    def from_config(cls, cfg: DictConfig, devices: int | None = None) -> Parallelism:
        """The layout `cfg` asks for; `devices` is the resolved count where the config says "auto" (None: resolve
        it from this machine). ConfigError naming the key when the global batch cannot be split evenly."""
        trainer = cfg.trainer
        if devices is None:
            devices = _count(trainer.get("devices", 1), "trainer.devices")
        if devices is None:
            devices = visible_devices(str(trainer.get("accelerator", "auto")))
            if devices == 0:
                raise ConfigError("trainer.devices", f"is {trainer.devices!r} but this machine has no "
                                  f"{trainer.accelerator} device")
        nodes = _count(trainer.get("num_nodes", 1), "trainer.num_nodes") or 1
        global_batch = int(cfg.data.batch_size)
        performance = cfg.get("performance") or {}
        micro = performance.get("micro_batch_size")
        world = devices * nodes
        if micro is None:
            if global_batch % world:
                raise ConfigError("data.batch_size", (
                    f"the global batch {global_batch} does not split over {world} processes "
                    f"(trainer.devices={devices} × trainer.num_nodes={nodes}); make it a multiple of {world}"
                ), absolute=True)
            micro = global_batch // world
        if not is_int(micro) or micro <= 0:
            raise ConfigError("performance.micro_batch_size", f"must be a positive integer or null, got {micro!r}",
                              absolute=True)
        if global_batch % (world * micro):
            raise ConfigError("data.batch_size", (
                f"the global batch {global_batch} is not a multiple of trainer.devices × trainer.num_nodes × "
                f"performance.micro_batch_size = {devices} × {nodes} × {micro}"
            ), absolute=True)
        return cls(devices, nodes, micro, global_batch // (world * micro), global_batch)

    def trainer_arguments(self) -> dict[str, Any]:
        """What the Lightning Trainer is given for this layout (the sampler shards the data itself)."""
        return {"accumulate_grad_batches": self.accumulation, "use_distributed_sampler": False}


def check_layout(cfg: DictConfig) -> None:
    """Refuse a global batch that does not split over the configured processes (where the count is known)."""
    count = _count(cfg.trainer.get("devices", 1), "trainer.devices")
    if count is not None:
        Parallelism.from_config(cfg, devices=count)


def check_devices(cfg: DictConfig) -> None:
    """Refuse a trainer that asks for devices this machine does not have, naming the key; for runs that train
    here (not for a sweep whose jobs go to SLURM nodes)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", f"is {accelerator!r} but this machine has no CUDA device "
                          "(torch.cuda.is_available() is False): use trainer=cpu, or run where the GPUs are")
    nodes = _count(cfg.trainer.get("num_nodes", 1), "trainer.num_nodes") or 1
    if nodes > 1 and not launched_from_outside():
        raise ConfigError("trainer.num_nodes", f"is {nodes}: a run over several nodes needs a launcher on each "
                          "(hydra/launcher=slurm, or torchrun on every node)")
    wanted = _count(cfg.trainer.get("devices", 1), "trainer.devices")
    have = visible_devices(accelerator)
    if accelerator in ("gpu", "cuda", "auto") and wanted is not None and wanted > have and torch.cuda.is_available():
        raise ConfigError("trainer.devices", f"asks for {wanted} devices but this machine has {have}")
