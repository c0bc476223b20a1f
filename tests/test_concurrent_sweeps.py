"""Two sweeps of one ablation in two processes train each run exactly once, started together or apart."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import ROOT

TOY = """
question: Does the connector matter?
control: mlp
seeds: [0, 1]
metrics: [synth_count, synth_vqa]
common: [trainer.max_steps=12, checkpoint_every_n_steps=4, data.batch_size=4, data.suite.train_images=8,
         eval.limit_per_task=2, eval.max_new_tokens=3, logger=none]
arms:
  mlp: [model/connector=mlp]
  pixel_shuffle: [model/connector=pixel_shuffle]
"""

# A sweep that appends one line per training it starts to a shared file (O_APPEND: lines never interleave).
CHILD = """
import os, sys
import vlmlab.train.run as run

trainings, real = sys.argv[1], run.train_and_evaluate

def counting(cfg, run_dir, rid, stop=None):
    with open(trainings, "a") as out:
        out.write(f"{cfg.ablation.arm} {cfg.seed} {os.getpid()}\\n")
    return real(cfg, run_dir, rid, stop)

run.train_and_evaluate = counting
from vlmlab.cli import main
sys.exit(main(["sweep", "toy", *sys.argv[2:]]))
"""


def start_sweep(root: Path, cache_dir: Path) -> subprocess.Popen:
    # One thread each: two sweeps on two cores, neither spinning on a core the other one needs.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(root / "child.py"), str(root / "trainings.txt"),
                             f"paths.cache_dir={cache_dir}"], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def trainings(root: Path) -> list[tuple[str, str]]:
    path = root / "trainings.txt"
    return [tuple(line.split()[:2]) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def scratch(checkout):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    (checkout / "child.py").write_text(CHILD)
    return checkout


@pytest.mark.slow  # two sweeps in processes of their own, 20 s each: in the slow tier, run by CI after `make test`
@pytest.mark.parametrize("apart", [False, True], ids=["together", "apart"])
def test_two_sweeps_train_each_run_once(scratch, cache_dir, apart):
    first = start_sweep(scratch, cache_dir)
    if apart:  # the second starts while the first trains its first run
        deadline = time.monotonic() + 240
        while not trainings(scratch) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert trainings(scratch), "the first sweep never started training"
    second = start_sweep(scratch, cache_dir)
    logs = [proc.communicate(timeout=600)[0] for proc in (first, second)]
    assert {first.returncode, second.returncode} <= {0, 1}, logs
    assert 0 in (first.returncode, second.returncode), "the sweep that ends last sees every run done"

    counted = Counter(trainings(scratch))
    assert sorted(counted) == [("mlp", "0"), ("mlp", "1"), ("pixel_shuffle", "0"), ("pixel_shuffle", "1")]
    assert set(counted.values()) == {1}, f"a run was trained twice: {counted}"
    assert "being trained by host" in "".join(logs) or apart, "started together, one sweep met the other's lock"

    records = [json.loads(p.read_text()) for p in (scratch / "results" / "runs" / "toy").glob("*/*.json")]
    assert sorted(r["status"] for r in records) == ["done"] * 4
    for path in (scratch / "results" / "runs" / "toy").glob("*/*.metrics.csv"):
        rows = [(row["step"], row["train/loss"] != "") for row in csv.DictReader(io.StringIO(path.read_text()))]
        assert len(rows) == len(set(rows)), f"{path.name}: a loss row written twice"
