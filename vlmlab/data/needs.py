"""What a run reads from the Hugging Face hub: its suite's dataset files and its pretrained models' files.

`vlmlab prefetch` fetches these for every run of an ablation; a sweep under HF_HUB_OFFLINE=1 checks them in the
cache before training (`missing`), so that an offline compute node never starts a run that cannot load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Protocol, runtime_checkable

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlmlab.data.hub_files import HubFiles, MissingHubFiles


@runtime_checkable
class HubBacked(Protocol):
    """A suite whose data comes from hub repositories (vlmlab.data.hub_suite.HubSuite)."""

    def hub_files(self) -> list[HubFiles]:
        """The files of every source it reads, split by split."""
        ...


# What from_pretrained reads of a model (vlmlab.models.hub, vision, language): config.json and the safetensors
# weights (model.safetensors, or shards with their index). Only safetensors: transformers prefers them, and a repo
# that also has pytorch_model.bin (or open_clip files) would otherwise be downloaded twice over.
_MODEL = ("config.json", "model*.safetensors")
_MODEL_OPTIONAL = ("model.safetensors.index.json", "generation_config.json")
# What AutoTokenizer.from_pretrained reads (vlmlab.data.tokenizer.pretrained_tokenizer): the LM's own tokenizer.
# Tokenizers differ in their files (tokenizer.json, a sentencepiece model, BPE vocab + merges): all optional.
_TOKENIZER = ("tokenizer_config.json",)
_TOKENIZER_OPTIONAL = ("tokenizer.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                       "vocab.json", "vocab.txt", "merges.txt", "chat_template.jinja")
# The pretrained components of a run: config key -> whether the tokenizer comes from it too.
_PRETRAINED = {"model.vision.pretrained": False, "model.lm.pretrained": True}


def model_files(name: str, tokenizer: bool = False) -> HubFiles:
    """The files that loading model `name` (a hub id) reads, with its tokenizer's when `tokenizer`."""
    required, optional = (_MODEL + _TOKENIZER, _MODEL_OPTIONAL + _TOKENIZER_OPTIONAL) if tokenizer else (
        _MODEL, _MODEL_OPTIONAL)
    return HubFiles(repo=name, patterns=required, repo_type="model", optional=optional)


def needed_files(cfg: DictConfig) -> list[HubFiles]:
    """The hub files one composed run config reads: its suite's (when hub-backed) and its pretrained models'
    (those given by hub id, not by a local directory). Stages change neither, so the run's own config tells."""
    suite = instantiate(cfg.data.suite)
    files = list(suite.hub_files()) if isinstance(suite, HubBacked) else []
    for key, tokenizer in _PRETRAINED.items():
        name = OmegaConf.select(cfg, key, default=None)
        if name and not Path(str(name)).expanduser().exists():
            files.append(model_files(str(name), tokenizer))
    return list(dict.fromkeys(files))


def all_needed(configs: Iterable[DictConfig]) -> list[HubFiles]:
    """The files every config needs, one HubFiles per repository (and revision), in the order first needed."""
    return by_repository(files for cfg in configs for files in needed_files(cfg))


def by_repository(files: Iterable[HubFiles]) -> list[HubFiles]:
    """One HubFiles per repository, revision and local directory, with the patterns of all that read it: one
    download (and one cache look-up) each, where a suite's sources often share a repository (the_cauldron)."""
    groups: dict[tuple[str, str, str | None, str | None], list[HubFiles]] = {}
    for one in files:
        groups.setdefault((one.repo, one.repo_type, one.revision, one.local_dir), []).append(one)
    return [replace(group[0], patterns=_union(f.patterns for f in group), optional=_union(f.optional for f in group))
            for group in groups.values()]


def _union(pattern_lists: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for patterns in pattern_lists for p in patterns))


def missing(files: Iterable[HubFiles]) -> list[MissingHubFiles]:
    """Why each of `files` that the cache (or its local directory) cannot serve is missing; empty if none is."""
    found: list[MissingHubFiles] = []
    for wanted in files:
        try:
            wanted.paths()
        except MissingHubFiles as err:
            found.append(err)
    return found
