"""Shared fixtures: a composed default config and one dataset/tokenizer cache for the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` exercise GPU code paths: skipped, and said so, where there is no CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (make test-gpu on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset + tokenizer cache shared by every test, as a sweep shares it across runs."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(cache_dir, tmp_path):
    """Compose conf/train.yaml with overrides, pointed at temporary results/outputs and the shared cache."""

    def _make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=[
                f"paths.cache_dir={cache_dir}", f"paths.results_dir={tmp_path / 'results'}",
                f"paths.output_dir={tmp_path / 'outputs'}", "logger=none", *overrides,
            ])

    return _make


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A scratch checkout as the working directory: an empty ablations/, Hydra's global state cleared around it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ablations").mkdir()
    GlobalHydra.instance().clear()
    yield tmp_path
    GlobalHydra.instance().clear()
