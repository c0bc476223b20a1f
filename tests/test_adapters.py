"""Dataset adapters, tested on small parquet fixtures written in each hub dataset's own columns and feature types."""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path

import datasets
import pytest
from datasets import Dataset, Features, Image, IterableDataset, List, Sequence, Value
from PIL import Image as PILImage

from vlmlab.data.adapters import DatasetFormatError, Sample, adapter, cauldron, known, load_samples, to_samples

VQA_ANSWER = {"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}
# Column types as the hub datasets declare them (datasets 5 spells a list feature `List(...)`).
FEATURES = {
    "vqav2": Features({
        "question_type": Value("string"), "multiple_choice_answer": Value("string"), "answers": List(VQA_ANSWER),
        "image_id": Value("int64"), "answer_type": Value("string"), "question_id": Value("int64"),
        "question": Value("string"), "image": Image(),
    }),
    "okvqa": Features({
        "image": Image(), "question_type": Value("string"), "confidence": Value("int32"),
        "answers": List({"answer": Value("string"), "raw_answer": Value("string"),
                         "answer_confidence": Value("string"), "answer_id": Value("int64")}),
        "question_id": Value("int64"), "question": Value("string"),
    }),
    "textvqa": Features({
        "image_id": Value("string"), "question_id": Value("int32"), "question": Value("string"), "image": Image(),
        "answers": List(Value("string")), "ocr_tokens": List(Value("string")),
    }),
    "coco_captions": Features({
        "image": Image(), "cocoid": Value("int32"), "filename": Value("string"),
        "sentences": {"raw": List(Value("string"))},
    }),
    "docvqa": Features({
        "questionId": Value("string"), "question": Value("string"), "image": Image(), "docId": Value("int32"),
        "answers": List(Value("string")),
    }),
    "the_cauldron/vqav2": Features({
        "images": List(Image()),
        "texts": List({"user": Value("string"), "assistant": Value("string"), "source": Value("string")}),
    }),
}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub, and datasets' cache (locks included, even when streaming) under tmp_path rather than ~/.cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def png(width: int = 12, height: int = 8, colour: str = "red") -> dict:
    """An image cell as the hub stores it: encoded bytes plus the original file name."""
    buffer = io.BytesIO()
    PILImage.new("RGBA", (width, height), colour).save(buffer, "PNG")  # RGBA: the adapter must hand back RGB
    return {"bytes": buffer.getvalue(), "path": "x.png"}


GARBAGE = {"bytes": b"not an image at all", "path": "broken.jpg"}


def vqa_answers(*words: str, n: int = 10) -> list[dict]:
    """n VQAv2-style answer structs cycling through `words`."""
    return [{"answer": words[i % len(words)], "answer_confidence": "yes", "answer_id": i + 1} for i in range(n)]


def row(name: str, i: int, image: dict | list | None = None, n: int = 10) -> dict:
    """Fixture row `i` of dataset `name`, in the hub's own columns."""
    image = png(12 + i, 8) if image is None else image
    if name == "vqav2":
        return {"question_type": "what", "multiple_choice_answer": "cat", "answers": vqa_answers("cat", "dog", n=n),
                "image_id": 7, "answer_type": "other", "question_id": 1000 + i, "question": f"what is {i}?",
                "image": image}
    if name == "okvqa":
        answers = [dict(a, raw_answer=a["answer"]) for a in vqa_answers("tiger", n=n)]
        return {"image": image, "question_type": "one", "confidence": 3, "answers": answers,
                "question_id": 2000 + i, "question": f"which animal {i}?"}
    if name == "textvqa":
        return {"image_id": "abc", "question_id": 30 + i, "question": f"what is written {i}?", "image": image,
                "answers": ["stop"] * (n - 1) + ["halt"], "ocr_tokens": ["stop"]}
    if name == "coco_captions":
        return {"image": image, "cocoid": 400 + i, "filename": "c.jpg",
                "sentences": {"raw": [f"a red square {i}", "a small red block"]}}
    if name == "docvqa":
        return {"questionId": f"q{i}", "question": f"what is the date {i}?", "image": image, "docId": 5,
                "answers": ["1 May 1999", "May 1, 1999"]}
    if name == "the_cauldron/vqav2":
        return {"images": [image] if isinstance(image, dict) else image,
                "texts": [{"user": f"Q{i}a?", "assistant": f"A{i}a.", "source": "VQAv2"},
                          {"user": f"Q{i}b?", "assistant": f"A{i}b.", "source": "VQAv2"}]}
    raise KeyError(name)


def write(path: Path, name: str, rows: list[dict], features: Features | None = None) -> str:
    """Save `rows` as a parquet file with the hub dataset's features; returns the path."""
    features = features or FEATURES[name]
    columns = {column: [r[column] for r in rows] for column in features}
    Dataset.from_dict(columns, features=features).to_parquet(path)
    return str(path)


def load(tmp_path: Path, name: str, rows: list[dict], **kwargs) -> list[Sample]:
    """Write `rows` as the validation split and read them back through load_samples."""
    path = write(tmp_path / "validation.parquet", name, rows)
    samples = load_samples(name, "validation", data_files={"validation": path}, **kwargs)
    return list(samples)


EXPECTED = {  # name -> (prompt of row 0, answers of row 0, id of row 0)
    "vqav2": ("what is 0?", ["cat", "dog"] * 5, "1000"),
    "okvqa": ("which animal 0?", ["tiger"] * 10, "2000"),
    "textvqa": ("what is written 0?", ["stop"] * 9 + ["halt"], "30"),
    "coco_captions": ("Describe the image.", ["a red square 0", "a small red block"], "400"),
    "docvqa": ("what is the date 0?", ["1 May 1999", "May 1, 1999"], "q0"),
    "the_cauldron/vqav2": ("Q0a?", ["A0a."], "0:0"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_adapter_reads_its_hub_format(tmp_path, name):
    samples = load(tmp_path, name, [row(name, 0), row(name, 1)])
    prompt, answers, sample_id = EXPECTED[name]
    first = samples[0]
    assert (first.prompt, first.answers, first.sample_id, first.task) == (prompt, answers, sample_id, name)
    assert first.image.mode == "RGB" and first.image.size == (12, 8)
    assert samples[-1].image.size == (13, 8)
    assert len(samples) == (4 if name.startswith("the_cauldron/") else 2)
    assert adapter(name).metric == {"vqav2": "vqa_accuracy", "okvqa": "vqa_accuracy", "textvqa": "vqa_accuracy",
                                    "coco_captions": "cider", "docvqa": "anls"}.get(name, "exact_match")


def test_cauldron_yields_one_sample_per_turn(tmp_path):
    samples = load(tmp_path, "the_cauldron/vqav2", [row("the_cauldron/vqav2", 0), row("the_cauldron/vqav2", 1)])
    assert [(s.prompt, s.answers, s.sample_id) for s in samples] == [
        ("Q0a?", ["A0a."], "0:0"), ("Q0b?", ["A0b."], "0:1"), ("Q1a?", ["A1a."], "1:0"), ("Q1b?", ["A1b."], "1:1"),
    ]
    spec = cauldron("ocrvqa")
    assert (spec.hub_id, spec.config, spec.name) == ("HuggingFaceM4/the_cauldron", "ocrvqa", "the_cauldron/ocrvqa")


def test_cauldron_row_without_images_is_skipped(tmp_path):
    skipped = Counter()
    rows = [row("the_cauldron/vqav2", 0, image=[]), row("the_cauldron/vqav2", 1)]
    samples = load(tmp_path, "the_cauldron/vqav2", rows, skipped=skipped)
    assert [s.sample_id for s in samples] == ["1:0", "1:1"] and skipped == Counter(no_image=1)


def test_limit_counts_samples(tmp_path):
    rows = [row("vqav2", i) for i in range(5)]
    samples = load(tmp_path, "vqav2", rows, limit=3, cache_dir=str(tmp_path / "cache"))
    assert [s.sample_id for s in samples] == ["1000", "1001", "1002"] and (tmp_path / "cache").is_dir()
    assert load(tmp_path, "vqav2", rows, limit=0) == []


def test_streaming_reads_the_same_samples(tmp_path):
    rows = [row("textvqa", i) for i in range(3)]
    path = write(tmp_path / "v.parquet", "textvqa", rows)
    streamed = list(load_samples("textvqa", "validation", data_files=path, streaming=True, limit=2))
    assert [(s.sample_id, s.image.size) for s in streamed] == [("30", (12, 8)), ("31", (13, 8))]


def test_missing_column_is_named_before_any_row_is_read(tmp_path):
    features = Features({k: v for k, v in FEATURES["vqav2"].items() if k != "question"})
    path = write(tmp_path / "v.parquet", "vqav2", [row("vqav2", 0)], features=features)
    with pytest.raises(DatasetFormatError, match=r"vqav2 split 'validation': missing column\(s\) question\b"):
        load_samples("vqav2", "validation", data_files={"validation": path})


def test_empty_split_is_an_error(tmp_path):
    path = write(tmp_path / "v.parquet", "docvqa", [])
    with pytest.raises(DatasetFormatError, match=r"docvqa split 'validation': the split is empty"):
        load_samples("docvqa", "validation", data_files={"validation": path})
    with pytest.raises(DatasetFormatError, match="the split is empty"):
        list(load_samples("docvqa", "validation", data_files=path, streaming=True))


def test_undecodable_image_is_skipped_counted_and_logged(tmp_path, caplog):
    skipped = Counter()
    rows = [row("okvqa", 0), row("okvqa", 1, image=GARBAGE), row("okvqa", 2)]
    with caplog.at_level(logging.WARNING, logger="vlmlab.data.adapters"):
        samples = load(tmp_path, "okvqa", rows, skipped=skipped)
    assert [s.sample_id for s in samples] == ["2000", "2002"]
    assert skipped == Counter(undecodable_image=1)
    assert "okvqa split 'validation' row 1 skipped (undecodable_image" in caplog.text


def test_vqa_row_with_nine_answers_is_skipped(tmp_path, caplog):
    skipped = Counter()
    with caplog.at_level(logging.WARNING, logger="vlmlab.data.adapters"):
        samples = load(tmp_path, "vqav2", [row("vqav2", 0, n=9), row("vqav2", 1)], skipped=skipped)
    assert [s.sample_id for s in samples] == ["1001"] and skipped == Counter(wrong_answer_count=1)
    assert "row 0 skipped (wrong_answer_count: expected 10 answers, got 9)" in caplog.text


def test_all_rows_bad_is_an_error(tmp_path):
    rows = [row("textvqa", 0, image=GARBAGE), row("textvqa", 1, n=9)]
    with pytest.raises(DatasetFormatError, match=r"textvqa split 'validation': all 2 rows were skipped "
                                                 r"\(undecodable_image: 1, wrong_answer_count: 1\)"):
        load(tmp_path, "textvqa", rows)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown dataset 'vqa3'; known: coco_captions, docvqa, gqa, mmbench, "
                                       r"mme_cognition, mme_perception, okvqa, pope_adversarial, pope_popular, "
                                       r"pope_random, scienceqa_img, textvqa, vqav2"):
        adapter("vqa3")
    with pytest.raises(KeyError, match="the_cauldron/ai2d"):
        load_samples("the_cauldron/nope", "train")
    assert all(adapter(name).name == name for name in known())


def test_sequence_style_answers_and_plain_rows():
    # datasets 5's Sequence({...}) stores a struct of lists, not a list of structs: both shapes must read alike.
    features = Features({"image": Image(), "question": Value("string"), "question_id": Value("int64"),
                         "answers": Sequence({"answer": Value("string")})})
    data = Dataset.from_dict({"image": [png()], "question": ["q?"], "question_id": [1],
                              "answers": [{"answer": ["yes"] * 10}]}, features=features)
    assert next(to_samples(adapter("vqav2"), data, "validation")).answers == ["yes"] * 10
    streamed = IterableDataset.from_generator(lambda: iter([{"image": png(), "question": "q?", "question_id": 2,
                                                             "answers": [{"answer": "no"}] * 10}]))
    assert next(to_samples(adapter("vqav2"), streamed, "train")).sample_id == "2"


OBELICS = Features({"images": List(Value("string")), "texts": List(Value("string")),
                    "metadata": Value("string"), "general_metadata": Value("string")})


def test_obelics_documents_keep_their_order_and_count_what_they_lose(tmp_path):
    from vlmlab.data.adapters import image_file_name, load_documents

    store = tmp_path / "store"
    store.mkdir()
    (store / image_file_name("https://x/1.png")).write_bytes(png(5, 4)["bytes"])
    (store / image_file_name("https://x/bad.png")).write_bytes(b"not an image")
    rows = [
        {"images": [None, "https://x/1.png", None], "texts": ["before", None, "after"]},
        {"images": [None, "https://x/missing.png", "https://x/bad.png", None], "texts": ["a", None, None, "b"]},
        {"images": [None, None], "texts": ["two lists", None]},           # position 1: neither text nor image
        {"images": ["https://x/1.png"], "texts": [None]},                  # no text left to learn from
    ]
    path = tmp_path / "train.parquet"
    Dataset.from_list([r | {"metadata": "[]", "general_metadata": "{}"} for r in rows], features=OBELICS).to_parquet(path)
    skipped = Counter()
    docs = list(load_documents("obelics", "train", data_files=[str(path)], image_store=str(store), skipped=skipped))
    assert [type(p).__name__ for p in docs[0].parts] == ["str", "Image", "str"] and docs[0].parts[1].size == (5, 4)
    assert docs[1].parts == ["a", "b"] and docs[1].sample_id == "1"
    assert skipped == {"image_not_fetched": 1, "undecodable_image": 1, "misaligned_document": 1, "no_text": 1}
    with pytest.raises(DatasetFormatError, match="obelics split 'train': all 1 rows were skipped"):
        path2 = tmp_path / "bad.parquet"
        Dataset.from_list([rows[2] | {"metadata": "", "general_metadata": ""}], features=OBELICS).to_parquet(path2)
        list(load_documents("obelics", "train", data_files=[str(path2)]))
