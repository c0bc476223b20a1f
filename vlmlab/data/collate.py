"""Collation: prompts with image placeholders, loss on answer tokens only, right padding to train, left to generate.

Interleaved documents train on every text token instead, each image's placeholders at its place in the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from vlmlab.data.images import ImageProcessor
from vlmlab.data.tokenizer import IMAGE_TOKEN

IGNORE_INDEX = -100  # the label value transformers' loss skips

# How many placeholders an image takes in the sequence, given the (height, width) of its views.
SequenceTokens = Callable[[list[tuple[int, int]]], int]


@dataclass
class _Sequence:
    """One training sample as the model reads it: token ids, their labels, its images' views in order."""

    ids: list[int]
    labels: list[int]
    views: list[torch.Tensor]
    views_per_image: list[int]


@dataclass
class Example:
    """One (image, question, answer) sample with its image already resized to uint8 pixels.

    `answer` is the training target; `references` are what a prediction is scored against
    (ten annotators' answers, five captions, ...), the target alone when the dataset has no others.
    """

    pixels: torch.Tensor
    task: str
    prompt: str
    answer: str
    references: tuple[str, ...] = ()
    context: tuple["Example", ...] = ()  # in-context (k-shot) examples shown, with answers, before this one
    group: tuple[str, ...] = ()  # its group key for a group metric (MME's subtask and image); never collated

    def __post_init__(self) -> None:
        if not self.references:
            self.references = (self.answer,)


@dataclass
class Document:
    """An interleaved document (a web page, as OBELICS holds them; the synthetic suite's `story` task): text
    segments and images in reading order, 0 to N images. Training places each image's placeholders at its
    position and puts the loss on every text token; a mixture weights documents by `task`, as it does examples.
    """

    parts: tuple[str | torch.Tensor, ...]  # a str is a text segment, a tensor an image's uint8 pixels [3, H, W]
    task: str
    # Positions of `parts` that are prompts: text the model reads but is not trained to write (a conversation's
    # user turns), each written with its task's prompt template, as an example's prompt is. Every other text
    # segment carries the loss; a conversation is a document whose answers alone do.
    prompts: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if any(i >= len(self.parts) or not isinstance(self.parts[i], str) for i in self.prompts):
            raise ValueError(f"a {self.task} document's prompts {sorted(self.prompts)} are not all text segments")

    @property
    def images(self) -> tuple[torch.Tensor, ...]:
        """The document's images in reading order."""
        return tuple(part for part in self.parts if isinstance(part, torch.Tensor))

    @property
    def texts(self) -> tuple[str, ...]:
        """The document's text segments in reading order."""
        return tuple(part for part in self.parts if isinstance(part, str))


Sample = Example | Document  # what training draws: a question (or caption) with its image, or a document


