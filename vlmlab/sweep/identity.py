"""Run identity: a short hash of the resolved config minus the keys that do not change the result."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Where outputs go, how they are logged and labelled, and how the work is spread and sped up do not change
# what a run learns. The global batch (data.batch_size) is science; how many devices, nodes and micro-batches
# make it up is not (vlmlab.train.parallel), so the same run on one GPU or eight has one identity.
NON_SCIENCE_KEYS = (
    "hydra", "paths", "logger", "ablation", "checkpoint", "checkpoint_every_n_steps", "performance",
    "data.num_workers", "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.sync_batchnorm",
    "trainer.log_every_n_steps", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "data.suite.mirror", "data.suite.image_store",  # where a hub suite's files are read from, not which files
    "model.vision.zoo_dir", "model.lm.zoo_dir",  # where zoo backbones are kept; their recipe names the weights
    "latency",  # how the trained model's serving latency is timed after evaluation: a measurement, not training
)


def science_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, without NON_SCIENCE_KEYS."""
    # The hydra node (present at planning time, not in a job) holds job-time interpolations: drop it unresolved.
    data = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    for dotted in NON_SCIENCE_KEYS:
        *parents, leaf = dotted.split(".")
        node = data
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return data


def run_id(cfg: DictConfig) -> str:
    """12 hex characters identifying the run's science: same config, same id, wherever it runs."""
    payload = json.dumps(science_config(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def hashes_to(config: Any, rid: Any) -> bool:
    """Whether `config` (a record's plain-data config) gives `rid` under this identity; a config the identity cannot
    digest is not vouched for."""
    try:
        return run_id(OmegaConf.create(config)) == rid
    except Exception:
        return False
