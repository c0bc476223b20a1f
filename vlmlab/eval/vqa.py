"""VQA accuracy as the official VQA evaluation script (GT-Vision-Lab/VQA, `vqaEval.py`) computes it.

The answer processing reproduces the script's `processPunctuation` and `processDigitArticle`, quirks
included, because VQAv2/OKVQA scores are only comparable with published ones if they are scored the
same way. The word tables below are the script's data, entry for entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The script's contraction table, verbatim (its data, including its oddities: keys with capitals such as
# "Im" can never match because words are lower-cased first, and "somebody'd" maps to "somebodyd").
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}

# The script's "manualMap": only these words become digits, "none" included (to "0").
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# Removed outright, or replaced by a space, depending on context (see `_process_punctuation`). Note what
# is *not* here: the apostrophe, ':' and '.', which the script treats separately or keeps.
PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)

_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
# The script writes "(?!<=\d)(\.)(?!\d)": the first group is a negative *lookahead* for "<=digit" (a typo
# for a lookbehind), which always holds at a '.', so in effect it removes every period not followed by a digit.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The script calls `periodStrip.sub("", text, re.UNICODE)`, which passes re.UNICODE (32) as the *count*,
# so at most 32 periods are removed; kept for exactness.
_PERIOD_SUB_COUNT = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    """The script's `processPunctuation`."""
    # One comma between digits anywhere ("1,000") switches every mark to removal, not just that comma.
    remove_all = _COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        # The test looks at the original text, not the partly processed one, as the script does.
        if remove_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=_PERIOD_SUB_COUNT)


def _process_digit_article(text: str) -> str:
    """The script's `processDigitArticle`: lower case, number words to digits, no articles, contractions."""
    # Number words are mapped before the article test, and contractions after it, as in the script.
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def _strip(text: str) -> str:
    """Newlines and tabs to spaces, ends stripped: what the script does to every answer first."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_normalise(answer: str) -> str:
    """An answer as the official VQA script processes it: whitespace, punctuation, then digits/articles/contractions."""
    return _process_digit_article(_process_punctuation(_strip(answer)))


def vqa_accuracy(prediction: str, answers: Sequence[str], *, always_normalise: bool = False) -> float:
    """Official VQA accuracy: mean over leave-one-annotator-out subsets of min(1, matches among the rest / 3)."""
    if isinstance(answers, str) or not answers:
        raise ValueError("vqa_accuracy needs a non-empty sequence of human answers")
    pred = _strip(prediction)
    gts = [_strip(a) for a in answers]
    # The script processes prediction and answers only when the annotators disagree: its authors chose not to
    # touch unanimous answers (often OCR-like). So with unanimous "black", "Black." scores 0 there. Pass
    # always_normalise=True to process in every case instead (as lmms-eval does since 2025).
    if always_normalise or len(set(gts)) > 1:
        pred = vqa_normalise(pred)
        gts = [vqa_normalise(a) for a in gts]
    matches = sum(gt == pred for gt in gts)
    # Leaving out annotator i leaves `matches - 1` matches if i matched, else `matches`: the same sum as the
    # script's explicit loop over the len(gts) subsets. With a single answer nothing is left, so the score is 0.
    total = sum(min(1.0, (matches - (gt == pred)) / 3.0) for gt in gts)
    return total / len(gts)
