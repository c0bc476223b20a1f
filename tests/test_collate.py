"""Tokenizer round trips and collation: loss on answer tokens only, right padding to train, left to generate."""

from __future__ import annotations

import pytest
import torch

from vlmlab.data.collate import IGNORE_INDEX, Example, VLMCollator
from vlmlab.data.images import SquareResize
from vlmlab.data.tokenizer import IMAGE_TOKEN, synthetic_tokenizer
from vlmlab.eval.metrics import exact_match, normalise

TEMPLATE = "question: {prompt} answer:"
CORPUS = [TEMPLATE.format(prompt=p) for p in ("how many shapes are there?", "what word is written?")] + [
    " 3", " cat", " a red circle at the top left and the word cat"]


@pytest.fixture
def tokenizer(tmp_path):
    return synthetic_tokenizer(CORPUS, tmp_path)


def example(answer: str, prompt: str = "what word is written?") -> Example:
    return Example(torch.zeros(3, 8, 8, dtype=torch.uint8), "text", prompt, answer)


def test_tokenizer_is_cached_and_reloaded_from_disk(tmp_path, tokenizer):
    again = synthetic_tokenizer(reversed(CORPUS), tmp_path)  # order does not matter
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len(list(tmp_path.glob("tokenizer-*"))) == 1


def test_answers_round_trip_through_the_tokenizer(tokenizer):
    for text in (" cat", " 3", " a red circle at the top left and the word cat"):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == text.strip()
    assert IMAGE_TOKEN in tokenizer.get_vocab()


def test_train_batch_puts_the_loss_on_answer_and_eos_only(tokenizer):
    collator = VLMCollator(tokenizer, SquareResize(size=8), lambda shapes: 4 * len(shapes), template=TEMPLATE)
    batch = collator.train_batch([example("cat"), example("a red circle at the top left and the word cat")])
    for row in range(2):
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        supervised = ids[labels != IGNORE_INDEX]
        answer = ["cat", "a red circle at the top left and the word cat"][row]
        assert tokenizer.decode(supervised, skip_special_tokens=True).strip() == answer
        assert supervised[-1] == tokenizer.eos_token_id
        assert (ids == collator.image_token_id).sum() == 4
    # Right padding: the shorter row ends in pads that carry no loss and no attention.
    assert batch["attention_mask"][0, -1] == 0 and batch["labels"][0, -1] == IGNORE_INDEX
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].min() == -1.0


def test_generation_batch_is_left_padded_without_answers(tokenizer):
    collator = VLMCollator(tokenizer, SquareResize(size=8), lambda shapes: 4 * len(shapes), template=TEMPLATE)
    batch = collator.generation_batch([example("cat"), example("3", "how many shapes are there?")])
    assert (batch["attention_mask"][:, -1] == 1).all()
    assert batch["input_ids"][0, 0] == tokenizer.pad_token_id or batch["input_ids"][1, 0] == tokenizer.pad_token_id
    text = tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert text.strip().endswith("answer:") and "cat" not in text


def test_each_task_gets_its_own_template(tmp_path):
    captions = "{prompt} caption:"
    tokenizer = synthetic_tokenizer([*CORPUS, captions.format(prompt="describe the image.")], tmp_path)
    collator = VLMCollator(tokenizer, SquareResize(size=8), lambda shapes: 4 * len(shapes), template=TEMPLATE,
                           templates={"caption": captions})
    caption = Example(torch.zeros(3, 8, 8, dtype=torch.uint8), "caption", "describe the image.", "a red circle")
    batch = collator.generation_batch([caption, example("cat")])
    texts = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in batch["input_ids"]]
    assert texts == ["describe the image. caption:", "question: what word is written? answer:"]
    # the caption template has nothing before its prompt: only the question template's prefix stops generation
    assert collator.turn_prefixes() == {"question:"}


def test_exact_match_normalises_case_and_whitespace():
    assert normalise("  A  Red\tCircle ") == "a red circle"
    assert exact_match(" Cat ", ["cat"]) == 1.0
    assert exact_match("cats", ["cat"]) == 0.0
    assert exact_match("dog", ["cat", "DOG"]) == 1.0


def test_text_tokens_count_every_token_but_the_image_placeholders(tokenizer):
    collator = VLMCollator(tokenizer, SquareResize(size=8), lambda shapes: 4 * len(shapes), template=TEMPLATE)
    long = example("a red circle at the top left and the word cat")
    query = Example(long.pixels, "text", "how many shapes are there?", "3", context=(long, example("cat")))
    train = collator.train_batch([long])["input_ids"][0]
    prompt = collator.generation_batch([query])["input_ids"][0]
    assert collator.text_tokens(long, training=True) == len(train) - 4
    assert collator.text_tokens(query, training=False) == len(prompt) - 3 * 4  # two shots and the query's image
