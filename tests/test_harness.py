"""Scoring per benchmark metric, data mixtures, and suites with several references per sample."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from vlmlab.data.arrow_samples import InMemorySamples
from vlmlab.data.collate import Example
from vlmlab.data.examples import split_examples
from vlmlab.data.images import SquareResize
from vlmlab.data.synthetic_v2 import BENCHMARKS, SyntheticV2Spec
from vlmlab.eval.harness import generated_lengths, score
from vlmlab.train.datamodule import VLMDataModule


def test_each_metric_scores_in_percent():
    assert score("exact_match", ["Cat", "dog"], [("cat",), ("cat",)]) == 50.0
    # Annotators who disagree make the official scorer normalise: "two" becomes "2" and matches 9 of 10.
    assert score("vqa_accuracy", ["two"], [("2",) * 9 + ("3",)]) == 100.0
    assert score("vqa_accuracy", ["two"], [("2",) * 10]) == 0.0  # the official quirk: unanimous answers, no normalising
    assert score("anls", ["cot"], [("cat",)]) == pytest.approx(100 * (1 - 1 / 3))
    refs = [("a red circle",), ("a blue square",)]
    assert score("cider", ["a red circle", "a blue square"], refs) > score("cider", ["a blue square", "a red circle"], refs)
    with pytest.raises(KeyError, match="exact_match"):
        score("nosuch", ["x"], [("x",)])


def example(task: str) -> Example:
    return Example(torch.zeros(3, 8, 8, dtype=torch.uint8), task, "q", "a")


class _Collator:
    def train_batch(self, examples):
        return [ex.task for ex in examples]


def test_a_mixture_weights_tasks_not_rows_and_drops_zero_weights():
    train = InMemorySamples([example("caption")] * 300 + [example("ocr")] * 100 + [example("vqa")] * 50)
    dm = VLMDataModule(train, [], _Collator(), batch_size=10, seed=0, mixture={"caption": 1.0, "ocr": 3.0, "vqa": 0})
    drawn = Counter(task for batch in dm.train_dataloader() for task in batch)
    assert "vqa" not in drawn
    assert 2.2 < drawn["ocr"] / drawn["caption"] < 4.0  # 3:1 by weight although captions are 3x more numerous


def test_no_mixture_keeps_the_plain_shuffle():
    train = InMemorySamples([example("a")] * 7 + [example("b")] * 9)
    dm = VLMDataModule(train, [], _Collator(), batch_size=4, seed=0)
    assert sorted(task for batch in dm.train_dataloader() for task in batch) == sorted(["a"] * 7 + ["b"] * 9)


def test_suite_v2_examples_carry_every_reference(cache_dir):
    spec = SyntheticV2Spec(train_images=5, eval_images=4, canvas=64)
    test = split_examples(spec.load(cache_dir)["test"], SquareResize(size=32))
    by_task = {ex.task: ex for ex in test}
    assert set(by_task) == set(BENCHMARKS) == set(spec.task_metrics())
    assert len(by_task["synth_vqa"].references) == 10 and len(by_task["synth_caption"].references) == 5
    assert by_task["synth_vqa"].references[0] == by_task["synth_vqa"].answer


def test_k_shot_contexts_are_same_task_fixed_by_seed_and_laid_out_before_the_query(tmp_path):
    from vlmlab.data.collate import VLMCollator
    from vlmlab.data.tokenizer import synthetic_tokenizer
    from vlmlab.eval.harness import truncate_at, with_context

    pool = [Example(torch.full((3, 8, 8), i, dtype=torch.uint8), task, "q", f"{task}{i}")
            for i in range(6) for task in ("count", "color")]
    queries = [example("count"), example("color")]
    first, again = with_context(queries, pool, 2, seed=0), with_context(queries, pool, 2, seed=0)
    assert [c.answer for c in first[0].context] == [c.answer for c in again[0].context]
    assert all(c.task == q.task for q in first for c in q.context) and len(first[1].context) == 2
    assert with_context(queries, pool, 0, seed=0) == queries
    with pytest.raises(ValueError, match="eval.shots=9"):
        with_context(queries, pool, 9, seed=0)
    # a benchmark named apart from its training task (v2's synth_count <- count) draws from that task
    renamed = with_context([example("synth_count")], pool, 2, seed=0, sources={"synth_count": "count"})
    assert [c.task for c in renamed[0].context] == ["count", "count"]

    tokenizer = synthetic_tokenizer(["question: q answer:", " a", *(" " + ex.answer for ex in pool)], tmp_path)
    collator = VLMCollator(tokenizer, SquareResize(size=8), lambda shapes: 2 * len(shapes), "question: {prompt} answer:")
    batch = collator.generation_batch(first)
    ids = batch["input_ids"][0].tolist()
    assert ids.count(collator.image_token_id) == 2 * 3, "two context images and the query's"
    assert ids.count(tokenizer.eos_token_id) == 2, "each in-context answer ends with eos"
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text.strip().endswith("answer:") and first[0].context[0].answer in text.replace(" ", "")
    assert len(batch["pixel_values"][0]) == 3, "views of every image of the sample, in order"
    assert truncate_at(" 3 question: q answer: 4", ("\n", "question:")) == "3"


def test_generated_lengths_stop_at_the_first_end_of_sequence():
    eos, pad = 2, 0
    new = torch.tensor([[7, 8, eos, pad, pad], [7, eos, 9, eos, pad], [7, 8, 9, 10, 11]])
    assert generated_lengths(new, eos) == [3, 2, 5]


@pytest.mark.parametrize("task_metric", ["exact_match", "vqa_accuracy", "anls", "cider"])
def test_item_scores_average_to_the_task_score(task_metric):
    """What the item-level tests pair: each answer's score, whose mean is the score the table reports."""
    from vlmlab.eval.harness import item_scores, score

    predictions = ["a red circle", "two", "a blue square on the left", "cat", "three"]
    references = [("a red circle", "red circle"), ("2", "two"), ("a blue square", "blue square left"),
                  ("dog", "cat"), ("four", "4")]
    items = item_scores(task_metric, predictions, references)
    assert len(items) == len(predictions) and all(0.0 <= value <= 100.0 * 10 for value in items)
    assert sum(items) / len(items) == pytest.approx(score(task_metric, predictions, references), rel=1e-12)
    assert len(set(items)) > 1, "the answers differ, and so do their scores"


def test_saved_answers_carry_their_item_score_and_their_group_where_the_benchmark_has_one():
    """MME's items are scored in image pairs: each saved answer names its pair (the tables' bootstrap draws the pair
    as one); a plain VQA answer names none, so the rows of every existing suite stay as they were."""
    from vlmlab.eval.harness import answer_rows, score_tasks

    pixels = torch.zeros(3, 4, 4, dtype=torch.uint8)
    examples = [Example(pixels, "mme", f"q{i}", "yes", references=("yes",), group=("color", f"img{i // 2}"))
                for i in range(4)] + [Example(pixels, "vqa", "q", "red", references=("red",))]
    texts = ["yes", "yes", "yes", "no", "red"]
    scored = score_tasks({"mme": "mme", "vqa": "exact_match"}, examples, texts)
    rows = answer_rows(examples, texts, scored)
    assert [row.get("group") for row in rows] == [["color", "img0"]] * 2 + [["color", "img1"]] * 2 + [None]
    assert [row["prediction"] for row in rows] == texts and rows[-1]["score"] == 100.0
    mme_items = [row["score"] for row in rows if row["task"] == "mme"]
    assert sum(mme_items) / 4 == pytest.approx(scored["mme"].score, abs=1e-3) and mme_items[0] > mme_items[3]
