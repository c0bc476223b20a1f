"""Metrics against values worked out by hand and against the official scorers' edge cases."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from vlmlab.eval.metrics import (
    METRICS, anls, caption_tokenise, cider_d, exact_match, levenshtein, metric, multiple_choice,
    multiple_choice_accuracy, normalise, vqa_accuracy, vqa_normalise,
)

# ----------------------------------------------------------------------------------------------------------
# exact match (behaviour other code relies on)


def test_normalise_and_exact_match_unchanged():
    assert normalise("  A  Red\tCar \n") == "a red car"
    assert exact_match("Red  car", ["blue", "red car"]) == 1.0
    assert exact_match("red", ["red car"]) == 0.0


# ----------------------------------------------------------------------------------------------------------
# VQA answer processing


@pytest.mark.parametrize(("raw", "expected"), [
    ("Two", "2"),
    ("none", "0"),                       # in the script's number map too
    ("the dog.", "dog"),
    ("a red car", "red car"),
    ("An apple", "apple"),
    ("dont", "don't"),
    ("isnt", "isn't"),
    ("youre", "you're"),
    ("Im", "im"),                        # the table's "Im" key has a capital, so never matches
    ("yes!", "yes"),                     # '!' not next to a space: replaced by a space, then split away
    ("3.5", "3.5"),                      # a period followed by a digit stays
    ("5.", "5"),                         # ... one that is not goes
    ("1,000", "1000"),                   # comma between digits: every mark is removed, not spaced
    ("1,000 (approx)", "1000 approx"),
    ("red,blue", "red blue"),            # no digit comma, no space next to it: comma becomes a space
    ("red, blue", "red blue"),           # ", " present: comma removed
    ("t-shirt", "t shirt"),
    ("10:30", "10:30"),                  # ':' is not in the script's list
    ("  two\tdogs\n ", "2 dogs"),
    ("a  big   dog", "big dog"),
])
def test_vqa_normalise(raw, expected):
    assert vqa_normalise(raw) == expected


def test_vqa_normalise_removes_at_most_32_periods():
    # The script passes re.UNICODE (32) where re.sub takes its count.
    assert vqa_normalise("x" + "." * 40) == "x" + "." * 8


# ----------------------------------------------------------------------------------------------------------
# VQA accuracy: leave one annotator out, min(1, matches among the other 9 / 3), averaged over the 10


def _answers(matching: int, total: int = 10) -> list[str]:
    return ["cat"] * matching + ["dog"] * (total - matching)


@pytest.mark.parametrize(("matching", "expected"), [
    (10, 1.0),
    (4, 1.0),                  # every subset keeps >= 3 matches
    (3, (7 * 1 + 3 * 2 / 3) / 10),   # 0.9: dropping a match leaves 2
    (2, (8 * 2 / 3 + 2 * 1 / 3) / 10),  # 0.6
    (1, (9 * 1 / 3 + 1 * 0) / 10),      # 0.3
    (0, 0.0),
])
def test_vqa_accuracy_leave_one_out(matching, expected):
    assert vqa_accuracy("cat", _answers(matching)) == pytest.approx(expected)


def test_vqa_accuracy_normalises_when_annotators_disagree():
    assert vqa_accuracy("Two", ["2"] * 4 + ["3"] * 6) == pytest.approx(1.0)
    assert vqa_accuracy("The cat.", _answers(2)) == pytest.approx(0.6)
    # Answers are processed too: "two" among them counts as "2".
    assert vqa_accuracy("2", ["two", "two", "3", "3"]) == pytest.approx((2 * 1 / 3 + 2 * 2 / 3) / 4)


def test_vqa_accuracy_unanimous_answers_are_not_processed():
    # The official script processes nothing when all answers agree (only strips whitespace).
    assert vqa_accuracy("black", ["black"] * 10) == 1.0
    assert vqa_accuracy(" black\n", ["black"] * 10) == 1.0
    assert vqa_accuracy("Black.", ["black"] * 10) == 0.0
    assert vqa_accuracy("Black.", ["black"] * 10, always_normalise=True) == 1.0


def test_vqa_accuracy_other_answer_counts():
    # Generalised leave-one-out: with 3 answers all matching, each subset has 2 matches.
    assert vqa_accuracy("cat", ["cat", "cat", "cat"]) == pytest.approx(2 / 3)
    # One answer: leaving it out leaves nothing to match, so the formula gives 0 whatever is predicted.
    assert vqa_accuracy("cat", ["cat"]) == 0.0
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


# ----------------------------------------------------------------------------------------------------------
# CIDEr-D


def _reference_cider(preds: list[list[str]], refs: list[list[list[str]]], n: int = 4, sigma: float = 6.0):
    """A deliberately plain CIDEr-D on pre-tokenised text, written independently of the module."""
    def grams(words):
        return Counter(tuple(words[i:i + k]) for k in range(1, n + 1) for i in range(len(words) - k + 1))

    df = Counter()
    for image_refs in refs:
        seen = set()
        for r in image_refs:
            seen |= set(grams(r))
        for g in seen:
            df[g] += 1
    big_n = math.log(len(refs))

    def vector(words, order):
        return {g: c * (big_n - math.log(max(1, df[g]))) for g, c in grams(words).items() if len(g) == order}

    per_image = []
    for hyp, image_refs in zip(preds, refs):
        acc = 0.0
        for r in image_refs:
            gauss = math.exp(-((len(hyp) - len(r)) ** 2) / (2 * sigma ** 2)) if hyp and r else 0.0
            for order in range(1, n + 1):
                vh, vr = vector(hyp, order), vector(r, order)
                nh = math.sqrt(sum(x * x for x in vh.values()))
                nr = math.sqrt(sum(x * x for x in vr.values()))
                if nh > 0 and nr > 0:
                    clipped = sum(min(vh[g], vr.get(g, 0.0)) * vr.get(g, 0.0) for g in vh)
                    acc += clipped / (nh * nr) * gauss
        per_image.append(acc / n / len(image_refs) * 10)
    return sum(per_image) / len(per_image), per_image


def test_cider_two_word_corpus_by_hand():
    # Corpus: image 1 "a cat", image 2 "a dog". "a" is in both images: idf 0. "cat" and ("a","cat") get
    # log 2 each, so unigram and bigram cosines are 1, and there are no 3- or 4-grams: (1 + 1 + 0 + 0) / 4 * 10.
    mean, scores = cider_d(["a cat", "a dog"], [["a cat"], ["a dog"]])
    assert scores == pytest.approx([5.0, 5.0])
    assert mean == pytest.approx(5.0)


def test_cider_identical_long_captions_score_10():
    refs = [["a cat sits on a mat"], ["a dog runs in the park"]]
    mean, scores = cider_d(["A cat sits on a mat.", "a dog runs in the park"], refs)
    assert scores == pytest.approx([10.0, 10.0])
    assert mean == pytest.approx(10.0)


def test_cider_clipping_repeated_word_does_not_help():
    # "a cat cat cat" vs "a cat", L = log 2: unigrams min(3L, L) * L / (3L * L) = 1/3 (1 without clipping);
    # bigrams L^2 / (sqrt(5) L * L); no reference 3/4-grams; lengths (in bigrams) 3 vs 1: exp(-4 / 72).
    _, scores = cider_d(["a cat cat cat", "a dog"], [["a cat"], ["a dog"]])
    expected = 10 * (1 / 3 + 1 / math.sqrt(5)) / 4 * math.exp(-4 / 72)
    assert scores[0] == pytest.approx(expected)
    assert scores[0] < 5.0


def test_cider_length_penalty():
    # "a cat zz": unigram and bigram cosines 1/sqrt(2) each, one word too long: exp(-1 / (2 sigma^2)).
    _, scores = cider_d(["a cat zz", "a dog"], [["a cat"], ["a dog"]])
    assert scores[0] == pytest.approx(10 * math.sqrt(2) / 4 * math.exp(-1 / 72))
    _, no_penalty = cider_d(["a cat zz", "a dog"], [["a cat"], ["a dog"]], sigma=1e9)
    assert no_penalty[0] == pytest.approx(10 * math.sqrt(2) / 4)
    assert scores[0] < no_penalty[0] < 5.0


def test_cider_matches_plain_reimplementation():
    refs = [
        ["a man riding a horse on a beach", "a person rides a brown horse near the sea", "man on horse"],
        ["two dogs play with a red ball", "a couple of dogs chase a ball in the grass"],
        ["a plate of food with broccoli and rice", "broccoli and rice on a white plate", "a meal on a plate"],
        ["a red double decker bus on a city street", "a bus driving down the street"],
    ]
    preds = ["a man riding a horse", "dogs dogs dogs play with a ball ball", "a plate of rice", "a red bus"]
    mean, scores = cider_d(preds, refs)
    want_mean, want_scores = _reference_cider([p.split() for p in preds], [[r.split() for r in rs] for rs in refs])
    assert scores == pytest.approx(want_scores)
    assert mean == pytest.approx(want_mean)
    assert all(0.0 < s < 10.0 for s in scores)


def test_cider_edge_cases():
    _, scores = cider_d(["", "a dog"], [["a cat"], ["a dog"]])
    assert scores[0] == 0.0
    # One image: idf = log(1) - log(1) = 0 for every reference n-gram, so the score is 0 (as officially).
    assert cider_d(["a cat"], [["a cat"]]) == (0.0, [0.0])
    with pytest.raises(ValueError):
        cider_d(["a cat"], [["a cat"], ["a dog"]])
    with pytest.raises(ValueError):
        cider_d(["a cat", "a dog"], [["a cat"], []])


def test_caption_tokenise():
    assert caption_tokenise("A man, riding a horse.") == ["a", "man", "riding", "a", "horse"]
    assert caption_tokenise("The dog's ball isn't red!") == ["the", "dog", "'s", "ball", "is", "n't", "red"]
    assert caption_tokenise('A black-and-white photo (1,000 px; 3.5") -- nice') == [
        "a", "black-and-white", "photo", "1,000", "px", "3.5", "nice"]


# ----------------------------------------------------------------------------------------------------------
# ANLS


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_anls():
    assert anls("invoice 42", ["invoice 42"]) == 1.0
    assert anls("abcdefghiX", ["abcdefghij"]) == pytest.approx(0.9)  # one edit in ten characters
    assert anls("INVOICE 42", ["invoice 42"]) == 1.0
    assert anls("  invoice   42 ", ["invoice 42"]) == 1.0
    assert anls("axyz", ["abcd"]) == 0.0                      # NL 0.75
    assert anls("abcdef", ["abcxyz"]) == pytest.approx(0.5)   # NL exactly 0.5 is kept by the official script
    assert anls("abcdefg", ["abxyzwv"]) == 0.0                # NL 5/7
    assert anls("abcdefghiX", ["zzz", "abcdefghij", "abcdefghiX"]) == 1.0  # best answer counts
    assert anls("abcdefghiX", ["zzz", "abcdefghij"]) == pytest.approx(0.9)
    # The official divisor is the raw length: "abd " (4 chars) vs "abc" is 1 edit over 4.
    assert anls("abd ", ["abc"]) == pytest.approx(0.75)
    assert anls("", [""]) == 1.0
    with pytest.raises(ValueError):
        anls("x", [])


# ----------------------------------------------------------------------------------------------------------
# Multiple choice


CHOICES = ["blue car", "red car", "green bike", "no vehicle"]


@pytest.mark.parametrize("prediction", ["B", "b", "(B)", "B.", "B)", "B:", " B ", "B. red car", "Red car", "red car."])
def test_multiple_choice_right(prediction):
    assert multiple_choice_accuracy(prediction, CHOICES, 1) == 1.0


@pytest.mark.parametrize("prediction", ["A", "(C)", "blue car", "car", "E", ""])
def test_multiple_choice_wrong(prediction):
    assert multiple_choice_accuracy(prediction, CHOICES, 1) == 0.0


def test_multiple_choice_registry_convention():
    assert multiple_choice("B", ["red car", *CHOICES]) == 1.0   # correct option by text
    assert multiple_choice("red car", ["B", *CHOICES]) == 1.0   # ... or by letter
    assert multiple_choice("A", ["B", *CHOICES]) == 0.0
    with pytest.raises(ValueError):
        multiple_choice("A", ["purple", *CHOICES])
    with pytest.raises(ValueError):
        multiple_choice_accuracy("A", CHOICES, 4)


# ----------------------------------------------------------------------------------------------------------
# Registry


def test_registry():
    assert set(METRICS) == {"exact_match", "vqa_accuracy", "anls", "multiple_choice"}
    for name, fn in METRICS.items():
        assert metric(name) is fn
        assert 0.0 <= fn("red car", ["red car", *CHOICES]) <= 1.0
    assert metric("vqa_accuracy")("Two", ["2", "2", "2", "2", "3"]) == 1.0


def test_unknown_metric_lists_known_names():
    with pytest.raises(KeyError) as err:
        metric("nosuch")
    for name in METRICS:
        assert name in str(err.value)
    with pytest.raises(KeyError, match="cider_d"):
        metric("cider")
