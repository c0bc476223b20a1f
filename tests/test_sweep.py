"""The sweep end to end through the `vlmlab` command: records, table, skipping done runs, failures, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import vlmlab.train.run as run_module
from vlmlab.cli import main

TOY = """
question: Does the connector matter?
paper_table: Table 11
control: mlp
seeds: [0, 1]
metrics: [synth_count, synth_vqa]
common: [trainer.max_steps=3, data.batch_size=4, eval.limit_per_task=2, eval.max_new_tokens=3, logger=none]
arms:
  mlp: [model/connector=mlp]
  pixel_shuffle: [model/connector=pixel_shuffle]
  broken: ["optim.optimizer.betas=[2.0,0.9]"]   # passes planning, fails when the optimizer is built
"""

# TOY with its control arm alone.
ONLY_MLP = TOY.replace("  pixel_shuffle: [model/connector=pixel_shuffle]\n", "").replace(
    '  broken: ["optim.optimizer.betas=[2.0,0.9]"]   # passes planning, fails when the optimizer is built\n', "")


@pytest.fixture
def workspace(checkout, cache_dir):
    """A scratch checkout: its own ablations/ and results/, the session's dataset cache."""
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    return checkout


@pytest.fixture
def counted_training(monkeypatch):
    """Counts the runs that really train, still running the real training."""
    calls = []
    real = run_module.train_and_evaluate

    def counting(cfg, run_dir, rid, stop=None):
        calls.append((cfg.ablation.arm, cfg.seed))
        return real(cfg, run_dir, rid, stop=stop)

    monkeypatch.setattr(run_module, "train_and_evaluate", counting)
    return calls


def sweep(cache_dir: Path, *extra: str) -> int:
    return main(["sweep", "toy", f"paths.cache_dir={cache_dir}", *extra])


def records(root: Path) -> dict[tuple[str, int], dict]:
    found = {}
    for path in (root / "results" / "runs" / "toy").glob("*/*.json"):
        record = json.loads(path.read_text())
        found[(record["ablation"]["arm"], record["seed"])] = record | {"_path": path}
    return found


