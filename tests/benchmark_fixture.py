"""Tiny copies of the MobileVLM / LLaVA-Phi / MM1.5 benchmarks in their hub repositories' layouts (lmms-lab's parquet
copies: paths, column names and feature types as their dataset cards declare them), written under a directory that
stands in for the hub (`HubSuite.mirror`, or `data_files` for the adapters).

Every image is a solid colour of its own width, so a test can tell which image a sample got. The rows are chosen so
that the scores of the tests' fake answers can be worked out by hand (see tests/test_benchmark_suite.py).
"""

from __future__ import annotations

import io
from pathlib import Path

from datasets import Dataset, Features, Image, List, Value
from PIL import Image as PILImage

POPE = Features({"id": Value("string"), "question_id": Value("string"), "question": Value("string"),
                 "answer": Value("string"), "image_source": Value("string"), "image": Image(),
                 "category": Value("string")})
MME = Features({"question_id": Value("string"), "image": Image(), "question": Value("string"),
                "answer": Value("string"), "category": Value("string")})
MMBENCH = Features({"index": Value("int64"), "question": Value("string"), "hint": Value("string"),
                    "answer": Value("string"), "A": Value("string"), "B": Value("string"), "C": Value("string"),
                    "D": Value("string"), "category": Value("string"), "image": Image(), "source": Value("string"),
                    "L2-category": Value("string"), "comment": Value("string"), "split": Value("string")})
SCIENCEQA = Features({"image": Image(), "question": Value("string"), "choices": List(Value("string")),
                      "answer": Value("int8"), "hint": Value("string"), "task": Value("string"),
                      "grade": Value("string"), "subject": Value("string"), "topic": Value("string"),
                      "category": Value("string"), "skill": Value("string"), "lecture": Value("string"),
                      "solution": Value("string")})
GQA_QUESTIONS = Features({
    "id": Value("string"), "imageId": Value("string"), "question": Value("string"), "answer": Value("string"),
    "fullAnswer": Value("string"), "isBalanced": Value("bool"),
    "groups": {"global": Value("string"), "local": Value("string")}, "entailed": Value("string"),
    "equivalent": Value("string"),
    "types": {"structural": Value("string"), "semantic": Value("string"), "detailed": Value("string")},
    "annotations": {"answer": Value("string"), "question": Value("string"), "fullAnswer": Value("string")},
    "semantic": List({"operation": Value("string"), "argument": Value("string"), "dependencies": List(Value("int64"))}),
    "semanticStr": Value("string"),
})
GQA_IMAGES = Features({"id": Value("string"), "image": Image()})

# Where each benchmark's files are in its repository, relative to the mirror.
FILES = {
    "pope": "lmms-lab/POPE/data/test-00000-of-00001.parquet",
    "mme": "lmms-lab/MME/data/test-00000-of-00001.parquet",
    "mmbench": "lmms-lab/MMBench/en/dev-00000-of-00001.parquet",
    "scienceqa_test": "lmms-lab/ScienceQA/ScienceQA-IMG/test-00000-of-00001.parquet",
    "scienceqa_validation": "lmms-lab/ScienceQA/ScienceQA-IMG/validation-00000-of-00001.parquet",
    "gqa_questions": "lmms-lab/GQA/testdev_balanced_instructions/testdev-00000-of-00001.parquet",
    "gqa_images": "lmms-lab/GQA/testdev_balanced_images/testdev-00000-of-00001.parquet",
}
POPE_LABELS = ("yes", "yes", "no", "no")  # each setting's four questions
GQA_ANSWERS = {"q1": "yes", "q2": "table", "q3": "left", "q4": "no"}  # q4's image is missing from the image table
GQA_IMAGE_OF = {"q1": "n1", "q2": "n1", "q3": "n2", "q4": "n9"}
GQA_WIDTHS = {"n1": 11, "n2": 12, "n3": 13}


