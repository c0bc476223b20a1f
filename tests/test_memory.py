"""Peak memory: a large tensor allocated while a probe runs shows up, even after it is freed again."""

from __future__ import annotations

import mmap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from vlmlab.train.memory import memory_probe

SIZE_MB = 64


@dataclass
class Measured:
    kind: str | None
    mb: float | None = None


@contextmanager
def track_peak_memory(device: str, interval_s: float = 0.02) -> Iterator[Measured]:
    """The probe as the ledger runs it: started, then stopped; its peak read at the stop."""
    probe = memory_probe(device, interval_s)
    measured = Measured(probe.kind)
    probe.start()
    try:
        yield measured
    finally:
        measured.mb = probe.stop()


def allocate() -> torch.Tensor:
    """SIZE_MB of float32 on pages new to the process, touched so that every page is resident.

    Backed by an anonymous mmap of its own: a tensor from the allocator may reuse pages that an earlier test
    freed and the allocator kept resident, and then the process's memory rightly does not grow."""
    pages = mmap.mmap(-1, SIZE_MB * 2**20)
    return torch.frombuffer(pages, dtype=torch.float32).fill_(1.0)


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


def test_the_peak_is_read_while_the_probe_runs():
    """What the ledger does at each checkpoint."""
    probe = memory_probe("cpu", interval_s=0.005)
    probe.start()
    held = allocate()
    assert probe.peak() > 0.9 * SIZE_MB
    assert probe.stop() > 0.9 * SIZE_MB
    del held


def test_an_idle_block_reports_little():
    with track_peak_memory("cpu") as peak:
        time.sleep(0.05)
    assert peak.mb is not None and peak.mb < SIZE_MB / 4
