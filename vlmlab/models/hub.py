"""Loading pretrained components from the Hugging Face hub or a local path, with errors a user can act on."""

from __future__ import annotations

import torch
from transformers import AutoConfig, PretrainedConfig
from huggingface_hub import is_offline_mode

from vlmlab.errors import ConfigError


def hub_config(name_or_path: str) -> PretrainedConfig:
    """The model's config (config.json only: no weights); a ConfigError on `pretrained` if it cannot be found."""
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        where = " while offline (HF_HUB_OFFLINE=1)" if is_offline_mode() else ""
        raise ConfigError("pretrained", (
            f"cannot load '{name_or_path}'{where}: {str(err).splitlines()[0]} -- pre-download it where there is "
            f"network (`hf download {name_or_path}`) and run with HF_HUB_OFFLINE=1, or set `pretrained` to a local "
            "directory saved with save_pretrained"
        )) from None


def building_on_meta() -> bool:
    """True inside `with torch.device("meta")`: config checks build the architecture without reading weights."""
    return torch.get_default_device().type == "meta"


def weight_loading() -> dict[str, torch.dtype]:
    """from_pretrained's dtype: the one new tensors get (bf16 under a bf16-true trainer, else fp32), not the
    checkpoint's. The device follows too: transformers loads onto the device of an enclosing `with device:`, so
    a pretrained LM goes straight to the rank's GPU in the training dtype (vlmlab.train.performance.building_on)."""
    return {"dtype": torch.get_default_dtype()}
