"""Checkpoints hold what resuming needs (trained weights and their optimizer state), and go once a run is done."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from vlmlab.cli import main

RUN = ["trainer.max_steps=4", "data.batch_size=4", "eval.limit_per_task=2", "eval.max_new_tokens=3", "logger=none",
       "model/adapt@model.adapt.lm=frozen", "model/adapt@model.adapt.vision=lora", "checkpoint_every_n_steps=2"]


@pytest.mark.slow  # past the make-test budget: in the slow tier, run by CI after `make test`
def test_a_checkpoint_holds_the_trained_weights_only_and_resumes_to_the_same_answers(checkout, cache_dir):
    assert main(["train", f"paths.cache_dir={cache_dir}", *RUN, "checkpoint.keep=true",
                 "checkpoint.export_final=true"]) == 0
    (record_path,) = (checkout / "results" / "runs" / "adhoc" / "default").glob("*.json")
    record = json.loads(record_path.read_text())
    (checkpoint,) = (checkout / "outputs" / "runs" / "adhoc").glob("*/checkpoints/last.ckpt")
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert not [key for key in state if key.startswith("model.lm.") and "lora" not in key
                and key.endswith("weight") and "embed" not in key], "no frozen LM weight"
    assert any("lora_A" in key for key in state) and any(key.startswith("model.connector.") for key in state)
    assert not [key for key in state if key.startswith("model.vision.") and "lora" not in key
                and key.endswith(".weight")], "the tower's base weights are frozen under LoRA"
    cost = record["cost"]
    assert cost["checkpoint_bytes"] == checkpoint.stat().st_size and cost["checkpoint_saves"] == 3
    assert cost["checkpoint_seconds"] > 0
    final = load_file(checkpoint.parents[1] / "final.safetensors")
    assert final and all(("lora" in key or key.startswith(("connector.", "fusion.")) or "embed" in key)
                         for key in final), sorted(final)[:5]

    # Resumed from the slim final checkpoint: the frozen weights come back from the config and the seed.
    answers = record_path.with_suffix(".predictions.jsonl").read_text()
    record_path.unlink()
    assert main(["train", f"paths.cache_dir={cache_dir}", *RUN]) == 0
    again = json.loads(record_path.read_text())
    assert record_path.with_suffix(".predictions.jsonl").read_text() == answers
    assert again["metrics"] == record["metrics"] and again["cost"]["train_steps"] == 4
    assert not list((checkout / "outputs" / "runs").rglob("*.ckpt")), "done, and checkpoint.keep is false"
