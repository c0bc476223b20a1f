"""The official scoring rules of POPE, MME, MMBench, ScienceQA and GQA, on answers worked out by hand."""

from __future__ import annotations

import pytest

from vlmlab.data import benchmarks
from vlmlab.eval.choices import circular_accuracy, mmbench_option, scienceqa_option
from vlmlab.eval.metrics import METRIC_LABELS, TASK_SCORERS, gqa_accuracy, gqa_normalise, metric, task_score
from vlmlab.eval.yes_no import mme_answer, mme_score, pope_answer, pope_counts, pope_f1


def test_pope_reads_the_first_sentence_for_a_no_word_with_its_quirks():
    assert pope_answer("No, there is not.") == "no"
    assert pope_answer("Yes.") == "yes"
    assert pope_answer("There is no dog. Yes, a cat.") == "no"     # the first sentence decides
    assert pope_answer("Yes. There is no dog.") == "yes"
    assert pope_answer("I do not see one") == "no"
    assert pope_answer("NO") == "yes" and pope_answer("Not at all") == "yes"  # case-sensitive words
    assert pope_answer("no!") == "yes" and pope_answer("") == "yes"


# Six "yes" labels then four "no": TP 4, FN 2 (the 5th and 6th), FP 1 ("NO" reads as yes), TN 3.
POPE_ANSWERS = ["Yes.", "yes", "Yes, there is a dog.", "There is a cat on the sofa.", "No, there is not.",
                "I do not see one.", "NO", "no", "No.", "There is no dog. Yes."]
POPE_LABELS = [("yes",)] * 6 + [("no",)] * 4


def test_pope_f1_on_a_confusion_matrix_worked_by_hand():
    counts = pope_counts(POPE_ANSWERS, POPE_LABELS)
    assert (counts.tp, counts.fp, counts.tn, counts.fn) == (4, 1, 3, 2)
    # precision 4/5, recall 4/6: F1 = 2 * (4/5) * (2/3) / (4/5 + 2/3) = 8/11
    assert counts.precision == pytest.approx(0.8) and counts.recall == pytest.approx(2 / 3)
    assert counts.f1 == pytest.approx(8 / 11) and counts.accuracy == pytest.approx(0.7)
    assert counts.yes_ratio == pytest.approx(0.5)
    result = pope_f1(POPE_ANSWERS, POPE_LABELS, [()] * 10)
    assert result.score == pytest.approx(800 / 11)
    assert task_score("pope_accuracy", POPE_ANSWERS, POPE_LABELS).score == pytest.approx(70.0)


def test_pope_item_shares_average_to_f1_and_a_false_yes_costs():
    items = pope_f1(POPE_ANSWERS, POPE_LABELS, [()] * 10).items
    assert sum(items) / len(items) == pytest.approx(800 / 11)
    true_positive, false_negative, false_positive, true_negative = items[0], items[4], items[6], items[7]
    assert true_positive > true_negative > false_positive and true_negative > false_negative
    assert pope_f1(["no", "no"], [("no",), ("no",)], [(), ()]).score == 0.0  # no "yes" anywhere: F1 is 0


def test_mme_reads_yes_no_from_the_first_four_characters():
    assert mme_answer("No, there is not.") == "no" and mme_answer("Yes.") == "yes"
    assert mme_answer("not sure") == "no"          # "no" is in "not "
    assert mme_answer("There is a dog") == "other" and mme_answer("Y") == "other"


def test_mme_subtask_score_is_acc_plus_acc_plus_summed_over_subtasks():
    # existence: image 1 both right, image 2 first wrong -> acc 3/4, acc+ 1/2 -> 125.
    # count: image 3 both right ("not sure" reads as no), image 4 "maybe" is other -> acc 3/4, acc+ 1/2 -> 125.
    answers = ["Yes.", "No", "no", "No, it is not", "yes", "not sure", "maybe", "no"]
    labels = [("Yes",), ("No",)] * 4
    groups = [("existence", "1.png")] * 2 + [("existence", "2.png")] * 2 + [("count", "3.png")] * 2 + \
        [("count", "4.png")] * 2
    result = mme_score(answers, labels, groups)
    assert result.score == pytest.approx(250.0)
    assert sum(result.items) / len(result.items) == pytest.approx(250.0)
    only_existence = mme_score(answers[:4], labels[:4], groups[:4])
    assert only_existence.score == pytest.approx(125.0)
    with pytest.raises(ValueError, match="subtask, image"):
        mme_score(answers, labels, [()] * 8)


def test_mmbench_reads_a_lone_capital_letter_or_one_options_text():
    options = {"A": "dog", "B": "cat", "C": "bird"}
    assert mmbench_option("(B) cat", options) == "B"
    assert mmbench_option("B.", options) == "B" and mmbench_option("The answer is C", options) == "C"
    assert mmbench_option("b", options) is None            # letters are read as written: upper case
    assert mmbench_option("I think it is a cat", options) == "B"  # no letter: the one option named
    assert mmbench_option("A or B", options) is None       # two letters, and no option's text
    assert mmbench_option("a cat or a dog", options) is None


