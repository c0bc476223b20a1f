"""The data pipeline: one per suite, cache and tokenizer in a process, its samples decoded once per processor."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate

from vlmlab.data.arrow_samples import ArrowSamples, InMemorySamples
from vlmlab.train.pipeline import DataPipeline

TINY = ["data.suite.train_images=6", "data.suite.eval_images=4"]
HUB = Path(__file__).parent / "fixtures" / "hub_data"


def test_runs_that_share_a_suite_share_its_pipeline_and_decoded_samples(make_cfg):
    pipeline = DataPipeline.of(make_cfg(*TINY))
    assert DataPipeline.of(make_cfg(*TINY, "seed=3", "model/connector=perceiver")) is pipeline
    assert DataPipeline.of(make_cfg(*TINY, "data.suite.seed=1")) is not pipeline  # another dataset
    images = instantiate(make_cfg(*TINY).data.image, _convert_="all")
    samples = pipeline.training_samples(images, "train")
    assert isinstance(samples, InMemorySamples) and pipeline.training_samples(images, "train") is samples
    assert pipeline.examples(images, "test") is pipeline.examples(images, "test")
    other = instantiate(make_cfg(*TINY, "data.image.size=32").data.image, _convert_="all")
    assert pipeline.examples(other, "test")[0].pixels.shape != samples[0].pixels.shape  # decoded per processor
    assert {ex.task for ex in pipeline.context_pool(images, {"synth_ocr"})} == {"ocr"}  # shots of synth_ocr
    assert pipeline.tokenizer is pipeline.tokenizer and "<image>" in pipeline.tokenizer.get_vocab()


def test_a_hub_suite_trains_on_samples_read_from_its_arrow_files(make_cfg, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg("data=docvqa", f"data.suite.mirror={HUB}", "data.suite.validation_per_source=4")
    pipeline = DataPipeline.of(cfg)
    images = instantiate(cfg.data.image, _convert_="all")
    train = pipeline.training_samples(images, "train")
    assert isinstance(train, ArrowSamples) and len(train) == 36
    assert len(pipeline.examples(images, "test")) == 8  # evaluation decodes its (bounded) test split
