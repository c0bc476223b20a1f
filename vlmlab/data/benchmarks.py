"""The hub datasets vlmlab reads (the papers' benchmarks and the_cauldron), one declarative spec each.

A spec says where a dataset lives on the Hugging Face hub and which of its columns make a `Sample`
(see `vlmlab.data.adapters`). Adding a dataset is one `DatasetSpec(...)` in `REGISTRY`; nothing else
is edited. How a row becomes (prompt, answers) pairs is derived from the spec's columns, so that no
per-dataset code path exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vlmlab.data.multiple_choice import Choices, Circular
from vlmlab.data.row_errors import BadRow

# The names vlmlab.eval scores a task by (its TASK_SCORERS); the data layer names them without importing eval.
METRICS = ("vqa_accuracy", "cider", "anls", "exact_match", "multiple_choice", "pope_f1", "pope_accuracy", "mme",
           "mmbench_circular", "scienceqa_accuracy", "gqa_accuracy")

# The configs of HuggingFaceM4/the_cauldron (its dataset card lists 50); it only has a "train" split.
CAULDRON_SUBSETS = (
    "ai2d", "aokvqa", "chart2text", "chartqa", "clevr", "clevr_math", "cocoqa", "datikz", "diagram_image_to_text",
    "docvqa", "dvqa", "figureqa", "finqa", "geomverse", "hateful_memes", "hitab", "iam", "iconqa", "infographic_vqa",
    "intergps", "localized_narratives", "mapqa", "mimic_cgd", "multihiertt", "nlvr2", "ocrvqa", "okvqa", "plotqa",
    "raven", "rendered_text", "robut_sqa", "robut_wikisql", "robut_wtq", "scienceqa", "screen2words", "spot_the_diff",
    "st_vqa", "tabmwp", "tallyqa", "tat_qa", "textcaps", "textvqa", "tqa", "vistext", "visual7w", "visualmrc",
    "vqarad", "vqav2", "vsr", "websight",
)
CAULDRON_PREFIX = "the_cauldron/"


@dataclass(frozen=True)
class Subset:
    """The rows of a split whose `column` holds one of `values`: POPE's sampling setting, MME's subtasks."""

    column: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))

    def holds(self, row: Mapping[str, Any]) -> bool:
        return str(row[self.column]) in self.values


@dataclass(frozen=True, kw_only=True)
class ImageTable:
    """Images kept apart from the questions, in another config of the same repository (GQA's `*_images` beside its
    `*_instructions`), of the same split: a question names its image in `key_column`, the table in `id_column`."""

    config: str
    key_column: str
    id_column: str = "id"


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Where a hub dataset lives and which of its columns make a sample's image, prompt, answers and id."""

    name: str                            # the registry name, also the Sample's `task`
    hub_id: str
    metric: str                          # one of METRICS
    image_column: str                    # an image, or a list of images (the first is taken)
    config: str | None = None            # the hub config name (the_cauldron's subset)
    revision: str | None = None          # e.g. "refs/convert/parquet" for a hub repo that is a loading script
    splits: tuple[str, ...] = ("train", "validation", "test")
    id_column: str | None = None         # None: the row index is the id
    question_column: str | None = None   # None: every sample gets the fixed `prompt` (captioning)
    prompt: str | None = None
    answer_column: str | None = None
    answer_field: str | None = None      # the struct field holding the text when answers are structs
    n_answers: int | None = None         # VQA-style: exactly this many references, else the row is skipped
    turns_column: str | None = None      # a conversation ({user, assistant} turns): one sample per turn
    instruction: str = ""                # appended to every prompt: the benchmark's request for an answer format
    subset: Subset | None = None         # only the rows it holds; the others are no samples (and not counted bad)
    choices: Choices | None = None       # multiple choice: references = [right letter, *options] (multiple_choice.py)
    group_columns: tuple[str, ...] = ()  # the columns a sample's group key is made of: MME's (subtask, image)
    image_table: ImageTable | None = None  # the images are in another table, `image_column` being its image column

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_columns", tuple(self.group_columns))
        if self.metric not in METRICS:
            raise ValueError(f"{self.name}: metric {self.metric!r} is not one of {METRICS}")
        if self.choices is not None and (self.answer_column is None or self.question_column is None):
            raise ValueError(f"{self.name}: multiple choice needs a question_column and an answer_column")
        if self.choices is not None and self.choices.circular is not None and not self.group_columns:
            # The circular rule judges a question by all its shifts: they must share a group key.
            raise ValueError(f"{self.name}: circular multiple choice needs group_columns naming the question")
        if (self.turns_column is None) == (self.answer_column is None):
            raise ValueError(f"{self.name}: give exactly one of answer_column and turns_column")
        if self.turns_column is None and (self.question_column is None) == (self.prompt is None):
            raise ValueError(f"{self.name}: give exactly one of question_column and prompt")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns a split must have for this spec to read it."""
        image = self.image_column if self.image_table is None else self.image_table.key_column
        wanted = (image, self.id_column, self.question_column, self.answer_column, self.turns_column,
                  self.subset.column if self.subset is not None else None,
                  *(self.choices.columns if self.choices is not None else ()), *self.group_columns)
        return tuple(dict.fromkeys(c for c in wanted if c is not None))

    @property
    def several_per_row(self) -> bool:
        """Whether a row may make several samples (conversation turns, circular shifts): their ids get a suffix."""
        return self.turns_column is not None or (self.choices is not None and self.choices.circular is not None)

    def wanted(self, row: Mapping[str, Any]) -> bool:
        """Whether the row is one this spec reads: in its subset, and not one of the dataset's own circular copies."""
        if self.subset is not None and not self.subset.holds(row):
            return False
        circular = self.choices.circular if self.choices is not None else None
        return circular is None or self.id_column is None or not circular.is_copy(row[self.id_column])

    def group(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        """The row's group key, shared by the samples a group metric judges together."""
        return tuple(str(row[column]) for column in self.group_columns)

    def references(self, cell: Any) -> list[str]:
        """The reference strings in one cell of the answer column; BadRow if there are none or the count is wrong."""
        answers = _strings(cell, self.answer_field)
        if self.n_answers is not None and len(answers) != self.n_answers:
            raise BadRow("wrong_answer_count", f"expected {self.n_answers} answers, got {len(answers)}")
        if not answers:
            raise BadRow("no_answers", "the answer cell is empty")  # e.g. a test split without references
        return answers

    def turns(self, row: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
        """The (prompt, answers) pairs of one row: one per conversation turn, else one."""
        if self.turns_column is None:
            prompt = self.prompt if self.question_column is None else row[self.question_column]
            if not isinstance(prompt, str):
                raise BadRow("no_question", f"question is {prompt!r}")
            if self.choices is not None:
                return self.choices.pairs(row, prompt, row[self.answer_column], self.instruction)
            return [(prompt + self.instruction, self.references(row[self.answer_column]))]
        turns = row[self.turns_column] or []
        if not turns:
            raise BadRow("no_turns", f"{self.turns_column!r} is empty")
        pairs = []
        for turn in turns:
            user, assistant = (turn or {}).get("user"), (turn or {}).get("assistant")
            if not isinstance(user, str) or not isinstance(assistant, str):
                raise BadRow("bad_turn", f"turn without user/assistant text: {turn!r}")
            pairs.append((user, [assistant]))
        return pairs


def _strings(cell: Any, field: str | None) -> list[str]:
    """Flatten an answer cell to strings, whether the hub stores a list of structs or (Sequence style) a struct of lists."""
    if cell is None:
        return []
    if isinstance(cell, Mapping):
        return _strings(cell.get(field) if field is not None else None, None)
    if isinstance(cell, (list, tuple)):
        return [text for item in cell for text in _strings(item, field)]
    return [str(cell)]


def cauldron(subset: str) -> DatasetSpec:
    """The spec of one the_cauldron subset (a hub config); KeyError for a subset it does not have."""
    if subset not in CAULDRON_SUBSETS:
        raise KeyError(f"the_cauldron has no subset {subset!r}; known: {', '.join(CAULDRON_SUBSETS)}")
    return DatasetSpec(
        name=f"{CAULDRON_PREFIX}{subset}", hub_id="HuggingFaceM4/the_cauldron", config=subset, splits=("train",),
        metric="exact_match", image_column="images", turns_column="texts",
    )


_VQA = dict(image_column="image", question_column="question", id_column="question_id", answer_column="answers",
            n_answers=10, metric="vqa_accuracy")
_YES_NO = dict(image_column="image", question_column="question", answer_column="answer")
_SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
_LETTER_ANSWER = "\nAnswer with the option's letter from the given choices directly."
POPE_SETTINGS = ("adversarial", "popular", "random")  # how the absent objects asked about were sampled
# MME's two scores, each the sum of its subtasks' scores (the official eval_tool's eval_type_dict).
MME_SUBTASKS = {
    "perception": ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
                   "OCR"),
    "cognition": ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"),
}

REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(name="vqav2", hub_id="HuggingFaceM4/VQAv2", splits=("train", "validation", "testdev", "test"),
                answer_field="answer", **_VQA),
    DatasetSpec(name="okvqa", hub_id="HuggingFaceM4/OK-VQA", splits=("train", "validation"),
                answer_field="answer", **_VQA),
    DatasetSpec(name="textvqa", hub_id="facebook/textvqa", **_VQA),
    DatasetSpec(name="coco_captions", hub_id="HuggingFaceM4/COCO", metric="cider", image_column="image",
                id_column="cocoid", prompt="Describe the image.", answer_column="sentences", answer_field="raw"),
    DatasetSpec(name="docvqa", hub_id="HuggingFaceM4/DocumentVQA", metric="anls", image_column="image",
                id_column="questionId", question_column="question", answer_column="answers"),
    # The benchmarks of MobileVLM, LLaVA-Phi and MM1.5, in lmms-lab's parquet copies, with LLaVA's evaluation prompts.
    *(DatasetSpec(name=f"pope_{setting}", hub_id="lmms-lab/POPE", splits=("test",), metric="pope_f1",
                  id_column="question_id", subset=Subset("category", (setting,)), instruction=_SHORT_ANSWER, **_YES_NO)
      for setting in POPE_SETTINGS),
    *(DatasetSpec(name=f"mme_{part}", hub_id="lmms-lab/MME", splits=("test",), metric="mme",
                  subset=Subset("category", subtasks), group_columns=("category", "question_id"), **_YES_NO)
      for part, subtasks in MME_SUBTASKS.items()),
    DatasetSpec(name="mmbench", hub_id="lmms-lab/MMBench", config="en", splits=("dev",),
                metric="mmbench_circular", image_column="image", id_column="index", question_column="question",
                answer_column="answer", group_columns=("index",), instruction=_LETTER_ANSWER,
                choices=Choices(option_columns=("A", "B", "C", "D"), hint_column="hint", circular=Circular())),
    DatasetSpec(name="scienceqa_img", hub_id="lmms-lab/ScienceQA", config="ScienceQA-IMG",
                splits=("validation", "test"), metric="scienceqa_accuracy", image_column="image",
                question_column="question", answer_column="answer", instruction=_LETTER_ANSWER,
                choices=Choices(list_column="choices", hint_column="hint", hint_format="Context: {hint}\n")),
    DatasetSpec(name="gqa", hub_id="lmms-lab/GQA", config="testdev_balanced_instructions", splits=("testdev",),
                metric="gqa_accuracy", image_column="image", id_column="id", question_column="question",
                answer_column="answer", image_table=ImageTable(config="testdev_balanced_images", key_column="imageId"),
                instruction=_SHORT_ANSWER),
)}