def test_mmbench_circular_question_right_in_three_of_four_shifts_scores_zero():
    # Question q1 (four options, C right): its shifts have the right option at C, B, A, D; one is missed.
    q1 = [("C", "w", "x", "y", "z"), ("B", "x", "y", "z", "w"), ("A", "y", "z", "w", "x"), ("D", "z", "w", "x", "y")]
    q2 = [("A", "left", "right"), ("B", "right", "left")]
    references = q1 + q2
    groups = [("q1",)] * 4 + [("q2",)] * 2
    three_of_four = ["C", "(B) x", "A", "A", "A", "B. left"]
    result = circular_accuracy(three_of_four, references, groups)
    assert result.score == pytest.approx(50.0)  # q1 wrong, q2 right in both shifts
    assert result.items[:4] == [0.0] * 4 and sum(result.items) / 6 == pytest.approx(50.0)
    all_right = circular_accuracy(["C", "B", "A", "D", "left", "left"], references, groups)  # texts count too
    assert all_right.score == pytest.approx(100.0)
    assert circular_accuracy(three_of_four, references, [()] * 6).score == pytest.approx(5 / 6 * 100)


def test_scienceqa_reads_answers_as_llava_does():
    assert scienceqa_option("B", 3) == 1 and scienceqa_option("B. dog", 3) == 1
    assert scienceqa_option("The answer is C.", 3) == 2
    assert scienceqa_option("(B) cat", 3) is None and scienceqa_option("b", 3) is None
    assert scienceqa_option("D", 3) is None  # a letter past the options
    result = task_score("scienceqa_accuracy", ["C", "(A) yes"], [("C", "cat", "dog", "bird"), ("A", "yes", "no")])
    assert result.score == pytest.approx(50.0)


def test_gqa_drops_trailing_full_stops_and_case_and_nothing_else():
    assert gqa_normalise("Yes.") == "yes" and gqa_normalise(" Table.. ") == "table"
    assert gqa_accuracy("Table.", ["table"]) == 1.0
    assert gqa_accuracy("The table.", ["table"]) == 0.0  # no article removal, unlike VQA's normalisation
    assert gqa_accuracy("table,", ["table"]) == 0.0


# One small task per metric: every scorer's item shares must average to its task score.
CASES = {
    "exact_match": (["cat", "Dog"], [("cat",), ("cat",)], None),
    "vqa_accuracy": (["two", "3"], [("2",) * 9 + ("3",), ("3",) * 10], None),
    "anls": (["cot", "dog"], [("cat",), ("dog",)], None),
    "multiple_choice": (["B", "red"], [("blue", "red", "blue"), ("red", "red", "green")], None),
    "cider": (["a red circle", "a blue square"], [("a red circle",), ("a blue thing",)], None),
    "pope_f1": (POPE_ANSWERS, POPE_LABELS, None),
    "pope_accuracy": (POPE_ANSWERS, POPE_LABELS, None),
    "mme": (["yes", "no", "yes", "yes"], [("Yes",), ("No",)] * 2, [("color", "1"), ("color", "1"), ("OCR", "2"),
                                                                  ("OCR", "2")]),
    "mmbench_circular": (["A", "A", "B"], [("A", "x", "y"), ("B", "y", "x"), ("B", "p", "q")],
                         [("1",), ("1",), ("2",)]),
    "scienceqa_accuracy": (["A", "C"], [("A", "x", "y"), ("B", "x", "y", "z")], None),
    "gqa_accuracy": (["Yes.", "no"], [("yes",), ("table",)], None),
}


@pytest.mark.parametrize("name", sorted(TASK_SCORERS))
def test_every_task_scorer_has_item_shares_averaging_to_its_score(name):
    predictions, references, groups = CASES[name]
    result = task_score(name, predictions, references, groups)
    assert len(result.items) == len(predictions)
    assert sum(result.items) / len(result.items) == pytest.approx(result.score, rel=1e-12, abs=1e-9)


def test_the_registries_agree():
    assert set(CASES) == set(TASK_SCORERS), "a new task metric needs a case above"
    assert set(benchmarks.METRICS) <= set(TASK_SCORERS)  # every metric a spec may name can be scored
    assert set(METRIC_LABELS) == set(TASK_SCORERS)
    assert (METRIC_LABELS["pope_f1"], METRIC_LABELS["mme"], METRIC_LABELS["mmbench_circular"]) == \
        ("F1", "score", "circ. acc.")
    with pytest.raises(KeyError, match="task_score"):
        metric("pope_f1")  # task-level: no per-sample function
    with pytest.raises(ValueError, match="no predictions"):
        task_score("exact_match", [], [])


def test_a_limit_per_task_keeps_the_last_group_whole_and_ungrouped_tasks_exact():
    import torch

    from vlmlab.data.collate import Example
    from vlmlab.eval.harness import limit_per_task

    pixels = torch.zeros(3, 4, 4, dtype=torch.uint8)
    mme = [Example(pixels, "mme", f"q{i}", "yes", group=("color", f"img{i // 2}")) for i in range(6)]
    vqa = [Example(pixels, "vqa", f"q{i}", "red") for i in range(6)]
    kept = limit_per_task([*mme, *vqa], 3)
    # three MME questions reach into the second image's pair: its other question comes too, no third image
    assert [ex.prompt for ex in kept if ex.task == "mme"] == ["q0", "q1", "q2", "q3"]
    assert [ex.prompt for ex in kept if ex.task == "vqa"] == ["q0", "q1", "q2"]
    assert limit_per_task(mme, None) == mme
