"""Training stages: a run may train in several stages (Idefics2 pre-trains in two), each a patch of the run's
config that changes its steps, learning rates, data mixture, image processing or adaptation, and each
starting from the weights the previous stage left.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf, open_dict

from vlmlab.errors import ConfigError

# What a stage may change, and where that lives in the run's config. `merge` keeps the keys a stage does
# not mention (a learning rate for one component); replacing suits nodes that are swapped whole (an
# adaptation with another `_target_`, a mixture that drops a task).
STAGE_KEYS: dict[str, tuple[str, bool]] = {
    "max_steps": ("trainer.max_steps", False),
    "batch_size": ("data.batch_size", False),
    "lr": ("optim.lr", True),
    "warmup_steps": ("optim.schedule.warmup_steps", False),  # a stage's own warmup (its optimizer is new)
    "mixture": ("data.mixture", False),
    "image": ("data.image", True),
    "adapt_vision": ("model.adapt.vision", False),
    "adapt_lm": ("model.adapt.lm", False),
    "budget": ("budget", True),  # a stage's own length in steps / images / tokens / FLOPs (vlmlab.train.budget)
}
_ADAPTERS = ("LoRA", "DoRA")


@dataclass(frozen=True)
class Stage:
    """One stage: its name and the run's config as this stage sees it."""

    name: str
    config: DictConfig


def resolve_stages(cfg: DictConfig) -> list[Stage]:
    """The run's stages, each with its full config; a run without `stages` is one stage of its own config."""
    entries = cfg.get("stages") or [{"name": "main"}]
    stages, current = [], cfg
    for index, entry in enumerate(entries):
        where = f"stages[{index}]"
        unknown = sorted(set(entry) - set(STAGE_KEYS) - {"name"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"a stage can set name, {', '.join(STAGE_KEYS)}", absolute=True)
        current = OmegaConf.masked_copy(current, [k for k in current if k != "stages"])
        with open_dict(current):
            for key, (path, merge) in STAGE_KEYS.items():
                if key in entry:
                    OmegaConf.update(current, path, entry[key], merge=merge)
        _check_adapter_transition(stages[-1].config if stages else None, current, where)
        stages.append(Stage(str(entry.get("name", f"stage{index}")), current))
    return stages


def _check_adapter_transition(before: DictConfig | None, after: DictConfig, where: str) -> None:
    """Adapters are injected once: a stage may not inject LoRA/DoRA into a component that already has them."""
    if before is None:
        return
    for component in ("vision", "lm"):
        old = str(before.model.adapt[component].get("_target_", "")).rsplit(".", 1)[-1]
        new = str(after.model.adapt[component].get("_target_", "")).rsplit(".", 1)[-1]
        if old in _ADAPTERS and new in _ADAPTERS and before.model.adapt[component] != after.model.adapt[component]:
            raise ConfigError(f"{where}.adapt_{component}", f"{component} already has {old} adapters from the "
                              f"previous stage; a stage can freeze them or train everything, not add new ones",
                              absolute=True)


def adaptation_changed(before: DictConfig, after: DictConfig, component: str) -> bool:
    """Whether a stage changes how `component` ("vision" or "lm") trains."""
    return before.model.adapt[component] != after.model.adapt[component]
