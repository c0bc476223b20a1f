"""Collation: prompts with image placeholders, loss on answer tokens only, right padding to train, left to generate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from vlmlab.data.images import SquareResize
from vlmlab.data.tokenizer import IMAGE_TOKEN

IGNORE_INDEX = -100  # the label value transformers' loss skips


@dataclass
class Example:
    """One (image, question, answer) sample with its image already resized to uint8 pixels."""

    pixels: torch.Tensor
    task: str
    prompt: str
    answer: str


class VLMCollator:
    """Turns examples into model inputs: [bos] <image>*N prompt [answer eos]."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, images: SquareResize, visual_tokens: int, template: str
    ) -> None:
        self.tokenizer = tokenizer
        self.images = images
        self.visual_tokens = visual_tokens
        self.template = template
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)

    def _prompt_ids(self, example: Example) -> list[int]:
        text_ids = self.tokenizer(self.template.format(prompt=example.prompt), add_special_tokens=False).input_ids
        return [self.tokenizer.bos_token_id, *([self.image_token_id] * self.visual_tokens), *text_ids]

    def _answer_ids(self, example: Example) -> list[int]:
        # The leading space makes the answer tokenize as it would follow the prompt in running text.
        return [*self.tokenizer(" " + example.answer, add_special_tokens=False).input_ids, self.tokenizer.eos_token_id]

    def _pad(self, rows: list[list[int]], value: int, left: bool) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor([([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows])

    def train_batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Right-padded prompt+answer sequences whose labels cover the answer and eos only."""
        ids, labels = [], []
        for ex in examples:
            prompt, answer = self._prompt_ids(ex), self._answer_ids(ex)
            ids.append(prompt + answer)
            labels.append([IGNORE_INDEX] * len(prompt) + answer)
        input_ids = self._pad(ids, self.tokenizer.pad_token_id, left=False)
        return {
            "input_ids": input_ids,
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, left=False),
            "labels": self._pad(labels, IGNORE_INDEX, left=False),
            "pixel_values": self.images.normalise(torch.stack([ex.pixels for ex in examples])),
        }

    def generation_batch(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        """Left-padded prompts, so every row's continuation starts at the same position."""
        ids = [self._prompt_ids(ex) for ex in examples]
        return {
            "input_ids": self._pad(ids, self.tokenizer.pad_token_id, left=True),
            "attention_mask": self._pad([[1] * len(r) for r in ids], 0, left=True),
            "pixel_values": self.images.normalise(torch.stack([ex.pixels for ex in examples])),
        }
