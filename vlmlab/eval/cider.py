"""CIDEr-D as the COCO caption evaluation computes it (pycocoevalcap `cider/cider_scorer.py`).

That scorer is CIDEr-D: tf-idf n-gram vectors (n = 1..4) with document frequencies taken over the
reference sets of the corpus being scored, clipped hypothesis counts, and a Gaussian length penalty.
The one part we cannot reproduce exactly is tokenisation: the official pipeline runs the Stanford
PTBTokenizer (Java, CoreNLP 3.4.1) and drops its punctuation tokens; `caption_tokenise` approximates it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

NGram = tuple[str, ...]

# PTB splits these clitics off the word before them ("don't" -> "do n't", "dog's" -> "dog 's").
_CLITIC = re.compile(r"(\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
# Tokens kept, in order of preference: clitics, numbers with inner separators ("3.5", "1,000", "10:30"),
# words (inner hyphens, slashes and apostrophes kept, as PTB keeps "black-and-white", "and/or", "o'clock"),
# and the symbols PTB keeps as tokens. Everything else (. , ; : ! ? quotes brackets dashes) is dropped, as the
# official pipeline drops those tokens after PTB tokenisation.
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,:]\d+)+|\w+(?:['/-]\w+)*|[$%&#@*+=<>|~^]")


def caption_tokenise(text: str) -> list[str]:
    """Lower-cased tokens with punctuation removed, approximating the COCO pipeline's PTB tokenisation."""
    # Not reproduced: PTB's British-to-American respellings and its finer handling of abbreviations ("u.s.").
    return _TOKEN.findall(_CLITIC.sub(r"\1 \2", text.lower()))


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[NGram]:
    """Term frequencies of all 1..n-grams of `tokens`."""
    counts: Counter[NGram] = Counter()
    for k in range(1, n + 1):
        for i in range(len(tokens) - k + 1):
            counts[tuple(tokens[i : i + k])] += 1
    return counts


def _tfidf(
    counts: Counter[NGram], tokens: Sequence[str], n: int, doc_freq: Counter[NGram], log_docs: float
) -> tuple[list[dict[NGram, float]], list[float], int]:
    """Per-order tf-idf vectors, their norms, and the length the scorer uses for the penalty."""
    vecs: list[dict[NGram, float]] = [{} for _ in range(n)]
    for gram, tf in counts.items():
        # An n-gram absent from every reference set counts as if in one document (log 1 = 0), as officially.
        vecs[len(gram) - 1][gram] = tf * (log_docs - math.log(max(1.0, doc_freq[gram])))
    norms = [math.sqrt(sum(w * w for w in vec.values())) for vec in vecs]
    # The scorer's "length" is its count of *bigrams* (it adds term frequencies where the n index is 1), i.e.
    # words - 1; as a difference this equals the word-count difference whenever both sides are non-empty.
    length = max(0, len(tokens) - 1)
    return vecs, norms, length


def cider_d(
    predictions: Sequence[str], references: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0
) -> tuple[float, list[float]]:
    """Corpus CIDEr-D (COCO scale, up to 10 per image) and the per-image scores, one prediction per image."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference sets")
    if any(isinstance(refs, str) or not refs for refs in references):
        raise ValueError("every image needs a non-empty sequence of reference captions")
    if not predictions:
        raise ValueError("cider_d needs at least one image")
    hyp_tokens = [caption_tokenise(p) for p in predictions]
    ref_tokens = [[caption_tokenise(r) for r in refs] for refs in references]
    ref_counts = [[_ngram_counts(toks, n) for toks in refs] for refs in ref_tokens]

    # Document frequency: in how many images' reference sets (not captions) each n-gram occurs.
    doc_freq: Counter[NGram] = Counter()
    for counts in ref_counts:
        doc_freq.update(set().union(*counts))
    # The corpus is the images being scored, so a one-image corpus gives idf 0 everywhere and a score of 0.
    log_docs = math.log(len(references))

    penalty_denominator = 2.0 * sigma * sigma
    scores = []
    for toks, refs_toks, refs_counts in zip(hyp_tokens, ref_tokens, ref_counts):
        hyp_vecs, hyp_norms, hyp_len = _tfidf(_ngram_counts(toks, n), toks, n, doc_freq, log_docs)
        total = 0.0
        for rtoks, rcounts in zip(refs_toks, refs_counts):
            ref_vecs, ref_norms, ref_len = _tfidf(rcounts, rtoks, n, doc_freq, log_docs)
            penalty = math.exp(-((hyp_len - ref_len) ** 2) / penalty_denominator)
            for k in range(n):
                # The "D" clipping: a hypothesis weight never counts for more than the reference's.
                dot = sum(min(w, ref_vecs[k].get(g, 0.0)) * ref_vecs[k].get(g, 0.0) for g, w in hyp_vecs[k].items())
                # Orders with a zero-norm side contribute 0 (the dot is 0 then), as in the guarded scorer.
                if hyp_norms[k] and ref_norms[k]:
                    total += dot / (hyp_norms[k] * ref_norms[k]) * penalty
        # Mean over n-gram orders, mean over references, times 10.
        scores.append(10.0 * total / n / len(refs_toks))
    return sum(scores) / len(scores), scores
