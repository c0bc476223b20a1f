"""Interleaved documents: collation (loss on every text token, placeholders in place), both fusions with 0 to N
images per sample (cross-attention sees only earlier images), the synthetic `story` task, its cost, and training."""

from __future__ import annotations

import dataclasses
import json

import datasets
import pytest
import torch

from vlmlab.data.collate import IGNORE_INDEX, Document, Example, VLMCollator
from vlmlab.data.examples import split_examples
from vlmlab.data.images import ImageSplitting, SquareResize
from vlmlab.data.synthetic_v2 import STORY_TASK, SUITE_VERSION, SyntheticV2Spec, load_synthetic_v2
from vlmlab.data.tokenizer import synthetic_tokenizer
from vlmlab.models.build import build_vlm
from vlmlab.train.sample_cost import mean_image_tokens, training_sample_cost

SIZE = 32  # px: 16 visual tokens per view with the tiny tower and the MLP connector
CORPUS = ["a picture", " then the word cat", " two red circles", " question: what word is written? answer:", " cat"]
TEMPLATE = "question: {prompt} answer:"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return synthetic_tokenizer(CORPUS, tmp_path_factory.mktemp("tokenizer"))


def image(value: int) -> torch.Tensor:
    return torch.full((3, SIZE, SIZE), value, dtype=torch.uint8)


