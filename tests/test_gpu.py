"""On a CUDA device (`make test-gpu`; skipped without one): the GPU code paths, end to end, on tiny models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vlmlab.cli import main

pytestmark = pytest.mark.cuda

PROBE = """
import torch
from vlmlab.train.memory import memory_probe
assert not torch.cuda.is_initialized()
probe = memory_probe(torch.device("cuda", 0))  # the device a Lightning strategy passes, before CUDA starts
probe.start()
spike = torch.ones(64 * 2**20 // 4, device="cuda:0")
del spike
print(probe.kind, probe.stop())
"""


def test_the_memory_probe_takes_an_indexed_device_before_cuda_is_initialised():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    kind, peak = out.stdout.split()
    assert kind == "cuda_allocated" and float(peak) >= 64


TOY = """
question: Does the connector matter on a GPU?
control: mlp
seeds: [0]
metrics: [synth_count, synth_vqa]
common: [trainer=gpu, trainer.max_steps=6, data.batch_size=8, eval.limit_per_task=4, eval.max_new_tokens=3,
         logger=none, checkpoint_every_n_steps=3]
arms:
  mlp: [model/connector=mlp]
  fast: [model/connector=perceiver, trainer.precision=bf16-true, performance.fused_optimizer=true,
         performance.gradient_checkpointing=true, performance.micro_batch_size=4, data.num_workers=2,
         performance.pin_memory=true]
"""


def test_a_tiny_sweep_trains_evaluates_and_records_on_cuda(checkout, cache_dir):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}"]) == 0
    records = {p.parent.name: json.loads(p.read_text()) for p in (checkout / "results/runs/toy").glob("*/*.json")}
    assert set(records) == {"mlp", "fast"}
    for record in records.values():
        assert record["status"] == "done", record["error"]
        assert record["cost"]["peak_memory_kind"] == "cuda_allocated" and record["cost"]["peak_memory_mb"] > 0
        assert record["provenance"]["device"].startswith("cuda")
    assert records["fast"]["cost"]["accumulation"] == 2
    assert (checkout / "results" / "tables" / "toy.md").exists()


def test_compiled_layers_train(checkout, cache_dir):
    assert main(["train", f"paths.cache_dir={cache_dir}", "trainer=gpu", "trainer.max_steps=3", "data.batch_size=4",
                 "eval.limit_per_task=1", "eval.max_new_tokens=2", "logger=none", "performance.compile=true"]) == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP across GPUs needs two of them")
def test_a_two_gpu_ddp_run_writes_one_record(checkout, cache_dir):
    assert main(["train", f"paths.cache_dir={cache_dir}", "trainer=ddp", "trainer.devices=2", "trainer.max_steps=3",
                 "data.batch_size=8", "eval.limit_per_task=2", "eval.max_new_tokens=2", "logger=none"]) == 0
    assert len(list((checkout / "results" / "runs").rglob("*.json"))) == 1
