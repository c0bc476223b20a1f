"""Training samples read from Arrow files by the loader's workers: disjoint across ranks and workers, and memory
that does not grow with the dataset (the suite's images are never all decoded)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image

from vlmlab.data.arrow_samples import ArrowSamples
from vlmlab.data.hub_suite import FEATURES
from vlmlab.data.images import SquareResize
from vlmlab.train.datamodule import VLMDataModule


def arrow_split(path: Path, rows: int, side: int = 8) -> datasets.Dataset:
    """`rows` examples in a hub suite's columns, each with its own image, saved and memory-mapped back."""
    def png(i: int) -> dict:
        buffer = io.BytesIO()
        Image.new("RGB", (side, side), (i % 256, i // 256 % 256, 7)).save(buffer, "PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    split = datasets.Dataset.from_generator(lambda: ({
        "image": png(i), "image_id": str(i), "task": "pairs", "prompt": f"p{i}", "answer": "a", "answers": ["a"],
        "images": [], "texts": []} for i in range(rows)), features=FEATURES)
    split.save_to_disk(str(path))
    return datasets.load_from_disk(str(path))


class _WhoRead:
    """A collator that reports which worker collated which samples."""

    def train_batch(self, samples):
        info = torch.utils.data.get_worker_info()
        return [(info.id if info else None, sample.prompt, tuple(sample.pixels.shape)) for sample in samples]


def test_two_ranks_with_two_workers_each_read_disjoint_samples_whose_union_is_the_split(tmp_path):
    samples = ArrowSamples(arrow_split(tmp_path / "split", 48, side=40), SquareResize(size=16))
    seen = {}
    for rank in range(2):
        data = VLMDataModule(samples, [], _WhoRead(), batch_size=4, seed=3, num_workers=2)
        data.sampler.shard(rank, 2)
        seen[rank] = [row for batch in data.train_dataloader() for row in batch]
    prompts = {rank: [prompt for _, prompt, _ in rows] for rank, rows in seen.items()}
    assert set(prompts[0]).isdisjoint(prompts[1])
    assert sorted(prompts[0] + prompts[1]) == sorted(f"p{i}" for i in range(48))
    assert all(len(set(p)) == len(p) for p in prompts.values())
    assert {worker for rows in seen.values() for worker, _, _ in rows} == {0, 1}, "decoded in both workers"
    width, height = samples.images.target_size(40, 40)  # resized in the worker, as the processor resizes
    assert {shape for rows in seen.values() for _, _, shape in rows} == {(3, height, width)} != {(3, 40, 40)}


def test_described_samples_have_the_resized_shapes_without_pixels(tmp_path):
    samples = ArrowSamples(arrow_split(tmp_path / "split", 3, side=40), SquareResize(size=16))
    described = samples.described()
    assert [s.pixels.device.type for s in described] == ["meta"] * 3
    assert [tuple(s.pixels.shape) for s in described] == [tuple(samples[i].pixels.shape) for i in range(3)]


PEAK = """
import json, sys
import datasets
import torch
from vlmlab.data.arrow_samples import ArrowSamples, InMemorySamples
from vlmlab.data.examples import split_examples
from vlmlab.data.images import SquareResize
from vlmlab.train.datamodule import VLMDataModule
from vlmlab.train.memory import memory_probe

class Collator:
    def train_batch(self, samples):
        return len(samples)

def epoch(path, lazy):
    split, images = datasets.load_from_disk(path), SquareResize(size=96)
    probe = memory_probe(torch.device("cpu"))  # the resident set's peak growth, sampled while it runs
    probe.start()
    samples = ArrowSamples(split, images) if lazy else InMemorySamples(split_examples(split, images))
    data = VLMDataModule(samples, [], Collator(), batch_size=16, seed=0)
    assert sum(data.train_dataloader()) == len(split) // 16 * 16
    return probe.stop()

lazy = sys.argv[1] == "arrow"
print(json.dumps([epoch(path, lazy) for path in sys.argv[2:]]))
"""


def _growth_mb(how: str, *splits: Path) -> list[float]:
    """The peak growth of one epoch over each split in turn, in one fresh process."""
    out = subprocess.run([sys.executable, "-c", PEAK, how, *map(str, splits)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # four epochs in fresh processes: in the slow tier, run by CI after `make test`
def test_memory_does_not_grow_with_the_number_of_samples(tmp_path):
    """One epoch over 200, then over 2,000 samples of 96 px (27 KB each decoded): read from Arrow, the peak grows
    by under 10 MB more; decoded into memory, as a generated suite is, the larger epoch alone grows it by more
    than 40 MB (what its images take)."""
    arrow_split(tmp_path / "small", 200, side=96), arrow_split(tmp_path / "large", 2000, side=96)
    small, large = _growth_mb("arrow", tmp_path / "small", tmp_path / "large")
    assert large - small < 10, f"reading from Arrow, 10x the samples grew the peak from {small:.1f} to {large:.1f} MB"
    (memory,) = _growth_mb("memory", tmp_path / "large")
    assert memory > 40, f"the measure must see decoded images: in memory they grew it by only {memory:.1f} MB"
