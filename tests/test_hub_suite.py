"""Hub-backed suites (`data=idefics2_ablation`, `docvqa`, `cauldron_sft`) read from fixture shards laid out as the
hub's repositories (tests/fixtures/hub_data, written by its make.py), offline."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vlmlab.cli import CONF_DIR, main
from vlmlab.data.adapters import DatasetFormatError
from vlmlab.data.hub_files import MissingHubFiles
from vlmlab.data.hub_suite import HubSuite, Source

HUB = Path(__file__).parent / "fixtures" / "hub_data"
MIRROR = [f"data.suite.mirror={HUB}", f"data.suite.image_store={HUB / 'images'}", "data.suite.validation_per_source=8"]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def suite(preset: str, *overrides: str) -> HubSuite:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={preset}", *MIRROR, *overrides])
    return instantiate(cfg.data.suite)


def test_the_ablation_preset_builds_train_validation_and_the_four_benchmarks(tmp_path):
    spec = suite("idefics2_ablation")
    splits = spec.load(tmp_path)
    assert spec.task_metrics() == {"vqav2": "vqa_accuracy", "okvqa": "vqa_accuracy", "textvqa": "vqa_accuracy",
                                   "coco": "cider"}
    assert spec.train_tasks() == ("obelics", "coco_pairs")
    test = splits["test"]
    assert sorted(set(test["task"])) == ["coco", "okvqa", "textvqa", "vqav2"]
    # 12 VQAv2 rows, of which one does not decode and one has nine answers; 8 + 8 + 8 others.
    assert [test["task"].count(t) for t in ("vqav2", "okvqa", "textvqa", "coco")] == [10, 8, 8, 8]
    # Training: 40 documents (one misaligned, skipped) and 48 COCO pairs, 8 of each held out for validation;
    # the benchmarks' shots (8 conversations of 2 turns each; COCO val's 12 images) sit beside them untrained.
    train = splits["train"]
    assert train["task"].count("obelics") == 32 and train["task"].count("coco_pairs") == 40
    assert train["task"].count("vqav2") == 16 and train["task"].count("coco") == 12
    assert sorted(set(splits["validation"]["task"])) == ["coco_pairs", "obelics"]
    assert spec.skipped(tmp_path) == {
        "shots/okvqa": {"no_turns": 1}, "shots/textvqa": {"no_turns": 1}, "shots/vqav2": {"no_turns": 1},
        "test/vqav2": {"undecodable_image": 1, "wrong_answer_count": 1},
        "train/obelics": {"image_not_fetched": 1, "misaligned_document": 1},
    }
    document = next(row for row in train if row["task"] == "obelics")
    assert [text is None for text in document["texts"]] == [False, True, False, True, False]
    assert [image is not None for image in document["images"]] == [False, True, False, True, False]
    vqa = next(row for row in test if row["task"] == "vqav2")
    assert len(vqa["answers"]) == 10 and vqa["answer"] == vqa["answers"][0] and vqa["image"].mode == "RGB"


def test_the_same_spec_gives_the_same_rows_and_a_limit_is_a_seeded_subset(tmp_path):
    first = suite("idefics2_ablation").load(tmp_path / "a")["test"]["image_id"]
    again = suite("idefics2_ablation").load(tmp_path / "b")["test"]["image_id"]
    assert first == again
    limited = suite("idefics2_ablation", "data.suite.benchmarks.0.limit=4").load(tmp_path / "c")["test"]
    ids = [i for i, task in zip(limited["image_id"], limited["task"]) if task == "vqav2"]
    assert len(ids) == 4 and ids == [i for i in first if i.startswith("vqav2:")][:4]
    other_seed = suite("idefics2_ablation", "data.suite.seed=1").load(tmp_path / "d")["test"]["image_id"]
    assert other_seed != first and sorted(other_seed) == sorted(first)


def test_cauldron_conversations_train_as_one_sequence_each(tmp_path):
    spec = suite("cauldron_sft", "data.suite.validation_per_source=2")
    train = spec.load(tmp_path)["train"]
    assert spec.train_tasks() == ("sft_vqav2", "sft_okvqa", "sft_textvqa", "sft_text")
    assert [train["task"].count(task) for task in spec.train_tasks()] == [6, 6, 6, 6]  # 8 good rows, 2 held out
    chat = next(row for row in train if row["task"] == "sft_text")  # text only: system, user, assistant
    assert chat["images"] == [None] * 3 and chat["prompts"] == [True, True, False] and chat["texts"][0].startswith("you")
    assert spec.skipped(tmp_path)["train/sft_text"] == {"no_turns": 1}  # a chat with no assistant message
    row = train[0]
    assert row["texts"][1:] == ["what color is the picture?", row["texts"][2], "is it a picture?", "yes"]
    assert row["images"][0] is not None and row["prompts"] == [False, True, False, True, False]
    assert spec.skipped(tmp_path)["train/sft_vqav2"] == {"no_turns": 1}
    with pytest.raises(ValueError, match="conversations: the adapter vqav2 has no turns"):
        Source(adapter="vqav2", repo="a/b", split="train", conversations=True)


def test_a_run_on_the_sft_preset_trains_on_conversations_and_scores_anls(checkout, cache_dir):
    assert main(["train", f"paths.cache_dir={cache_dir}", "data=cauldron_sft", *MIRROR,
                 "data.suite.validation_per_source=2", "trainer.max_steps=2", "data.batch_size=4",
                 "eval.max_new_tokens=2", "logger=none"]) == 0
    record = json.loads(next((checkout / "results" / "runs").rglob("*.json")).read_text())
    assert record["status"] == "done", record["error"]
    assert set(record["metrics"]) == {"textvqa", "vqav2", "docvqa"}


def test_images_are_stored_no_larger_than_the_canvas(tmp_path):
    splits = suite("docvqa", "data.suite.canvas=20").load(tmp_path)
    assert max(splits["test"][0]["image"].size) == 20  # 32 x 40 documents, longest side scaled to 20


def test_a_source_missing_from_the_cache_names_the_repository(tmp_path):
    spec = suite("docvqa", "data.suite.mirror=null")  # the hub, offline, with an empty cache
    with pytest.raises(MissingHubFiles, match="HuggingFaceM4/DocumentVQA"):
        spec.load(tmp_path)


def test_a_source_whose_rows_are_all_bad_is_refused_naming_it(tmp_path):
    bad = Source(adapter="vqav2", repo="lmms-lab/VQAv2", split="validation", local_dir=str(tmp_path / "repo"))
    (tmp_path / "repo").mkdir()
    from tests.fixtures.hub_data.make import GARBAGE, VQAV2, vqav2

    datasets.Dataset.from_list([dict(vqav2(0), image=GARBAGE)], features=VQAV2).to_parquet(tmp_path / "repo/v.parquet")
    spec = HubSuite(name="bad", train=[bad], benchmarks=[dict(adapter="okvqa", repo="lmms-lab/OK-VQA",
                                                              split="validation", patterns=["data/*.parquet"])],
                    mirror=str(HUB))
    with pytest.raises(DatasetFormatError, match="vqav2 split 'validation': all 1 rows were skipped"):
        spec.load(tmp_path / "cache")


@pytest.mark.parametrize("change, message", [
    ({"train": [{"adapter": "nosuch", "repo": "a/b", "split": "train"}]}, "unknown dataset 'nosuch'"),
    ({"shots": [{"adapter": "vqav2", "task": "gqa", "repo": "a/b", "split": "train"}]}, "shots for no benchmark: gqa"),
    ({"benchmarks": [{"adapter": "obelics", "repo": "a/b", "split": "train"}]}, "documents and chats cannot be"),
    ({"train": [{"adapter": "chat", "repo": "a/b", "split": "train"}]}, "is a chat dataset: set `conversations: true`"),
])
def test_a_bad_suite_spec_is_refused_naming_what_is_wrong(change, message):
    base = dict(name="x", train=[{"adapter": "coco_captions", "task": "pairs", "repo": "a/b", "split": "train"}],
                benchmarks=[{"adapter": "vqav2", "repo": "a/b", "split": "validation"}])
    with pytest.raises((ValueError, KeyError), match=message):
        HubSuite(**(base | change))


def test_a_sweep_on_the_fixture_preset_writes_the_papers_columns_and_avg(checkout, cache_dir):
    (checkout / "ablations" / "hubtoy.yaml").write_text(
        "question: Does the connector matter on hub data?\ncontrol: mlp\nseeds: [0]\n"
        "metrics: [vqav2, okvqa, textvqa, coco]\n"
        f"common: [data=idefics2_ablation, {', '.join(MIRROR)}, trainer.max_steps=3, data.batch_size=4,\n"
        "         eval.max_new_tokens=3, eval.shots=1, logger=none, model/connector=mlp]\n"
        "arms:\n  mlp: []\n  pixel_shuffle: [model/connector=pixel_shuffle]\n")
    assert main(["sweep", "hubtoy", f"paths.cache_dir={cache_dir}"]) == 0
    records = [json.loads(p.read_text()) for p in (checkout / "results/runs/hubtoy").glob("*/*.json")]
    assert len(records) == 2 and all(r["status"] == "done" for r in records), [r.get("error") for r in records]
    assert set(records[0]["metrics"]) == {"vqav2", "okvqa", "textvqa", "coco"}
    assert records[0]["cost"]["data_skipped"]["test/vqav2"] == {"undecodable_image": 1, "wrong_answer_count": 1}
    table = (checkout / "results/tables/hubtoy.md").read_text()
    for column in ("vqav2", "okvqa", "textvqa", "coco", "Avg."):
        assert column in table
    assert "rows skipped while reading the data: " in table and "test/vqav2: undecodable_image 1" in table
