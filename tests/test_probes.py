"""The opt-in probe benchmarks of the synthetic suite: POPE-style hallucination questions and multiple choice."""

from __future__ import annotations

import pytest

from vlmlab.data.probes import PAIRS
from vlmlab.data.synthetic_v2 import GENERATORS, PROBE_GENERATORS, SyntheticV2Spec, draw_suite
from vlmlab.eval.metrics import task_score

SMALL = {"train_images": 60, "eval_images": 200}


@pytest.fixture(scope="module")
def suites():
    return draw_suite(SyntheticV2Spec(**SMALL)), draw_suite(SyntheticV2Spec(**SMALL, probes=True))


def test_probes_add_their_tasks_and_move_no_other_row(suites):
    plain, probed = suites
    for split, tasks in plain.items():
        assert {task: probed[split][task] for task in tasks} == tasks
    assert set(probed["test"]) - set(plain["test"]) == set(PROBE_GENERATORS)
    assert set(probed["train"]) - set(plain["train"]) == {g.train_task for g in PROBE_GENERATORS.values()}
    spec = SyntheticV2Spec(**SMALL, probes=True)
    assert set(spec.task_metrics()) == set(GENERATORS) | set(PROBE_GENERATORS)
    assert spec.version.endswith("+probes-1") and spec.digest() != SyntheticV2Spec(**SMALL).digest()
    assert set(SyntheticV2Spec(**SMALL).task_metrics()) == set(GENERATORS)


def _asked_pair(prompt: str) -> tuple[str, str]:
    color, shape = prompt.removeprefix("is there ").removesuffix("?").split()[-2:]
    return color, shape


@pytest.mark.parametrize("split", ["random", "adversarial"])
def test_pope_asks_about_present_and_absent_pairs_half_and_half(suites, split):
    examples = suites[1]["test"][f"synth_pope_{split}"]
    answers = [e.answers[0] for e in examples]
    assert set(answers) == {"yes", "no"} and 0.4 < answers.count("yes") / len(answers) < 0.6
    for e in examples:
        present = {(color, shape) for _, shape, color in e.scene.objects}
        pair = _asked_pair(e.prompt)
        assert pair in PAIRS and (pair in present) == (e.answers[0] == "yes")
        if split == "adversarial" and e.answers[0] == "no":
            # an absent pair made of a colour or a shape the scene shows
            assert pair[0] in {c for c, _ in present} or pair[1] in {s for _, s in present}


def test_random_negatives_are_not_all_adversarial(suites):
    examples = suites[1]["test"]["synth_pope_random"]
    unrelated = [e for e in examples if e.answers[0] == "no"
                 and _asked_pair(e.prompt)[0] not in {c for _, _, c in e.scene.objects}
                 and _asked_pair(e.prompt)[1] not in {s for _, s, _ in e.scene.objects}]
    assert unrelated, "random negatives include pairs sharing nothing with the scene"


def test_saying_yes_to_everything_scores_pope_f1_by_its_counts(suites):
    examples = suites[1]["test"]["synth_pope_adversarial"]
    references = [e.answers for e in examples]
    yes = sum(r[0] == "yes" for r in references)
    result = task_score("pope_f1", ["yes"] * len(examples), references, [()] * len(examples))
    assert result.score == pytest.approx(100 * 2 * yes / (2 * yes + len(examples) - yes))
    assert task_score("pope_f1", [r[0] for r in references], references, [()] * len(references)).score == 100


def test_multiple_choice_is_answered_by_the_letter_of_the_right_colour(suites):
    examples = suites[1]["test"]["synth_mc"]
    letters = []
    for e in examples:
        letter, *options = e.answers
        assert len(options) == 4 == len(set(options))
        color = next(c for _, s, c in e.scene.objects if f"the {s}?" in e.prompt) if "at the" not in e.prompt \
            else None
        if color is not None:
            assert options["abcd".index(letter)] == color
        assert f"{letter}. {options['abcd'.index(letter)]}" in e.prompt
        letters.append(letter)
    assert set(letters) == set("abcd")
    references = [e.answers for e in examples]
    assert task_score("multiple_choice", letters, references, [()] * len(references)).score == 100
    wrong = ["abcd"[("abcd".index(x) + 1) % 4] for x in letters]
    assert task_score("multiple_choice", wrong, references, [()] * len(references)).score == 0
