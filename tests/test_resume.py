"""Chaos tests: a run interrupted anywhere (SIGKILL, SIGTERM, SIGINT; training, validation, evaluation) and started
again ends with the record, loss log and answers of a run that never stopped.

The interrupted run is a child process running the real `vlmlab train`; it sends the signal to itself at an
exact point (a step of training, a validation, the evaluation), so each case is reproducible. The runs cross
two epoch boundaries (10 steps an epoch), checkpoint every 5 steps and validate every 5.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlmlab.cli import main

from .conftest import ROOT

STEPS, EVERY = 25, 5
RUN = [f"trainer.max_steps={STEPS}", f"checkpoint_every_n_steps={EVERY}", f"trainer.val_check_interval={EVERY}",
       "trainer.log_every_n_steps=1", "data.batch_size=4", "data.suite.train_images=8", "eval.limit_per_task=4",
       "eval.max_new_tokens=4", "logger=none", "ablation.name=chaos", "ablation.arm=tiny"]

# Runs `vlmlab train` and sends itself a signal at one exact point: argv = where, step, signal name, overrides.
CHILD = """
import os, signal, sys
import vlmlab.train.run as run
from vlmlab.train.module import VLMTrainingModule

where, step, sig = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3])

def patched(owner, name, when):
    original = getattr(owner, name)
    def wrapper(*args, **kwargs):
        if when(*args):
            os.kill(os.getpid(), sig)
        return original(*args, **kwargs)
    setattr(owner, name, wrapper)

if where == "training":  # during the forward of optimizer step `step` + 1
    patched(VLMTrainingModule, "training_step", lambda self, *a: self.global_step == step)
elif where == "validation":  # during the validation after optimizer step `step`
    patched(VLMTrainingModule, "validation_step", lambda self, *a: self.global_step == step)
elif where == "evaluation":  # during the evaluation of the trained model
    patched(run, "evaluate", lambda *a: True)