@dataclass(frozen=True, kw_only=True)
class DocumentSpec:
    """Where an interleaved-document dataset lives, and its two parallel columns: at each position of a document
    either an image or a text segment (OBELICS's layout: `images` and `texts` lists, `None` in the gaps).
    An image cell is encoded bytes, or a URL, which is read from an image store (the web is never fetched
    while training: OBELICS publishes URLs only, and `vlmlab prefetch` downloads them)."""

    name: str
    hub_id: str
    images_column: str = "images"
    texts_column: str = "texts"
    id_column: str | None = None
    splits: tuple[str, ...] = ("train",)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.images_column, self.texts_column, self.id_column) if c is not None)


DOCUMENTS: dict[str, DocumentSpec] = {spec.name: spec for spec in (
    DocumentSpec(name="obelics", hub_id="HuggingFaceM4/OBELICS"),
)}


@dataclass(frozen=True, kw_only=True)
class ChatSpec:
    """A text-only instruction dataset in the hub's chat layout: a list of {role, content} messages per row.
    It trains as conversations without images (the text-only part of an SFT mixture): every message but the
    assistant's is a prompt."""

    name: str
    hub_id: str
    messages_column: str = "messages"
    config: str | None = None
    splits: tuple[str, ...] = ("train",)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.messages_column,)


CHATS: dict[str, ChatSpec] = {spec.name: spec for spec in (
    ChatSpec(name="chat", hub_id="HuggingFaceTB/smoltalk", config="all"),
)}


def known() -> list[str]:
    """Every name `adapter` accepts: the benchmarks, then each the_cauldron subset."""
    return sorted(REGISTRY) + sorted(DOCUMENTS) + sorted(CHATS) + [f"{CAULDRON_PREFIX}{subset}" for subset in CAULDRON_SUBSETS]


def adapter(name: str) -> DatasetSpec | DocumentSpec | ChatSpec:
    """The spec registered under `name`; KeyError listing the known names otherwise."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in DOCUMENTS:
        return DOCUMENTS[name]
    if name in CHATS:
        return CHATS[name]
    if name.startswith(CAULDRON_PREFIX) and name[len(CAULDRON_PREFIX):] in CAULDRON_SUBSETS:
        return cauldron(name[len(CAULDRON_PREFIX):])
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(known())}")
