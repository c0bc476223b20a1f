"""Offline clusters: the hub files a run reads, found in the cache alone, fetched by `vlmlab prefetch`, and a sweep
under HF_HUB_OFFLINE=1 refused before training when the cache lacks them. No network: downloads are faked."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.file_download import repo_folder_name
from hydra.core.global_hydra import GlobalHydra

import vlmlab.data.hub_files as hub_files_module
from vlmlab.cli import main
from vlmlab.data.hub_files import HubFiles, MissingHubFiles
from vlmlab.data.needs import HubBacked, by_repository, missing, model_files, needed_files
from vlmlab.data.synthetic_v2 import SyntheticV2Spec

SHA = "0123456789abcdef0123456789abcdef01234567"
DATA = HubFiles(repo="org/data", patterns=("ai2d/train-*.parquet",), revision="refs/convert/parquet")


class HubSynthetic(SyntheticV2Spec):
    """The synthetic v2 suite claiming to read DATA from the hub: a real suite, so a sweep plans it."""

    def hub_files(self) -> list[HubFiles]:
        return [DATA]


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache, offline. huggingface_hub reads both settings once, at import."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def put(cache: Path, files: HubFiles, names: dict[str, bytes]) -> Path:
    """Lay `names` out in `cache` as a download of `files` leaves them: blobs, a snapshot of links, the ref."""
    storage = cache / repo_folder_name(repo_id=files.repo, repo_type=files.repo_type)
    snapshot = storage / "snapshots" / SHA
    for index, (name, content) in enumerate(names.items()):
        blob = storage / "blobs" / f"blob{index}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(blob)
    ref = storage / "refs" / (files.revision or "main")  # "refs/convert/parquet" nests, as huggingface_hub has it
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(SHA)
    return snapshot


@pytest.fixture
def downloads(hub, monkeypatch) -> list[dict]:
    """snapshot_download without the network: a download lays out one file per pattern (its glob's `*` -> 0);
    a cache look-up (local_files_only) goes to the real function."""
    calls: list[dict] = []
    real = hub_files_module.snapshot_download

    def fake(repo_id: str, **kwargs) -> str:
        if kwargs.get("local_files_only"):
            return real(repo_id, **kwargs)
        calls.append({"repo_id": repo_id, **kwargs})
        files = HubFiles(repo=repo_id, repo_type=kwargs["repo_type"], revision=kwargs["revision"])
        return str(put(hub, files, {p.replace("*", "0"): b"12345" for p in kwargs["allow_patterns"]}))

    monkeypatch.setattr(hub_files_module, "snapshot_download", fake)
    return calls


# HubFiles


def test_paths_from_a_local_dir_are_the_files_the_patterns_select(tmp_path):
    for name in ("ai2d/train-0.parquet", "ai2d/train-1.parquet", "ai2d/test-0.parquet", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    files = HubFiles(repo="org/data", patterns=("ai2d/train-*.parquet",), local_dir=str(tmp_path))
    assert files.paths() == [tmp_path / "ai2d/train-0.parquet", tmp_path / "ai2d/train-1.parquet"]
    assert files.fetch() == tmp_path  # nothing to download


def test_a_pattern_that_matches_nothing_in_a_local_dir_is_missing(tmp_path):
    (tmp_path / "ai2d").mkdir()
    (tmp_path / "ai2d" / "train-0.parquet").write_text("x")
    files = HubFiles(repo="org/data", patterns=("ai2d/train-*.parquet", "okvqa/*.parquet"), local_dir=str(tmp_path))
    with pytest.raises(MissingHubFiles, match=r"dataset org/data \(local directory .*matches okvqa/\*\.parquet$"):
        files.paths()
    with pytest.raises(MissingHubFiles, match="is not a directory"):
        HubFiles(repo="org/data", local_dir=str(tmp_path / "absent")).paths()


def test_paths_from_the_cache_find_what_is_there(hub):
    snapshot = put(hub, DATA, {"ai2d/train-0.parquet": b"abc", "ai2d/test-0.parquet": b"d"})
    assert DATA.paths() == [snapshot / "ai2d/train-0.parquet"]
    model = model_files("org/lm", tokenizer=True)
    put(hub, model, {"config.json": b"{}", "model.safetensors": b"w", "tokenizer_config.json": b"{}",
                     "merges.txt": b"", "pytorch_model.bin": b"w"})
    # The optional files it has are read along; weights it will not load are not.
    assert [p.name for p in model.paths()] == ["config.json", "merges.txt", "model.safetensors",
                                               "tokenizer_config.json"]


def test_what_the_cache_lacks_is_missing_and_named(hub):
    with pytest.raises(MissingHubFiles, match=r"^dataset org/data \(revision refs/convert/parquet, files "
                                              r"ai2d/train-\*\.parquet\): not in the Hugging Face cache"):
        DATA.paths()
    # The repository at another revision, or with other files, is not what the run reads either.
    put(hub, DATA, {"okvqa/train-0.parquet": b"x"})
    with pytest.raises(MissingHubFiles, match=r"matches ai2d/train-\*\.parquet"):
        DATA.paths()
    with pytest.raises(MissingHubFiles, match="revision main.*not in the Hugging Face cache"):
        HubFiles(repo="org/data", patterns=("okvqa/*",)).paths()
    model = model_files("org/lm")
    put(hub, model, {"config.json": b"{}"})  # a config without its weights: planning works, loading cannot
    assert [str(err) for err in missing([model])] == [
        f"model org/lm (revision main, files config.json, model*.safetensors): no file in "
        f"{hub / 'models--org--lm' / 'snapshots' / SHA} matches model*.safetensors"]


def test_fetch_downloads_exactly_the_patterns_at_the_revision(downloads):
    files = HubFiles(repo="org/lm", patterns=("config.json",), repo_type="model", revision="v1",
                     optional=("tokenizer.json",))
    files.fetch()
    assert downloads == [{"repo_id": "org/lm", "repo_type": "model", "revision": "v1",
                          "allow_patterns": ["config.json", "tokenizer.json"]}]


# What a run needs


def test_needed_files_are_the_suites_and_the_hub_models(make_cfg, tmp_path):
    tower = tmp_path / "my-tower"
    tower.mkdir()  # a local directory: loaded from there, nothing to fetch
    cfg = make_cfg(f"data.suite._target_={__name__}.HubSynthetic", "model.lm.pretrained=org/lm",
                   "model.lm.config=null", f"model.vision.pretrained={tower}", "model.vision.config=null")
    assert isinstance(HubSynthetic(), HubBacked)
    assert needed_files(cfg) == [DATA, model_files("org/lm", tokenizer=True)]
    vision = make_cfg("model/vision=siglip_so400m")
    assert needed_files(vision) == [model_files("google/siglip-so400m-patch14-384")]  # no tokenizer from a tower
    assert needed_files(make_cfg()) == []  # synthetic data, tiny models from configs


def test_sources_of_one_repository_are_fetched_together():
    other = HubFiles(repo="org/data", patterns=("okvqa/*.parquet", "ai2d/train-*.parquet"),
                     revision="refs/convert/parquet")
    main_branch = HubFiles(repo="org/data", patterns=("x/*",))
    assert by_repository([DATA, main_branch, other, DATA]) == [
        HubFiles(repo="org/data", patterns=("ai2d/train-*.parquet", "okvqa/*.parquet"),
                 revision="refs/convert/parquet"),
        main_branch]


# The command and the sweep


TOY = """
question: Does the hub data matter?
control: mlp
seeds: [0, 1]
metrics: [synth_count]
common: [data.suite._target_=tests.test_prefetch.HubSynthetic, trainer.max_steps=1, logger=none]
arms:
  mlp: [model/connector=mlp]
  linear: [model/connector=linear]
"""


def test_an_offline_sweep_that_lacks_files_is_refused_with_the_prefetch_command(checkout, cache_dir, hub, downloads,
                                                                                monkeypatch, capsys):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}", "eval.limit_per_task=2"]) == 2
    err = capsys.readouterr().err
    assert "ablations/toy.yaml: HF_HUB_OFFLINE=1 and the Hugging Face cache" in err
    assert ("  dataset org/data (revision refs/convert/parquet, files ai2d/train-*.parquet): not in the Hugging Face "
            "cache") in err
    assert "make prefetch AXIS=toy ARGS=" in err
    assert not (checkout / "results").exists() and not (checkout / "outputs").exists()  # nothing planned or trained
    # The command it names fetches what the sweep lacks (here from the fake hub).
    command = re.search(r"run: (vlmlab prefetch .*?) \(or: make", err).group(1)
    assert command == f"vlmlab prefetch toy paths.results_dir=results paths.ablations_dir=ablations " \
                      f"paths.cache_dir={cache_dir} eval.limit_per_task=2"
    GlobalHydra.instance().clear()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the machine with the network
    assert main(shlex.split(command)[1:]) == 0
    assert [call["allow_patterns"] for call in downloads] == [["ai2d/train-*.parquet"]]  # once, for both arms
    assert "fetched dataset org/data (revision refs/convert/parquet, files ai2d/train-*.parquet): 1 files, 5 bytes" \
        in capsys.readouterr().out
    assert missing([DATA]) == []  # the offline sweep now passes the check


def test_prefetch_of_an_ablation_without_hub_files_says_so(checkout, cache_dir, downloads, capsys):
    (checkout / "ablations" / "toy.yaml").write_text(TOY.replace("common: [data.suite._target_="
                                                                 "tests.test_prefetch.HubSynthetic, ", "common: ["))
    assert main(["prefetch", "toy", f"paths.cache_dir={cache_dir}"]) == 0
    assert "toy: nothing to prefetch: no run reads from the Hugging Face hub" in capsys.readouterr().out
    assert downloads == []


def test_prefetch_offline_checks_the_cache_and_exits_1_when_something_is_missing(checkout, cache_dir, hub, capsys):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    assert main(["prefetch", "toy", f"paths.cache_dir={cache_dir}"]) == 1
    captured = capsys.readouterr()
    assert "HF_HUB_OFFLINE=1: checking the cache only" in captured.out
    assert "vlmlab prefetch: dataset org/data (revision refs/convert/parquet" in captured.err
    assert main(["prefetch", "nosuchaxis"]) == 2  # a misspelt axis: refused, with the list of ablations
