"""POPE, MME, MMBench, ScienceQA-IMG and GQA end to end: fixture shards in each hub repository's layout
(tests/benchmark_fixture.py), read offline by the real adapters and a hub suite, scored by the harness on fake
answers whose scores were worked out by hand."""

from __future__ import annotations

from collections import Counter

import datasets
import pytest

from vlmlab.data.adapters import load_samples
from vlmlab.data.examples import split_examples
from vlmlab.data.hub_suite import HubSuite, Source
from vlmlab.data.images import SquareResize
from vlmlab.eval.harness import score_tasks

from . import benchmark_fixture as fixture

LETTER = "\nAnswer with the option's letter from the given choices directly."


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def test_mmbench_asks_each_question_in_every_circular_shift_and_drops_the_hubs_copies(tmp_path):
    files = fixture.write_all(tmp_path)
    samples = list(load_samples("mmbench", "dev", data_files=[files["mmbench"]]))
    assert [s.sample_id for s in samples] == ["0:0", "0:1", "0:2", "0:3", "1:0", "1:1"]
    assert samples[0].prompt == f"A hint.\nWhat is it?\nA. w\nB. x\nC. y\nD. z{LETTER}"
    assert [s.answers for s in samples[:2]] == [["C", "w", "x", "y", "z"], ["B", "x", "y", "z", "w"]]
    assert samples[5].prompt == f"Which side?\nA. right\nB. left{LETTER}"  # no hint; options end at the blank C
    assert samples[5].answers == ["B", "right", "left"]
    assert [s.group for s in samples] == [("0",)] * 4 + [("1",)] * 2
    assert samples[4].image.size == (10, 6)


def test_scienceqa_pope_and_mme_rows_become_prompts_with_their_groups(tmp_path):
    files = fixture.write_all(tmp_path)
    science = list(load_samples("scienceqa_img", "test", data_files=[files["scienceqa_test"]]))
    assert science[0].prompt == f"Context: Look at the picture.\nQuestion 0?\nA. cat\nB. dog\nC. bird{LETTER}"
    assert science[0].answers == ["C", "cat", "dog", "bird"] and science[1].prompt.startswith("Question 1?\nA. yes")
    pope = list(load_samples("pope_random", "test", data_files=[files["pope"]]))
    assert [s.sample_id for s in pope] == [f"random-{i}" for i in range(4)]  # the other settings' rows are not read
    assert pope[0].prompt == "Is there a thing 0 in the image?\nAnswer the question using a single word or phrase."
    assert [s.answers for s in pope] == [[label] for label in fixture.POPE_LABELS]
    perception = list(load_samples("mme_perception", "test", data_files=[files["mme"]]))
    assert [s.group for s in perception[:2]] == [("existence", "existence/1.png")] * 2
    assert len(perception) == 6 and {s.group[0] for s in perception} == {"existence", "OCR"}


def test_gqa_joins_each_question_to_its_image_and_skips_one_without(tmp_path):
    files = fixture.write_all(tmp_path)
    skipped = Counter()
    samples = list(load_samples("gqa", "testdev", data_files=[files["gqa_questions"]],
                                image_files=[files["gqa_images"]], skipped=skipped))
    assert [(s.sample_id, s.image.size[0], s.answers) for s in samples] == [
        ("q1", 11, ["yes"]), ("q2", 11, ["table"]), ("q3", 12, ["left"])]
    assert skipped == Counter(image_not_found=1)
    with pytest.raises(ValueError, match="testdev_balanced_images"):
        load_samples("gqa", "testdev", data_files=[files["gqa_questions"]])
    with pytest.raises(ValueError, match="image_patterns"):
        Source(adapter="gqa", repo="lmms-lab/GQA", split="testdev")