def png(width: int, colour: str = "red") -> dict:
    """An image cell as the hub stores it: PNG bytes and a file name."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, 6), colour).save(buffer, "PNG")
    return {"bytes": buffer.getvalue(), "path": f"{width}.png"}


def pope_rows() -> list[dict]:
    return [{"id": f"{s}{i}", "question_id": f"{setting}-{i}", "question": f"Is there a thing {i} in the image?",
             "answer": label, "image_source": f"COCO_{i}", "image": png(8 + i), "category": setting}
            for s, setting in enumerate(("adversarial", "popular", "random")) for i, label in enumerate(POPE_LABELS)]


def mme_rows() -> list[dict]:
    """Two questions per image, "Yes" then "No", as MME asks them: existence (2 images) and OCR (1 image) are
    perception subtasks, code_reasoning (1 image) a cognition one."""
    images = [("existence", "1.png"), ("existence", "2.png"), ("OCR", "7.jpg"), ("code_reasoning", "0020.png")]
    return [{"question_id": f"{subtask}/{name}", "image": png(8 + k), "category": subtask,
             "question": f"Is this {subtask} {k} {answer}? Please answer yes or no.", "answer": answer}
            for k, (subtask, name) in enumerate(images) for answer in ("Yes", "No")]


def mmbench_rows() -> list[dict]:
    """Question 0 has four options (answer C) and a hint, question 1 two (answer A) and none; the last row is the
    dataset's own shifted copy of question 1 (id + 1e6), which the adapter drops since it makes the shifts."""
    common = {"category": "identity_reasoning", "source": "fixture", "L2-category": "reasoning", "comment": None,
              "split": "dev"}
    return [
        {"index": 0, "question": "What is it?", "hint": "A hint.", "answer": "C", "A": "w", "B": "x", "C": "y",
         "D": "z", "image": png(9), **common},
        {"index": 1, "question": "Which side?", "hint": None, "answer": "A", "A": "left", "B": "right", "C": None,
         "D": None, "image": png(10), **common},
        {"index": 1_000_001, "question": "Which side?", "hint": None, "answer": "B", "A": "right", "B": "left",
         "C": None, "D": None, "image": png(10), **common},
    ]


def scienceqa_rows(n: int) -> list[dict]:
    """ScienceQA-IMG rows: even rows have three options (answer 2, "bird") and a hint, odd rows two (answer 0)."""
    rows = []
    for i in range(n):
        choices, answer, hint = (["cat", "dog", "bird"], 2, "Look at the picture.") if i % 2 == 0 else \
            (["yes", "no"], 0, "")
        rows.append({"image": png(8 + i), "question": f"Question {i}?", "choices": choices, "answer": answer,
                     "hint": hint, "task": "closed choice", "grade": "grade2", "subject": "natural science",
                     "topic": "biology", "category": "animals", "skill": "identify", "lecture": "", "solution": ""})
    return rows


def gqa_question_rows() -> list[dict]:
    return [{"id": qid, "imageId": GQA_IMAGE_OF[qid], "question": f"Question {qid}?", "answer": answer,
             "fullAnswer": f"The answer is {answer}.", "isBalanced": True,
             "groups": {"global": None, "local": "10c-table"}, "entailed": "[]", "equivalent": f"['{qid}']",
             "types": {"structural": "query", "semantic": "rel", "detailed": "relS"},
             "annotations": {"answer": "{}", "question": "{}", "fullAnswer": "{}"},
             "semantic": [{"operation": "select", "argument": "table (1)", "dependencies": []}],
             "semanticStr": "select: table (1)"}
            for qid, answer in GQA_ANSWERS.items()]


def gqa_image_rows() -> list[dict]:
    return [{"id": name, "image": png(width)} for name, width in GQA_WIDTHS.items()]


def write(root: Path, name: str, features: Features, rows: list[dict]) -> str:
    """Save `rows` with the hub's features at benchmark `name`'s path under `root`; the file's path."""
    target = root / FILES[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features).to_parquet(target)
    return str(target)


def write_all(root: Path) -> dict[str, str]:
    """Every benchmark's files under `root`, laid out as the hub repositories; each file's path by name."""
    return {
        "pope": write(root, "pope", POPE, pope_rows()),
        "mme": write(root, "mme", MME, mme_rows()),
        "mmbench": write(root, "mmbench", MMBENCH, mmbench_rows()),
        "scienceqa_test": write(root, "scienceqa_test", SCIENCEQA, scienceqa_rows(2)),
        "scienceqa_validation": write(root, "scienceqa_validation", SCIENCEQA, scienceqa_rows(3)),
        "gqa_questions": write(root, "gqa_questions", GQA_QUESTIONS, gqa_question_rows()),
        "gqa_images": write(root, "gqa_images", GQA_IMAGES, gqa_image_rows()),
    }
