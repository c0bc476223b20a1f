"""How a pretrained component (vision tower or language model) trains: frozen, fully, or through LoRA / DoRA.

Table 3 of the Idefics2 paper compares frozen backbones with LoRA-adapted ones; each option here is one
`_target_` of the `model/adapt` config group, mounted once per component (`model.adapt.vision`, `model.adapt.lm`).
Adapters are injected into the component's module in place, so the VLM keeps calling the same object
(`inputs_embeds=`, `.generate`, `pixel_values=`).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from vlmlab.errors import ConfigError

ALL_LINEAR = "all-linear"
_LINEAR_TYPES = (nn.Linear, Conv1D)  # the layer types peft's own "all-linear" selects
# The layer types peft's LoRA can wrap (its error message lists the same ones).
_ADAPTABLE_TYPES = (*_LINEAR_TYPES, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)


class Adaptation(ABC):
    """How one pretrained component trains: frozen, fully, or through low-rank adapters."""

    _name: str = ""

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """Prepare `model` in place (requires_grad flags, adapter modules) and return it."""

    @property
    def name(self) -> str:
        """Short name used in records and tables: "full", "frozen", "lora" or "dora"."""
        return self._name

    def __repr__(self) -> str:
        """Class name and settings, so a log line says how each backbone trained."""
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class FullFineTuning(Adaptation):
    """Every parameter of the component is trained."""

    _name = "full"

    def apply(self, model: nn.Module) -> nn.Module:
        """Mark every parameter trainable."""
        model.requires_grad_(True)
        return model


class Frozen(Adaptation):
    """No parameter of the component is trained; it only runs forward."""

    _name = "frozen"

    def apply(self, model: nn.Module) -> nn.Module:
        """Mark every parameter frozen."""
        model.requires_grad_(False)
        return model


def linear_layer_names(model: nn.Module) -> list[str]:
    """Full names of the linear layers "all-linear" adapts: every nn.Linear / Conv1D except the LM output head."""
    # peft only drops the head when handed a PreTrainedModel itself; finding heads of nested ones (and any
    # `lm_head` by name) gives the same answer when the HF model sits inside a wrapper module.
    heads = {id(m.get_output_embeddings()) for m in model.modules() if isinstance(m, PreTrainedModel)}
    return [name for name, module in model.named_modules()
            if isinstance(module, _LINEAR_TYPES) and id(module) not in heads and name.split(".")[-1] != "lm_head"]


class LoRA(Adaptation):
    """Low-rank adapters on the target linear layers; the base weights stay frozen."""

    def __init__(self, r: int = 8, alpha: int = 16, dropout: float = 0.0,
                 target_modules: list[str] | str = ALL_LINEAR, use_dora: bool = False) -> None:
        # Checked here, before any model is built, so a bad sweep arm fails at config validation.
        if not r > 0:
            raise ConfigError("r", f"the adapter rank must be a positive integer, got {r}")
        if not alpha > 0:
            raise ConfigError("alpha", f"the LoRA scaling alpha must be positive, got {alpha}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("dropout", f"adapter dropout must lie in [0, 1), got {dropout}")
        # A YAML list arrives as an OmegaConf ListConfig, which peft would not recognise as a list.
        targets = target_modules if isinstance(target_modules, str) else [str(t) for t in target_modules]
        if not targets:
            raise ConfigError("target_modules", f"name at least one module, or use '{ALL_LINEAR}'")
        self.r, self.alpha, self.dropout = int(r), alpha, float(dropout)
        self.target_modules = targets
        self.use_dora = bool(use_dora)

    @property
    def name(self) -> str:
        """The short name: "dora" when the adapters are weight-decomposed, else "lora"."""
        return "dora" if self.use_dora else "lora"

    def _config(self, targets: list[str] | str) -> LoraConfig:
        """A fresh peft config (peft rewrites `target_modules` in the config it is given)."""
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets, use_dora=self.use_dora)

    def _resolve_targets(self, model: nn.Module) -> list[str] | str:
        """The target modules for peft, with "all-linear" expanded to the model's linear layer names."""
        linear = linear_layer_names(model)
        if isinstance(self.target_modules, str) and self.target_modules.lower() == ALL_LINEAR:
            targets: list[str] | str = linear
        else:
            targets = self.target_modules
        # Match with peft's own rule (suffix for lists, full regex match for a string) so that the error
        # below is raised exactly when peft would fail with a less helpful message.
        config = self._config(targets)
        matched = [(k, m) for k, m in model.named_modules() if k and check_target_module_exists(config, k)]
        hint = f"its linear layers include: {_short_names(linear)}"
        if not matched:
            raise ConfigError("target_modules", f"{self.target_modules!r} matches no module of "
                              f"{type(model).__name__}; {hint}")
        # Caught here rather than by peft, which fails midway and leaves the model half-adapted.
        if wrong := [k for k, m in matched if not isinstance(m, _ADAPTABLE_TYPES)]:
            raise ConfigError("target_modules", f"{self.target_modules!r} matches modules LoRA cannot wrap "
                              f"({_short_names(wrong, 3)}, e.g. {type(dict(matched)[wrong[0]]).__name__}); {hint}")
        return targets

    def apply(self, model: nn.Module) -> nn.Module:
        """Inject adapters into `model` in place; afterwards only adapter parameters are trainable."""
        targets = self._resolve_targets(model)
        try:
            # Works on meta-device models too: adapter weights are created on the base layer's device.
            injected = inject_adapter_in_model(self._config(targets), model)
        except ValueError as error:  # anything else peft rejects about the targets (e.g. DoRA on an odd layer)
            raise ConfigError("target_modules", str(error)) from error
        assert injected is model  # the caller keeps its reference; peft mutates in place
        return model


class DoRA(LoRA):
    """Weight-decomposed LoRA: low-rank direction update plus a trained magnitude vector per output unit."""

    def __init__(self, r: int = 8, alpha: int = 16, dropout: float = 0.0,
                 target_modules: list[str] | str = ALL_LINEAR) -> None:
        super().__init__(r=r, alpha=alpha, dropout=dropout, target_modules=target_modules, use_dora=True)


def _short_names(names: list[str], limit: int = 8) -> str:
    """Distinct last components of module names (q_proj, fc1, ...), the form users write in target_modules."""
    short = sorted({re.sub(r".*\.", "", n) for n in names})
    return ", ".join(short[:limit]) + (", ..." if len(short) > limit else "") if short else "(none)"