def _benchmarks() -> list[Source]:
    pope = [Source(adapter=f"pope_{s}", repo="lmms-lab/POPE", split="test", patterns=("data/test-*.parquet",))
            for s in ("adversarial", "popular", "random")]
    mme = [Source(adapter=f"mme_{p}", repo="lmms-lab/MME", split="test", patterns=("data/test-*.parquet",))
           for p in ("perception", "cognition")]
    mmbench = dict(adapter="mmbench", repo="lmms-lab/MMBench", split="dev", patterns=("en/dev-*.parquet",))
    return [*pope, *mme, Source(**mmbench), Source(**mmbench, task="mmbench_small", limit=3),
            Source(adapter="scienceqa_img", repo="lmms-lab/ScienceQA", split="test",
                   patterns=("ScienceQA-IMG/test-*.parquet",)),
            Source(adapter="gqa", repo="lmms-lab/GQA", split="testdev",
                   patterns=("testdev_balanced_instructions/*.parquet",),
                   image_patterns=("testdev_balanced_images/*.parquet",))]


def test_a_hub_suite_of_the_benchmarks_scores_fake_answers_as_worked_out_by_hand(tmp_path):
    fixture.write_all(tmp_path / "hub")
    suite = HubSuite(name="mobilevlm_fixture", mirror=str(tmp_path / "hub"), validation_per_source=1, canvas=32,
                     train=[Source(adapter="scienceqa_img", task="sqa_train", repo="lmms-lab/ScienceQA",
                                   split="validation", patterns=("ScienceQA-IMG/validation-*.parquet",))],
                     benchmarks=_benchmarks())
    metrics = suite.task_metrics()
    assert metrics["pope_random"] == "pope_f1" and metrics["mme_cognition"] == "mme"
    test = split_examples(suite.load(tmp_path / "cache")["test"], SquareResize(size=8))
    counts = Counter(ex.task for ex in test)
    # The seeded subset of 3 takes whole questions only: question 0's four shifts do not fit, question 1's two do.
    assert counts["mmbench"] == 6 and counts["mmbench_small"] == 2 and counts["gqa"] == 3
    assert {ex.group for ex in test if ex.task == "mmbench_small"} == {("1",)}
    assert suite.skipped(tmp_path / "cache") == {"test/gqa": {"image_not_found": 1}}

    oracle = score_tasks(metrics, test, [ex.references[0] for ex in test])
    assert {task: result.score for task, result in oracle.items()} == pytest.approx({
        "pope_adversarial": 100.0, "pope_popular": 100.0, "pope_random": 100.0,
        "mme_perception": 400.0, "mme_cognition": 200.0,  # two perception subtasks, one cognition one, 200 each
        "mmbench": 100.0, "mmbench_small": 100.0, "scienceqa_img": 100.0, "gqa": 100.0})

    yes = score_tasks(metrics, test, ["Yes"] * len(test))
    assert {task: result.score for task, result in yes.items()} == pytest.approx({
        # POPE: TP 2, FP 2 per setting -> precision 1/2, recall 1 -> F1 2/3.
        "pope_adversarial": 200 / 3, "pope_popular": 200 / 3, "pope_random": 200 / 3,
        # MME: every image half right, none fully -> 50 per subtask.
        "mme_perception": 100.0, "mme_cognition": 50.0,
        # MMBench: no letter, but option "y" (question 0's right one) is inside "yes" in every shift: 1 of 2.
        "mmbench": 50.0, "mmbench_small": 0.0,
        "scienceqa_img": 0.0,  # LLaVA's rule reads no letter in "Yes"
        "gqa": 100 / 3})       # "yes" is q1's answer
    for task, result in yes.items():
        assert len(result.items) == counts[task]
        assert sum(result.items) / len(result.items) == pytest.approx(result.score)


def test_the_small_vlm_preset_scores_each_benchmark_by_its_rule():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from vlmlab.cli import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=small_vlm_sft"])
    suite = instantiate(cfg.data.suite)
    assert suite.task_metrics() == {
        "pope_adversarial": "pope_f1", "pope_popular": "pope_f1", "pope_random": "pope_f1", "mme_perception": "mme",
        "mme_cognition": "mme", "mmbench": "mmbench_circular", "scienceqa_img": "scienceqa_accuracy",
        "gqa": "gqa_accuracy"}
    assert "sft_vqav2" in suite.train_tasks(), "the_cauldron's instructions train it"