def test_sweep_trains_records_tabulates_then_skips_done_runs(workspace, cache_dir, counted_training, capsys):
    assert sweep(cache_dir) == 1, "a failed arm makes the sweep's exit status non-zero"
    assert len(counted_training) == 6
    found = records(workspace)
    assert {k: r["status"] for k, r in found.items()} == {
        ("mlp", 0): "done", ("mlp", 1): "done", ("pixel_shuffle", 0): "done", ("pixel_shuffle", 1): "done",
        ("broken", 0): "failed", ("broken", 1): "failed",
    }
    done = found[("mlp", 0)]
    assert set(done["metrics"]) == {"synth_ocr", "synth_count", "synth_wide", "synth_caption", "synth_vqa", "synth_know"}
    assert done["cost"]["visual_tokens_per_image"] == 64 and found[("pixel_shuffle", 0)]["cost"]["visual_tokens_per_image"] == 16
    assert done["cost"]["params_trainable"] == done["cost"]["params_total"] > 0
    assert done["cost"]["train_steps"] == 3 and done["provenance"]["packages"]["torch"]
    assert done["config"]["ablation"]["command"] == f"vlmlab sweep toy paths.cache_dir={cache_dir}"  # what was typed
    assert "Invalid beta parameter" in found[("broken", 0)]["error"]["message"]
    answers = [json.loads(line) for line in done["_path"].with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert len(answers) == 12 and {"task", "prompt", "answer", "prediction", "score"} <= set(answers[0])  # 2 per task
    by_task = {}
    for answer in answers:
        by_task.setdefault(answer["task"], []).append(answer["score"])
    assert {task: sum(s) / len(s) for task, s in by_task.items()} == pytest.approx(done["metrics"], abs=1e-3)
    plan = json.loads((workspace / "results" / "runs" / "toy" / "plan.json").read_text())["ablation"]
    assert plan["metric_of"] == {"synth_count": "exact_match", "synth_vqa": "vqa_accuracy"}
    assert plan["correction"] == "holm"  # the file gives none: the default
    assert set(plan["chance"]) == {"synth_count", "synth_vqa"} and plan["chance"]["synth_vqa"]["answer"]
    assert not found[("broken", 0)]["_path"].with_suffix(".predictions.jsonl").exists()
    assert found[("mlp", 0)]["run_id"] != found[("mlp", 1)]["run_id"]
    table = workspace / "results" / "tables" / "toy.md"
    first = table.read_bytes()
    assert b"| mlp (control) |" in first and b"failed" in first
    assert "| pixel_shuffle |" in capsys.readouterr().out
    assert not (workspace / "outputs" / "wandb").exists(), "arms with logger=none: no dashboard, no summary run"

    # Re-run: the done runs are skipped (only the failed ones are retried) and the table is unchanged.
    counted_training.clear()
    assert sweep(cache_dir) == 1
    assert sorted(counted_training) == [("broken", 0), ("broken", 1)]
    assert table.read_bytes() == first

    # Deleting one record trains exactly that run again.
    found[("pixel_shuffle", 1)]["_path"].unlink()
    counted_training.clear()
    sweep(cache_dir)
    assert sorted(counted_training) == [("broken", 0), ("broken", 1), ("pixel_shuffle", 1)]


def test_tables_regenerate_from_results_alone(workspace, cache_dir):
    sweep(cache_dir, "ablation.name=ignored")  # labels passed by a user do not break the sweep's own
    table = workspace / "results" / "tables" / "toy.md"
    before = table.read_bytes()
    table.unlink()
    assert main(["tables"]) == 0
    assert table.read_bytes() == before


def test_unknown_axis_names_the_ablations(workspace, capsys):
    assert main(["sweep", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no ablation named 'nosuch'" in err and "toy" in err


@pytest.mark.parametrize("override", ["model.connector.nosuchkey=1", "model.connector.factor=3"])
def test_bad_arm_fails_before_training_and_writes_nothing(workspace, cache_dir, counted_training, override, capsys):
    path = workspace / "ablations" / "toy.yaml"
    path.write_text(TOY.replace("[model/connector=pixel_shuffle]", f"[model/connector=pixel_shuffle, {override}]"))
    assert sweep(cache_dir) == 2
    err = capsys.readouterr().err
    assert "ablations/toy.yaml: arm 'pixel_shuffle'" in err and "Traceback" not in err
    assert counted_training == []
    assert not (workspace / "results").exists()


@pytest.mark.slow  # 72 arms: in the slow tier, run by CI after `make test`
def test_every_arm_of_every_shipped_ablation_trains_and_evaluates(tmp_path, cache_dir, monkeypatch):
    """The every-experiment-config smoke test: each arm of each file in ablations/ runs a few steps."""
    from .conftest import ROOT
    from vlmlab.sweep.ablation import available
    from .zoo_fixture import seed_zoo

    monkeypatch.chdir(tmp_path)
    ablations = tmp_path / "ablations"
    ablations.mkdir()
    # The zoo's recipes read the suite (its held-out scenes), so the stand-in zoo is seeded on the sweeps' suite.
    zoo = [f"paths.cache_dir={cache_dir}", f"paths.zoo_dir={tmp_path / 'zoo'}", "data.suite.train_images=40",
           "data.suite.eval_images=8"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        seed_zoo(lambda overrides: compose(config_name="train", overrides=overrides), zoo)
    for name in available(ROOT / "ablations"):
        # Each arm once: the first seed builds and trains what every seed does (make test stays within budget).
        text = (ROOT / "ablations" / f"{name}.yaml").read_text()
        one_seed = re.sub(r"^seeds: \[(\d+)[^\]]*\]", r"seeds: [\1]", text, count=1, flags=re.M)
        assert one_seed != text or re.search(r"^seeds: \[\d+\]", text, flags=re.M), f"{name}: seeds not found"
        (ablations / f"{name}.yaml").write_text(one_seed)
        # A recipe's stages have their own lengths (conf/recipe/): a step each, added where an arm has no recipe.
        stages = [f"++recipe.steps.{stage}=1" for stage in ("align", "instruct", "cpt", "sft")] if "+recipe=" in text else []
        GlobalHydra.instance().clear()
        code = main(["sweep", name, "--ablations-dir", str(ablations), *zoo, *stages,
                     # budget.value=null: an ablation's budget (connector_matched) would override max_steps.
                     "trainer.max_steps=2", "budget.value=null", "trainer.log_every_n_steps=1", "data.batch_size=2",
                     "eval.limit_per_task=1", "eval.max_new_tokens=2", "logger=none"])
        assert code == 0, f"ablations/{name}.yaml: some arm failed"
        assert (tmp_path / "results" / "tables" / f"{name}.md").exists()
        curves = list((tmp_path / "results" / "runs" / name).glob("*/*.metrics.csv"))
        assert curves and "train/loss" in curves[0].read_text().splitlines()[0]
    assert not (tmp_path / "results" / "zoo").exists()  # every zoo arm ran on the stand-ins: nothing pretrained
    GlobalHydra.instance().clear()


def test_wandb_runs_offline_with_axis_arm_and_metrics(workspace, cache_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=wandb", "trainer.max_steps=2", "trainer.log_every_n_steps=1",
                 "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2", "ablation.name=toy", "ablation.arm=mlp"]) == 0
    runs = list((workspace / "outputs" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # Offline, the run's config, history and summary live in its protobuf log; the keys are stored verbatim.
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for key in (b"ablation.arm", b"model.connector._target_", b"run_id", b"test/synth_count", b"train/loss"):
        assert key in log, key


@pytest.mark.parametrize("fusion", ["autoregressive", "cross_attention"])
def test_k_shot_evaluation_runs_end_to_end(workspace, cache_dir, fusion):
    assert main(["train", f"paths.cache_dir={cache_dir}", "logger=none", "trainer.max_steps=2", "data.batch_size=2",
                 "eval.limit_per_task=2", "eval.max_new_tokens=3", "eval.shots=2", f"model/fusion={fusion}",
                 "ablation.name=toy", "ablation.arm=kshot"]) == 0
    (record,) = records(workspace).values()
    assert record["status"] == "done", record.get("error")
    assert record["config"]["eval"]["shots"] == 2 and set(record["metrics"]) >= {"synth_count", "synth_vqa"}


@pytest.mark.slow  # past the make-test budget: in the slow tier, run by CI after `make test`
def test_an_unreachable_wandb_server_means_offline_not_a_failed_sweep(workspace, cache_dir, monkeypatch):
    """Online mode against a closed port: each run and the sweep's summary fall back to offline, within bounds."""
    import time

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    (workspace / "ablations" / "toy.yaml").write_text(TOY.replace("seeds: [0, 1]", "seeds: [0]").replace(
        "  pixel_shuffle: [model/connector=pixel_shuffle]\n", "").replace(
        '  broken: ["optim.optimizer.betas=[2.0,0.9]"]   # passes planning, fails when the optimizer is built\n', "").replace(
        "logger=none", "logger=wandb"))
    started = time.perf_counter()
    assert sweep(cache_dir, "logger.wandb.init_timeout=5") == 0
    assert time.perf_counter() - started < 120
    assert records(workspace)[("mlp", 0)]["status"] == "done"
    offline = list((workspace / "outputs" / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2, "the run and the sweep's summary, both kept offline for `make sync`"
    summary = [run for run in offline if b"toy/table" in next(run.glob("run-*.wandb")).read_bytes()]
    assert len(summary) == 1


def test_a_newer_record_is_left_alone_and_an_altered_one_trained_again(workspace, cache_dir, counted_training, capsys):
    (workspace / "ablations" / "toy.yaml").write_text(ONLY_MLP)
    assert sweep(cache_dir) == 0
    found = records(workspace)
    newer, altered = found[("mlp", 0)]["_path"], found[("mlp", 1)]["_path"]
    newer.write_text(newer.read_text().replace('"schema_version": 2', '"schema_version": 99'))
    altered.write_text(altered.read_text().replace('"seed": 1', '"seed": 7'))  # the table cannot use it
    counted_training.clear()
    capsys.readouterr()
    assert sweep(cache_dir) == 1, "the newer record is not this vlmlab's to count as done"
    said = "".join(capsys.readouterr())
    assert counted_training == [("mlp", 1)], "the altered record is trained again (from its final checkpoint)"
    assert '"schema_version": 99' in newer.read_text() and "written by a newer vlmlab" in said
    assert json.loads(altered.read_text())["seed"] == 1


@pytest.mark.slow  # three trainings and two sweeps' tables: ~75 s
def test_a_run_another_ablation_finished_is_copied_not_trained_again(workspace, cache_dir, counted_training, capsys):
    (workspace / "ablations" / "toy.yaml").write_text(ONLY_MLP)
    # Another question whose control arm is toy's mlp arm under another name.
    (workspace / "ablations" / "other.yaml").write_text(
        ONLY_MLP.replace("control: mlp", "control: baseline").replace("  mlp: [", "  baseline: ["))
    assert sweep(cache_dir) == 0
    original = records(workspace)
    # Seed 1 of toy is tampered with: its config no longer hashes to its run_id, so it proves nothing.
    tampered = original[("mlp", 1)]["_path"]
    tampered.write_text(tampered.read_text().replace('"max_steps": 3', '"max_steps": 4'))
    counted_training.clear()
    capsys.readouterr()
    assert main(["sweep", "other", f"paths.cache_dir={cache_dir}"]) == 0
    assert counted_training == [("baseline", 1)]
    source = original[("mlp", 0)]["_path"]
    copy = workspace / "results" / "runs" / "other" / "baseline" / source.name
    record, first = json.loads(copy.read_text()), json.loads(source.read_text())
    assert record["ablation"] == {"name": "other", "arm": "baseline"}
    assert (record["config"]["ablation"]["name"], record["config"]["ablation"]["arm"]) == ("other", "baseline")
    assert {k: record[k] for k in ("metrics", "cost", "provenance", "seed")} == \
        {k: first[k] for k in ("metrics", "cost", "provenance", "seed")}
    for suffix in (".metrics.csv", ".predictions.jsonl"):
        assert copy.with_suffix(suffix).read_bytes() == source.with_suffix(suffix).read_bytes()
    said = "".join(capsys.readouterr())
    assert "trained already as toy/mlp; record copied" in said
    table = (workspace / "results" / "tables" / "other.md").read_text()
    assert "| baseline (control) |" in table and "missing" not in table
