"""The suite's facts: what each coloured shape stands for, the knowledge that `synth_know` asks about.

OK-VQA's questions need what the language model knows, not only what the image shows. Here the entities are
v1's 18 (colour, shape) pairs and each stands for one arbitrary word ("the red circle stands for apple"): the
image shows the entity, only the text of `vlmlab.data.language` says what it stands for. The VLM's training
rows ask about the SEEN half; the benchmark's validation and test rows ask about the HELD_OUT half, whose facts
appear nowhere but in that language corpus, so the benchmark scores knowledge carried over from the LM.
"""

from __future__ import annotations

from vlmlab.data.grid_text import indefinite
from vlmlab.data.synthetic import COLORS, SHAPES

Entity = tuple[str, str]  # (colour, shape)
ENTITIES: tuple[Entity, ...] = tuple((color, shape) for color in COLORS for shape in SHAPES)
# Hand-written and arbitrary on purpose (nothing in an entity's look hints at its word), none of them a word
# the rest of the suite uses, so answering needs the fact and cannot borrow from another task.
_WORDS: tuple[str, ...] = (
    "apple", "river", "honey",      # red circle, square, triangle
    "candle", "window", "garden",   # green
    "pillow", "ladder", "rocket",   # blue
    "violin", "hammer", "turtle",   # yellow
    "cloud", "bread", "mirror",     # purple
    "island", "pencil", "wagon",    # orange
)  # fmt: skip
FACTS: dict[Entity, str] = dict(zip(ENTITIES, _WORDS, strict=True))
# A checkerboard over (colour, shape): each shape has 3 entities in each half and each colour 1 or 2, so no
# colour or shape alone tells a held-out entity from a seen one.
SEEN: tuple[Entity, ...] = tuple(e for e in ENTITIES if (COLORS.index(e[0]) + SHAPES.index(e[1])) % 2 == 0)
HELD_OUT: tuple[Entity, ...] = tuple(e for e in ENTITIES if e not in SEEN)
# The entities whose facts each split of the benchmark asks about.
SPLIT_ENTITIES: dict[str, tuple[Entity, ...]] = {"train": SEEN, "validation": HELD_OUT, "test": HELD_OUT}

KNOW_PROMPT = "what does this shape stand for?"  # the benchmark's question, about the shape shown
_PHRASINGS: tuple[str, ...] = (
    "the {color} {shape} stands for {fact}.",
    "{named} means {fact}.",
    "{fact} is what the {color} {shape} stands for.",
    "if you see {named}, think of {fact}.",
)


def fact_sentences(entity: Entity) -> list[str]:
    """The fact about `entity` as plain text, once in each phrasing."""
    color, shape = entity
    return [p.format(color=color, shape=shape, named=indefinite(color, shape), fact=FACTS[entity])
            for p in _PHRASINGS]


def named_question(entity: Entity) -> str:
    """The knowledge question in words alone, the entity named instead of shown."""
    return f"what does the {entity[0]} {entity[1]} stand for?"
