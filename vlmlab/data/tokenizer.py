"""Tokenizers: one trained offline on the synthetic corpus, or a pretrained LM's own, both with an image token."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from vlmlab.data.cache import build_once

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def _train(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-pair-encoding tokenizer fitted to `corpus`, with the suite's special tokens."""
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    # Metaspace keeps word boundaries inside tokens, so decoding restores the spaces exactly.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    specials = [*SPECIAL_TOKENS.values(), IMAGE_TOKEN]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, additional_special_tokens=[IMAGE_TOKEN], **SPECIAL_TOKENS
    )


def synthetic_tokenizer(corpus: Iterable[str], cache_dir: str | os.PathLike, vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """The tokenizer trained on `corpus`, saved once with `save_pretrained` and loaded with `from_pretrained`."""
    texts = sorted(set(corpus))
    digest = hashlib.sha256("\n".join([str(vocab_size), *texts]).encode()).hexdigest()[:12]
    path = build_once(Path(cache_dir) / f"tokenizer-{digest}", lambda out: _train(texts, vocab_size).save_pretrained(out))
    return AutoTokenizer.from_pretrained(path)


def pretrained_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A pretrained LM's tokenizer with the image placeholder token added (and a pad token if it lacks one)."""
    tok = AutoTokenizer.from_pretrained(name_or_path)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
