"""Nothing is lost in silence: a trained run whose outputs cannot be written is reported with its path, leaves no
orphan beside a missing record, and is written by the next sweep from its final checkpoint without training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vlmlab.launch.job as job_module
import vlmlab.train.run as run_module
from vlmlab.cli import main

TOY = """
question: q
control: mlp
seeds: [0]
metrics: [synth_count, synth_vqa]
common: [trainer.max_steps=3, data.batch_size=4, eval.limit_per_task=2, eval.max_new_tokens=3, logger=none]
arms:
  mlp: [model/connector=mlp]
  broken: ["optim.optimizer.betas=[2.0,0.9]"]   # passes planning, fails when the optimizer is built
"""


@pytest.fixture
def workspace(checkout):
    (checkout / "ablations" / "toy.yaml").write_text(TOY.replace('  broken: ["optim.optimizer.betas=[2.0,0.9]"]   # passes '
                                                                 'planning, fails when the optimizer is built\n', ""))
    return checkout


def sweep(cache_dir: Path) -> int:
    return main(["sweep", "toy", f"paths.cache_dir={cache_dir}"])


def disk_full_at(monkeypatch, suffix: str) -> None:
    """Writing the run's file that ends in `suffix` fails as on a full disk."""
    write_text, write_record = job_module.atomic_write_text, job_module.write_record
    full = OSError(28, "No space left on device")

    def failing_text(path, text):
        if str(path).endswith(suffix):
            raise full
        return write_text(path, text)

    def failing_record(results, record):
        if suffix == ".json":
            raise full
        return write_record(results, record)

    monkeypatch.setattr(job_module, "atomic_write_text", failing_text)
    monkeypatch.setattr(job_module, "write_record", failing_record)


# The loss log is written by the same code as the predictions: one sibling and the record cover both paths.
@pytest.mark.parametrize("suffix", [".predictions.jsonl", ".json"])
def test_a_failed_write_is_reported_and_the_next_sweep_writes_the_run(workspace, cache_dir, monkeypatch, capfd,
                                                                      suffix):
    with monkeypatch.context() as patch:
        disk_full_at(patch, suffix)
        assert sweep(cache_dir) == 1, "the sweep's exit status says a run was not saved"
    said = "".join(capfd.readouterr())
    assert "could not write results/runs/toy/mlp/" in said and f"{suffix} (OSError: [Errno 28]" in said
    assert "a re-run writes it" in said
    arm_dir = workspace / "results" / "runs" / "toy" / "mlp"
    assert not arm_dir.exists() or not list(arm_dir.iterdir()), "no orphan file beside a missing record"
    (checkpoint,) = (workspace / "outputs" / "runs" / "toy").glob("*/checkpoints/last.ckpt")
    ledger = next(v for k, v in torch.load(checkpoint, weights_only=False)["callbacks"].items()
                  if k.startswith("TrainingLedger"))

    trained = []
    real = run_module.train_and_evaluate
    monkeypatch.setattr(run_module, "train_and_evaluate",
                        lambda cfg, *a, **k: trained.append(cfg.ablation.arm) or real(cfg, *a, **k))
    assert sweep(cache_dir) == 0
    (record_file,) = arm_dir.glob("*.json")
    record = json.loads(record_file.read_text())
    assert trained == ["mlp"] and record["status"] == "done"
    # Written from the final checkpoint: the cost is that of the training in the first sweep.
    assert record["cost"]["train_steps"] == 3 and record["cost"]["train_seconds"] == round(ledger["seconds"], 3)
    assert record_file.with_suffix(".metrics.csv").exists() and record_file.with_suffix(".predictions.jsonl").exists()


def test_records_name_no_absolute_project_or_home_paths(checkout, cache_dir):
    (checkout / "ablations" / "toy.yaml").write_text(TOY.replace("control: mlp", "control: broken").replace(
        "  mlp: [model/connector=mlp]\n", ""))
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}", f"paths.output_dir={checkout / 'outputs'}"]) == 1
    (record_file,) = (checkout / "results" / "runs" / "toy" / "broken").glob("*.json")
    text = record_file.read_text()
    record = json.loads(text)
    assert record["status"] == "failed" and "Invalid beta parameter" in record["error"]["message"]
    assert str(checkout) not in text and str(Path.home()) + "/" not in text
    assert record["config"]["paths"]["output_dir"] == "outputs", "an absolute path inside the project, made relative"
    assert 'File "vlmlab/' in record["error"]["traceback"], "the project's own files, relative to it"