from vlmlab.cli import main
sys.exit(main(["train", *sys.argv[4:]]))
"""


def outputs(root: Path) -> dict:
    """The record, loss log and predictions of the one run under `root`/results."""
    (path,) = (root / "results" / "runs" / "chaos" / "tiny").glob("*.json")
    return {"record": json.loads(path.read_text()), "log": path.with_suffix(".metrics.csv").read_text(),
            "predictions": path.with_suffix(".predictions.jsonl").read_text(), "path": path}


def uninterrupted(root: Path, cache_dir: Path, *extra: str) -> dict:
    assert main(["train", f"paths.cache_dir={cache_dir}", f"paths.results_dir={root / 'results'}",
                 f"paths.output_dir={root / 'outputs'}", *RUN, *extra]) == 0
    return outputs(root)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir) -> dict:
    """The uninterrupted run."""
    return uninterrupted(tmp_path_factory.mktemp("reference"), cache_dir)


def interrupt(where: str, step: int, sig: str, cache_dir: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    script = root / "child.py"
    script.write_text(CHILD)
    return subprocess.run([sys.executable, str(script), where, str(step), sig, f"paths.cache_dir={cache_dir}", *RUN,
                           *extra], cwd=root, capture_output=True, text=True, timeout=300, env=_env())


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def resume(cache_dir: Path, *extra: str) -> int:
    return main(["train", f"paths.cache_dir={cache_dir}", *RUN, *extra])


def checkpoint_state(root: Path) -> dict:
    (path,) = (root / "outputs" / "runs" / "chaos").glob("*/checkpoints/last.ckpt")
    return torch.load(path, weights_only=False)


def assert_same_run(resumed: dict, reference: dict, steps: int = STEPS) -> None:
    assert resumed["log"] == reference["log"], "every loss row once, with the same values"
    assert resumed["predictions"] == reference["predictions"]
    got, want = resumed["record"], reference["record"]
    assert got["run_id"] == want["run_id"] and got["status"] == "done"
    assert got["metrics"].keys() == want["metrics"].keys()
    assert all(abs(got["metrics"][k] - want["metrics"][k]) <= 1e-6 for k in want["metrics"])
    assert got["cost"]["train_steps"] == steps and got["cost"]["train_images"] == want["cost"]["train_images"]


def test_sigkill_at_a_random_step_after_a_checkpoint(checkout, cache_dir, reference):
    step = random.Random().randrange(EVERY + 1, STEPS)  # any step: the run resumes from the checkpoint before it
    child = interrupt("training", step, "SIGKILL", cache_dir, checkout)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert checkpoint_state(checkout)["global_step"] == step // EVERY * EVERY, f"killed at step {step}"
    assert resume(cache_dir) == 0
    assert_same_run(outputs(checkout), reference)


# The signal in validation is in the slow tier, run by CI after `make test`.
@pytest.mark.parametrize("where, step, sig", [("training", 12, "SIGINT"),
                                              pytest.param("validation", 15, "SIGTERM", marks=pytest.mark.slow)])
def test_a_signal_saves_a_checkpoint_and_exits_interrupted(checkout, cache_dir, reference, where, step, sig):
    child = interrupt(where, step, sig, cache_dir, checkout)
    assert child.returncode == 128 + getattr(signal, sig), child.stderr[-2000:]
    assert "Traceback" not in child.stderr and "resume" in child.stderr
    # After the step in progress (training), or after the validation that belongs to the step (validation).
    assert checkpoint_state(checkout)["global_step"] == (step + 1 if where == "training" else step)
    assert not list((checkout / "results" / "runs").glob("*/*/*")), "an interrupted run has no record yet"
    assert resume(cache_dir) == 0
    assert_same_run(outputs(checkout), reference)


@pytest.mark.slow  # past the make-test budget: in the slow tier, run by CI after `make test`
def test_sigterm_during_evaluation_keeps_the_training_cost(checkout, cache_dir, reference):
    child = interrupt("evaluation", 0, "SIGTERM", cache_dir, checkout)
    assert child.returncode == 128 + signal.SIGTERM, child.stderr[-2000:]
    ledger = next(v for k, v in checkpoint_state(checkout)["callbacks"].items() if k.startswith("TrainingLedger"))
    assert resume(cache_dir) == 0
    resumed = outputs(checkout)
    assert_same_run(resumed, reference)
    # The cost is that of the training in the child, not of the 0-step resume from the final checkpoint.
    cost = resumed["record"]["cost"]
    assert cost["train_seconds"] == round(ledger["seconds"], 3) > 0.5
    assert cost["train_samples_per_second"] == round(cost["train_images"] / cost["train_seconds"], 2)


def test_a_finished_run_trained_again_keeps_its_cost_and_loss_log(checkout, cache_dir, reference):
    assert resume(cache_dir, "checkpoint.keep=true") == 0
    first = outputs(checkout)
    first["path"].unlink()  # a deleted (or corrupt) record: the run resumes from its kept final checkpoint
    assert resume(cache_dir) == 0
    again = outputs(checkout)
    assert again["log"] == first["log"] and again["predictions"] == first["predictions"]
    for key in ("train_seconds", "train_samples_per_second", "peak_memory_mb", "train_steps", "train_flops"):
        assert again["record"]["cost"][key] == first["record"]["cost"][key], key


@pytest.mark.slow  # past the make-test budget: in the slow tier, run by CI after `make test`
def test_sigkill_in_the_first_of_two_stages(checkout, cache_dir, tmp_path_factory):
    """The second stage injects LoRA adapters, initialised from the global random stream: a resume must leave that
    stream where an uninterrupted run has it (no loader may draw from it), or the adapters start elsewhere."""
    two = ("+schedule=two_stage", "stages.0.max_steps=10", "stages.1.max_steps=10")
    reference = uninterrupted(tmp_path_factory.mktemp("two_stage"), cache_dir, *two)
    child = interrupt("training", 7, "SIGKILL", cache_dir, checkout, *two)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert resume(cache_dir, *two) == 0
    assert_same_run(outputs(checkout), reference, steps=20)


def test_sigkill_mid_accumulation_resumes_at_the_step_boundary(checkout, cache_dir, tmp_path_factory):
    """With micro-batches, a checkpoint is only taken on the micro-batch that completes a step: one taken between
    would hold half a step's gradients and make the resumed run train a micro-batch twice."""
    micro = ("performance.micro_batch_size=2", "trainer.max_steps=15")  # two micro-batches per step of 4
    reference = uninterrupted(tmp_path_factory.mktemp("micro"), cache_dir, *micro)
    child = interrupt("training", 13, "SIGKILL", cache_dir, checkout, *micro)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    state = checkpoint_state(checkout)
    assert state["global_step"] == 10 and state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"][
        "completed"] % 2 == 0
    assert resume(cache_dir, *micro) == 0
    assert_same_run(outputs(checkout), reference, steps=15)
