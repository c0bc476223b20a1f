"""Peak memory of a stretch of work (one run's training), measured the way the device allows; the
TrainingLedger starts a probe when a fit starts and reads it into every checkpoint.

On CUDA: the allocator's peak of memory held by tensors since the start (`cuda_allocated`), weights and
optimizer state included, reset at the start. On the CPU there is no allocator peak to reset, so a background
thread samples the process's resident set size from /proc/self/statm every 20 ms and the probe reports the
peak minus the RSS at its start (`cpu_rss_delta`): what training added on top of what the process already held.
It is an indicator, not an exact figure: the allocator may keep freed memory, so a second run in the same
process can show less, and a spike shorter than the sampling interval can be missed. Reading one small file
50 times a second costs nothing measurable next to a training step.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path

import torch

MB = 2**20
_STATM = Path("/proc/self/statm")


class MemoryProbe(ABC):
    """One way of measuring a peak: started, read at any time (`peak`), stopped (`stop`)."""

    kind: str | None = None

    @abstractmethod
    def start(self) -> None:
        """Begin measuring."""

    @abstractmethod
    def peak(self) -> float | None:
        """The peak in MB so far, without stopping."""

    def stop(self) -> float | None:
        """Stop measuring; the peak in MB."""
        return self.peak()


class _CudaAllocated(MemoryProbe):
    """The CUDA caching allocator's peak of allocated memory."""

    kind = "cuda_allocated"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        # torch's memory-stat calls refuse a device before CUDA is initialised in the process ("Invalid device
        # argument" for torch.device("cuda", 0)): initialise it, and name the device by its index.
        torch.cuda.init()
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / MB


def _rss_bytes() -> int:
    """The process's resident set size (second field of /proc/self/statm, in pages)."""
    return int(_STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _RssDelta(MemoryProbe):
    """Peak RSS over the block, sampled by a daemon thread, minus the RSS at entry."""

    kind = "cpu_rss_delta"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._done = threading.Event()
        self._base = self._peak = 0
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(self.interval_s):
            self._peak = max(self._peak, _rss_bytes())

    def start(self) -> None:
        self._base = self._peak = _rss_bytes()
        self._thread.start()

    def peak(self) -> float | None:
        self._peak = max(self._peak, _rss_bytes())  # what is held now counts too
        return (self._peak - self._base) / MB

    def stop(self) -> float | None:
        self._done.set()
        self._thread.join()
        return self.peak()


class _Unavailable(MemoryProbe):
    """No way to measure here (a CPU without /proc): the peak is unknown."""

    def start(self) -> None:
        pass

    def peak(self) -> float | None:
        return None


def memory_probe(device: torch.device | str = "cpu", interval_s: float = 0.02) -> MemoryProbe:
    """A probe of the peak memory on `device`, not yet started."""
    device = torch.device(device)
    if device.type == "cuda":
        return _CudaAllocated(device)
    return _RssDelta(interval_s) if _STATM.exists() else _Unavailable()