class VLMCollator:
    """Turns examples into model inputs: [bos] <image>*N prompt [answer eos], N from the image's views.

    Each prompt is written with its task's template (`templates[task]`, e.g. a captioning prompt), else `template`.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, images: ImageProcessor, sequence_tokens: SequenceTokens, template: str,
        templates: Mapping[str, str] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.images = images
        self.sequence_tokens = sequence_tokens
        self.template = template
        self.templates = dict(templates or {})
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self._lengths: dict[tuple[str, str, str], int] = {}  # (part, task, text): prompts and answers repeat

    def _text_ids(self, example: Example) -> list[int]:
        text = self.template_for(example.task).format(prompt=example.prompt)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def template_for(self, task: str) -> str:
        """The prompt template of `task`."""
        return self.templates.get(task, self.template)

    def turn_prefixes(self) -> set[str]:
        """The text each template puts before the prompt: where a generated answer has run into a new turn."""
        return {t.split("{prompt}")[0].strip() for t in (self.template, *self.templates.values())} - {""}

    def _placeholders(self, views: list[torch.Tensor]) -> list[int]:
        return [self.image_token_id] * self.sequence_tokens([tuple(v.shape[-2:]) for v in views])

    def _turn_ids(self, example: Example, views: list[torch.Tensor]) -> list[int]:
        return [*self._placeholders(views), *self._text_ids(example)]

    def _segment_ids(self, text: str, template: str | None = None) -> list[int]:
        """A document's text segment, tokenized as a run of words following whatever came before it; a prompt
        segment written with `template` first.

        Whitespace at a segment's ends is not kept: every segment starts a new word (a leading space, as an
        answer has) and ends one, so an image always sits between two words and a segment tokenizes the same
        wherever it is. A segment of whitespace only has no tokens.
        """
        text = text.strip()
        if template is not None:
            text = template.format(prompt=text).strip()
        return self.tokenizer(" " + text, add_special_tokens=False).input_ids if text else []

    def _segments(self, document: "Document") -> list[tuple[int, bool]]:
        """Each text segment's token count and whether it carries the loss, in order."""
        prompts = document.prompts
        return [(self._segment_length(part, document.task if i in prompts else None), i not in prompts)
                for i, part in enumerate(document.parts) if isinstance(part, str)]

    def text_tokens(self, example: Sample, training: bool) -> int:
        """Tokens of the sample's sequence besides image placeholders: bos, prompts, answers (or texts), eos.

        Training sequences are [bos] prompt answer eos, or a document's [bos] texts eos; generation prompts are
        [bos], each in-context shot's prompt and answer, then the query's prompt (its answer is generated).
        """
        if isinstance(example, Document):
            return 2 + sum(length for length, _ in self._segments(example))  # bos, every segment, eos
        if training:
            return 1 + self._length(example, "prompt") + self._length(example, "answer")
        shots = sum(self._length(shot, "prompt") + self._length(shot, "answer") for shot in example.context)
        return 1 + shots + self._length(example, "prompt")

    def _length(self, example: Example, part: str) -> int:
        """Tokens of the example's templated prompt, or of its answer with eos, counted once per distinct text."""
        key = (part, example.task, getattr(example, part))  # the prompt's template depends on the task
        if key not in self._lengths:
            ids = self._text_ids(example) if part == "prompt" else self._answer_ids(example)
            self._lengths[key] = len(ids)
        return self._lengths[key]

    def _segment_length(self, text: str, prompt_of: str | None = None) -> int:
        """Tokens of a document's text segment (a prompt of task `prompt_of`), counted once per distinct text."""
        key = ("prompt segment" if prompt_of is not None else "segment", prompt_of or "", text)
        if key not in self._lengths:
            template = self.template_for(prompt_of) if prompt_of is not None else None
            self._lengths[key] = len(self._segment_ids(text, template))
        return self._lengths[key]

    def _prompt_ids(self, example: Example, views: list[torch.Tensor]) -> list[int]:
        return [self.tokenizer.bos_token_id, *self._turn_ids(example, views)]

    def _answer_ids(self, example: Example) -> list[int]:
        # The leading space makes the answer tokenize as it would follow the prompt in running text.
        return [*self.tokenizer(" " + example.answer, add_special_tokens=False).input_ids, self.tokenizer.eos_token_id]

    @staticmethod
    def _pad(rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows])

    @staticmethod
    def _pixels(views: list[list[torch.Tensor]]) -> list[list[torch.Tensor]] | torch.Tensor:
        """One [B, 3, H, W] tensor when every sample has one view of one shape (the common case), else the lists."""
        shapes = {tuple(v.shape) for sample in views for v in sample}
        if len(shapes) == 1 and all(len(sample) == 1 for sample in views):
            return torch.stack([sample[0] for sample in views])
        return views

    def answer_tokens(self, example: Sample) -> int:
        """How many tokens of `example` carry the training loss (an answer and eos; a document's texts and eos)."""
        if isinstance(example, Document):
            return sum(length for length, trained in self._segments(example) if trained) + 1
        return self._length(example, "answer")

    def _example_sequence(self, example: Example) -> _Sequence:
        """[bos] <image>*N prompt answer eos, the loss on the answer and eos."""
        views = self.images.views(example.pixels, training=True)
        prompt, answer = self._prompt_ids(example, views), self._answer_ids(example)
        return _Sequence(prompt + answer, [IGNORE_INDEX] * len(prompt) + answer, views, [len(views)])

    def _document_sequence(self, document: Document) -> _Sequence:
        """[bos], each text segment's tokens and each image's placeholders in reading order, eos; the loss on
        every text token but the prompts', and on eos."""
        seq = _Sequence([self.tokenizer.bos_token_id], [IGNORE_INDEX], [], [])
        for index, part in enumerate(document.parts):
            if isinstance(part, str):
                prompt = index in document.prompts
                text = self._segment_ids(part, self.template_for(document.task) if prompt else None)
                seq.ids += text
                seq.labels += [IGNORE_INDEX] * len(text) if prompt else text
                continue
            views = self.images.views(part, training=True)
            placeholders = self._placeholders(views)
            seq.ids += placeholders
            seq.labels += [IGNORE_INDEX] * len(placeholders)
            seq.views += views
            seq.views_per_image.append(len(views))
        seq.ids.append(self.tokenizer.eos_token_id)
        seq.labels.append(self.tokenizer.eos_token_id)
        return seq

    def train_batch(self, examples: list[Sample]) -> dict:
        """Right-padded sequences: an example's prompt+answer with labels on the answer and eos, a document's
        texts and images with labels on its texts and eos."""
        sequences = [self._document_sequence(ex) if isinstance(ex, Document) else self._example_sequence(ex)
                     for ex in examples]
        ids = [seq.ids for seq in sequences]
        return {
            "input_ids": self._pad(ids, self.tokenizer.pad_token_id, left=False),
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, left=False),
            "labels": self._pad([seq.labels for seq in sequences], IGNORE_INDEX, left=False),
            "pixel_values": self._pixels([seq.views for seq in sequences]),
            "views_per_image": [seq.views_per_image for seq in sequences],
        }

    def _few_shot(self, example: Example) -> _Sequence:
        """[bos] then, per in-context example, its image, question and answer; then the query's image and question."""
        seq = _Sequence([self.tokenizer.bos_token_id], [], [], [])  # no labels: nothing trains on a prompt
        for shot in (*example.context, example):
            shot_views = self.images.views(shot.pixels, training=False)
            seq.ids += self._turn_ids(shot, shot_views)
            if shot is not example:  # each shot ends as every training sequence does: answer, then eos
                seq.ids += self._answer_ids(shot)
            seq.views += shot_views  # one image's views after another, in the order of their placeholders
            seq.views_per_image.append(len(shot_views))
        return seq

    def generation_batch(self, examples: list[Example]) -> dict:
        """Left-padded prompts (k-shot when examples carry context), so continuations start at one position."""
        prompts = [self._few_shot(ex) for ex in examples]
        ids = [p.ids for p in prompts]
        return {
            "input_ids": self._pad(ids, self.tokenizer.pad_token_id, left=True),
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, left=True),
            "pixel_values": self._pixels([p.views for p in prompts]),
            "views_per_image": [p.views_per_image for p in prompts],
        }
