"""Peak memory: a large tensor allocated inside the block shows up, even after it is freed again."""

from __future__ import annotations

import time

import pytest
import torch

from vlmlab.train.memory import track_peak_memory

SIZE_MB = 64


def allocate() -> torch.Tensor:
    """SIZE_MB of float32, touched so that every page is resident."""
    return torch.ones(SIZE_MB * 2**20 // 4)


def test_cpu_peak_sees_a_tensor_held_at_exit():
    with track_peak_memory("cpu") as peak:
        held = allocate()
    assert peak.kind == "cpu_rss_delta"
    assert peak.mb > 0.9 * SIZE_MB
    del held


def test_cpu_peak_sees_a_tensor_freed_inside_the_block():
    with track_peak_memory("cpu", interval_s=0.005) as peak:
        spike = allocate()
        time.sleep(0.1)  # many sampling intervals
        del spike
    assert peak.mb > 0.9 * SIZE_MB


def test_an_idle_block_reports_little():
    with track_peak_memory("cpu") as peak:
        time.sleep(0.05)
    assert peak.mb is not None and peak.mb < SIZE_MB / 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_is_the_allocator_peak():
    with track_peak_memory("cuda") as peak:
        spike = torch.ones(SIZE_MB * 2**20 // 4, device="cuda")
        del spike
    assert peak.kind == "cuda_allocated" and peak.mb >= SIZE_MB