def random_image(seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def collator_for(tokenizer, sequence_tokens, splitting: ImageSplitting | None = None) -> VLMCollator:
    images = SquareResize(size=SIZE, splitting=splitting or ImageSplitting())
    return VLMCollator(tokenizer, images, sequence_tokens, template=TEMPLATE)


def words(tokenizer, text: str) -> list[int]:
    return tokenizer(" " + text, add_special_tokens=False).input_ids


def vlm(make_cfg, tokenizer, fusion: str, open_gates: bool = True):
    torch.manual_seed(0)
    cfg = make_cfg(f"model/fusion={fusion}")
    model = build_vlm(cfg.model, vocab_size=len(tokenizer), image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                      image_size=SIZE)
    if fusion == "cross_attention" and open_gates:  # at 0 the gates make the blocks an identity: nothing to see
        with torch.no_grad():
            for block in model.fusion.blocks:
                block.attn_gate.fill_(1.0)
                block.ff_gate.fill_(1.0)
    return model.eval()


# --- collation ---------------------------------------------------------------------------------------------


def test_a_document_puts_placeholders_in_place_and_the_loss_on_its_text_and_eos(tokenizer):
    collator = collator_for(tokenizer, lambda shapes: 4 * len(shapes))
    doc = Document(("a picture", image(0), "  two red circles ", image(255), "then the word cat"), STORY_TASK)
    example = Example(image(0), "text", "what word is written?", "cat")
    batch = collator.train_batch([doc, example])
    img, bos, eos = collator.image_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    texts = [words(tokenizer, t) for t in ("a picture", "two red circles", "then the word cat")]
    expected = [bos, *texts[0], *[img] * 4, *texts[1], *[img] * 4, *texts[2], eos]
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    assert ids[: len(expected)].tolist() == expected
    labelled = [t if t not in (bos, img) else IGNORE_INDEX for t in expected]
    assert labels[: len(expected)].tolist() == labelled  # every text token and eos, never bos or a placeholder
    assert (labels[len(expected):] == IGNORE_INDEX).all()
    assert collator.answer_tokens(doc) == sum(len(t) for t in texts) + 1 == int((labels != IGNORE_INDEX).sum())
    assert collator.text_tokens(doc, training=True) == collator.answer_tokens(doc) + 1  # and bos
    # The example in the same batch is collated as before: its loss on the answer and eos only.
    assert batch["input_ids"][1][batch["labels"][1] != IGNORE_INDEX].tolist() == [*words(tokenizer, "cat"), eos]
    # Each sample's views in order, and how many belong to each of its images.
    assert batch["views_per_image"] == [[1, 1], [1]]
    first, second = batch["pixel_values"][0]
    assert first.max() == -1.0 and second.min() == 1.0


def test_a_document_without_images_is_all_text(tokenizer):
    collator = collator_for(tokenizer, lambda shapes: 4 * len(shapes))
    batch = collator.train_batch([Document(("a picture", "then the word cat"), STORY_TASK)])
    assert collator.image_token_id not in batch["input_ids"][0].tolist()
    assert batch["views_per_image"] == [[]] and batch["pixel_values"] == [[]]
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == batch["input_ids"].shape[1] - 1  # all but bos


# --- the model: both fusions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["autoregressive", "cross_attention"])
def test_documents_with_zero_one_and_two_images_train_in_one_batch(make_cfg, tokenizer, fusion):
    model = vlm(make_cfg, tokenizer, fusion).train()
    collator = collator_for(tokenizer, model.sequence_tokens)
    docs = [Document(("a picture", "two red circles"), STORY_TASK),
            Document(("a picture", random_image(0), "two red circles"), STORY_TASK),
            Document((random_image(1), "two red circles", random_image(2), "then the word cat"), STORY_TASK)]
    loss = model(**collator.train_batch(docs)).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # A batch of text-only documents too: no views at all.
    assert torch.isfinite(model(**collator.train_batch(docs[:1])).loss)


def test_autoregressive_fusion_puts_image_k_at_placeholder_run_k(make_cfg, tokenizer):
    model = vlm(make_cfg, tokenizer, "autoregressive")
    collator = collator_for(tokenizer, model.sequence_tokens)
    images = [random_image(1), random_image(2), random_image(3)]
    batch = collator.train_batch([Document(("a picture", images[0], "two red circles", images[1], "cat",
                                            images[2]), STORY_TASK)])
    with torch.no_grad():
        embeds = model._embed(batch["input_ids"], model.encode_images(batch["pixel_values"]))[0]
        alone = [model.encode_images([collator.images.views(i, training=True)])[0] for i in images]
    placeholders = (batch["input_ids"][0] == collator.image_token_id).nonzero().flatten()
    runs = placeholders.split(model.visual_tokens_per_image)
    assert len(runs) == 3
    for run, tokens in zip(runs, alone):
        assert run.tolist() == list(range(int(run[0]), int(run[0]) + len(run)))  # one contiguous run each
        torch.testing.assert_close(embeds[run], tokens)


def _xattn_logits(model, collator, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    doc = Document(("a picture", first, "two red circles", second, "then the word cat"), STORY_TASK)
    batch = collator.train_batch([doc])
    with torch.no_grad():
        logits = model(**batch).logits[0]
    return logits, (batch["input_ids"][0] == collator.image_token_id).nonzero().flatten().tolist()


def test_cross_attention_text_sees_only_the_images_before_it(make_cfg, tokenizer):
    model = vlm(make_cfg, tokenizer, "cross_attention")
    collator = collator_for(tokenizer, model.sequence_tokens)
    base, (one, two) = _xattn_logits(model, collator, random_image(1), random_image(2))
    new_first, _ = _xattn_logits(model, collator, random_image(3), random_image(2))
    new_second, _ = _xattn_logits(model, collator, random_image(1), random_image(4))
    # Before the first image: no image changes it, and it is exactly the text-only LM's output (no NaN).
    torch.testing.assert_close(new_first[:one], base[:one])
    torch.testing.assert_close(new_second[:one], base[:one])
    batch = collator.train_batch([Document(("a picture",), STORY_TASK)])
    with torch.no_grad():
        plain = model.lm.model(input_ids=batch["input_ids"][:, :one]).logits[0]
    torch.testing.assert_close(base[:one], plain)
    # From image 1 on, image 1 matters; before image 2, image 2 does not; from image 2 on, it does.
    assert not torch.allclose(new_first[one:two], base[one:two])
    torch.testing.assert_close(new_second[:two], base[:two])
    assert not torch.allclose(new_second[two:], base[two:])


def test_cross_attention_leaves_text_only_documents_as_the_lm_computes_them(make_cfg, tokenizer):
    model = vlm(make_cfg, tokenizer, "cross_attention")
    collator = collator_for(tokenizer, model.sequence_tokens)
    docs = [Document(("a picture", "then the word cat"), STORY_TASK),
            Document(("two red circles", random_image(1), "cat"), STORY_TASK)]
    batch = collator.train_batch(docs)
    with torch.no_grad():
        fused = model(**batch).logits[0]
        plain = model.lm.model(input_ids=batch["input_ids"][:1], attention_mask=batch["attention_mask"][:1]).logits[0]
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused, plain)


def test_cross_attention_counts_every_view_of_a_split_image_as_that_image(make_cfg, tokenizer):
    model = vlm(make_cfg, tokenizer, "cross_attention")
    collator = collator_for(tokenizer, model.sequence_tokens, ImageSplitting(grid=2, train=True))
    batch = collator.train_batch([Document(("a picture", random_image(1), "cat", random_image(2)), STORY_TASK)])
    assert batch["views_per_image"] == [[5, 5]]  # 2x2 crops and the whole image, each
    layout = model.image_layout(batch["input_ids"], batch["pixel_values"], batch["views_per_image"])
    assert layout.image_tokens == [[5 * 16, 5 * 16]]
    assert torch.isfinite(model(**batch).loss)


def test_cross_attention_k_shot_prompts_see_each_shots_image_from_its_place_on(make_cfg, tokenizer):
    """In a 2-shot prompt, the first shot's text does not change with the later images."""
    model = vlm(make_cfg, tokenizer, "cross_attention")
    collator = collator_for(tokenizer, model.sequence_tokens)
    shots = tuple(Example(random_image(s), "text", "what word is written?", "cat") for s in (1, 2))

    def logits(query: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        batch = collator.generation_batch([Example(query, "text", "what word is written?", "cat", context=shots)])
        assert batch["views_per_image"] == [[1, 1, 1]]
        with torch.no_grad():
            return model(**batch).logits[0], (batch["input_ids"][0] == collator.image_token_id).nonzero().flatten()

    a, places = logits(random_image(3))
    b, _ = logits(random_image(4))
    torch.testing.assert_close(a[: places[-1]], b[: places[-1]])
    assert not torch.allclose(a[places[-1]:], b[places[-1]:])


def test_cross_attention_generation_with_the_cache_matches_full_forwards(make_cfg, tokenizer):
    """Cached decoding steps see every image of the prompt, as the same tokens do in one full forward."""
    model = vlm(make_cfg, tokenizer, "cross_attention")
    collator = collator_for(tokenizer, model.sequence_tokens)
    shot = Example(random_image(1), "text", "what word is written?", "cat")
    prompts = [Example(random_image(2), "text", "what word is written?", "cat", context=(shot,)),
               Example(random_image(3), "text", "what word is written?", "cat")]
    batch = collator.generation_batch(prompts)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    cached = model.generate(**batch, max_new_tokens=4, eos_token_id=eos, pad_token_id=pad)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for _ in range(cached.shape[1]):  # greedy, one full forward a token
        with torch.no_grad():
            logits = model(ids, mask, batch["pixel_values"], views_per_image=batch["views_per_image"]).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    full = ids[:, batch["input_ids"].shape[1]:]
    for row in range(2):  # up to and including each row's first eos: generate pads after it
        stop = next((i + 1 for i, t in enumerate(cached[row].tolist()) if t == eos), cached.shape[1])
        assert cached[row, :stop].tolist() == full[row, :stop].tolist()


# --- the synthetic story task ---------------------------------------------------------------------------------

TINY = SyntheticV2Spec(seed=3, canvas=64, train_images=6, eval_images=4)
STORIES = dataclasses.replace(TINY, story_documents=5)


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> tuple[datasets.DatasetDict, datasets.DatasetDict]:
    where = tmp_path_factory.mktemp("suites")
    return load_synthetic_v2(TINY, where), load_synthetic_v2(STORIES, where)


def _rows(split: datasets.Dataset) -> list[dict]:
    return split.cast_column("image", datasets.Image(decode=False)).to_list()


def test_stories_are_opt_in_and_leave_every_other_row_as_it_was(suites):
    plain, stories = suites
    assert TINY.version == SUITE_VERSION and STORY_TASK not in TINY.train_tasks()
    assert STORIES.version != SUITE_VERSION and STORIES.train_tasks()[-1] == STORY_TASK
    assert "texts" not in plain["train"].column_names  # the default suite's schema is unchanged
    # The default digest is the one from before stories existed: the field only counts when it is set.
    assert dataclasses.replace(TINY, story_documents=0).digest() == TINY.digest() != STORIES.digest()
    for split in ("train", "validation", "test"):
        before = _rows(plain[split])
        after = _rows(stories[split].select_columns(plain[split].column_names))
        assert after[: len(before)] == before
    assert stories["validation"].column_names == plain["validation"].column_names  # only train has stories
    added = _rows(stories["train"])[len(plain["train"]):]
    assert [r["task"] for r in added] == [STORY_TASK] * 5
    for row in added:
        shown = [i for i in row["images"] if i is not None]
        assert 1 <= len(shown) <= 3 and row["image"] is None
        assert all((i is None) != (t is None) for i, t in zip(row["images"], row["texts"], strict=True))


def test_stories_are_deterministic_and_decode_into_documents(suites, tmp_path):
    _, stories = suites
    again = load_synthetic_v2(STORIES, tmp_path)  # generated afresh in another cache
    assert _rows(again["train"]) == _rows(stories["train"])
    samples = split_examples(stories["train"], SquareResize(size=SIZE))
    documents = [s for s in samples if isinstance(s, Document)]
    assert len(documents) == 5 and all(d.task == STORY_TASK for d in documents)
    # Each image decoded as an example's is: cached square, at most the crops' resolution.
    assert all(1 <= len(d.images) <= 3 and d.images[0].shape == (3, 2 * SIZE, 2 * SIZE) for d in documents)
    assert all(len(d.texts) >= 1 for d in documents)


def test_the_cost_of_a_document_counts_all_its_images(make_cfg, tokenizer):
    model = vlm(make_cfg, tokenizer, "autoregressive")
    collator = collator_for(tokenizer, model.sequence_tokens)
    docs = [Document(("a picture",), STORY_TASK), Document((image(0), "cat", image(1)), STORY_TASK)]
    cost = training_sample_cost(model, collator, collator.images, docs, [1.0, 1.0], batch_size=2)
    assert cost.visual_tokens == (0 + 2 * 16) / 2
    assert cost.text_tokens == sum(collator.text_tokens(d, training=True) for d in docs) / 2
    assert 0 < cost.flops
    assert mean_image_tokens(model.visual_tokens, collator.images, docs, training=True) == 16


# --- end to end -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["autoregressive", "cross_attention"])
def test_a_run_trains_on_stories_and_evaluates(checkout, cache_dir, fusion):
    from vlmlab.cli import main

    only_stories = [f"data.mixture.{task}=0" for task in ("caption", "ocr", "count", "wide", "vqa")]
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", f"model/fusion={fusion}",
                 "data.suite.train_images=8", "data.suite.eval_images=4", "+data.suite.story_documents=8",
                 "+data.mixture.story=1.0", *only_stories, "trainer.max_steps=2", "data.batch_size=2",
                 "eval.limit_per_task=1", "eval.max_new_tokens=2"]) == 0
    record = json.loads(next((checkout / "results" / "runs").rglob("*.json")).read_text())
    assert record["status"] == "done", record.get("error")
    assert record["provenance"]["dataset_version"] == STORIES.version
    assert record["cost"]["train_steps"] == 2 and {"synth_count", "synth_caption"} <= set(record["metrics"])


def test_a_conversation_trains_on_its_answers_and_reads_its_prompts_through_the_template(tokenizer):
    collator = collator_for(tokenizer, lambda shapes: 4 * len(shapes))
    talk = Document((image(0), "what word is written?", "cat", "what word is written?", "a picture"), "talk",
                    prompts=frozenset({1, 3}))
    batch = collator.train_batch([talk])
    img, bos, eos = collator.image_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    prompt = words(tokenizer, TEMPLATE.format(prompt="what word is written?"))
    answers = [words(tokenizer, "cat"), words(tokenizer, "a picture")]
    expected = [bos, *[img] * 4, *prompt, *answers[0], *prompt, *answers[1], eos]
    assert batch["input_ids"][0].tolist() == expected
    assert batch["labels"][0][batch["labels"][0] != IGNORE_INDEX].tolist() == [*answers[0], *answers[1], eos]
    assert collator.answer_tokens(talk) == len(answers[0]) + len(answers[1]) + 1
    assert collator.text_tokens(talk, training=True) == len(expected) - 4  # all but the placeholders
    with pytest.raises(ValueError, match="not all text segments"):
        Document((image(0), "q"), "talk", prompts=frozenset({0}))
