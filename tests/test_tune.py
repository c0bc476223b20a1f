"""`vlmlab tune`: per-arm studies that resume, best.json, the sweep at each arm's best values, bad input.

The tests that train use tiny runs (2 steps, batch 2); the ones about the search's bookkeeping replace the
training with a function of the learning rate, which is all the search sees of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from hydra.core.global_hydra import GlobalHydra
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

import vlmlab.train.run as run_module
from vlmlab.cli import main
from vlmlab.errors import DivergedError

# warmup_steps=1: with the default 50, two steps would train at a fiftieth of the rate whatever the scale.
TEMPLATE = """
question: Does the connector matter?
control: mlp
seeds: [0]
metrics: [synth_count, synth_vqa]
common: [data.batch_size=2, trainer.max_steps=2, trainer.limit_val_batches=2, optim.schedule.warmup_steps=1,
         eval.limit_per_task=1, eval.max_new_tokens=2, logger=none]
TUNE
arms:
  mlp: [model/connector=mlp]
  linear: [model/connector=linear]
"""
# 1.0 lies outside this space, so every arm's best differs from the default it would otherwise train at.
TOY = TEMPLATE.replace("TUNE", "tune:\n  steps: 2\n  params: {optim.lr_scale: {low: 2.0, high: 20.0, log: true}}")


@pytest.fixture
def workspace(checkout, cache_dir):
    """A scratch checkout with ablations/toy.yaml, the session's dataset cache."""
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    return checkout


@pytest.fixture
def trainings(monkeypatch):
    """Counts the trials that really train (arm, lr_scale, loss), still training for real."""
    calls = []
    real = run_module.train_and_validate

    def counting(cfg, run_dir, rid, stop=None):
        outcome = real(cfg, run_dir, rid, stop=stop)
        calls.append((cfg.ablation.arm, cfg.optim.lr_scale, outcome.val_loss))
        return outcome

    monkeypatch.setattr(run_module, "train_and_validate", counting)
    return calls


def fake_training(monkeypatch, calls: list, surprises: dict | None = None) -> None:
    """Replace training by a loss with its minimum at lr_scale 3; call number -> an exception or a loss instead."""
    surprises = surprises or {}

    def fake(cfg, run_dir, rid, stop=None):
        calls.append((cfg.ablation.arm, cfg.optim.lr_scale))
        surprise = surprises.get(len(calls))
        if isinstance(surprise, BaseException):
            raise surprise
        loss = surprise if surprise is not None else 1 + (math.log(cfg.optim.lr_scale) - math.log(3)) ** 2
        return run_module.ValidationOutcome(val_loss=loss, cost={})

    monkeypatch.setattr(run_module, "train_and_validate", fake)


def tune(cache_dir: Path, *args: str) -> int:
    GlobalHydra.instance().clear()
    return main(["tune", "toy", *args, f"paths.cache_dir={cache_dir}"])


def sweep(cache_dir: Path, *args: str) -> int:
    GlobalHydra.instance().clear()
    return main(["sweep", "toy", *args, f"paths.cache_dir={cache_dir}"])


def best(root: Path) -> dict:
    return json.loads((root / "results" / "tuning" / "toy" / "best.json").read_text())["arms"]


def trials(root: Path, arm: str, results: str = "results") -> list[optuna.trial.FrozenTrial]:
    """The trials of the arm's study (one study per journal here), in order."""
    storage = JournalStorage(JournalFileBackend(str(root / results / "tuning" / "toy" / f"{arm}.journal")))
    return optuna.load_study(study_name=None, storage=storage).trials


def records(root: Path) -> dict[str, dict]:
    found = {}
    for path in (root / "results" / "runs" / "toy").glob("*/*.json"):
        record = json.loads(path.read_text())
        found[record["ablation"]["arm"]] = record
    return found


def test_tune_resumes_and_the_sweep_trains_each_arm_at_its_best(workspace, cache_dir, trainings, capsys):
    assert tune(cache_dir, "--trials", "2") == 0
    assert [arm for arm, _, _ in trainings] == ["mlp", "mlp", "linear", "linear"]
    tuning = workspace / "results" / "tuning" / "toy"
    assert sorted(p.name for p in tuning.iterdir()) == ["best.json", "linear.journal", "mlp.journal"]
    first = best(workspace)
    for arm in ("mlp", "linear"):
        losses = {scale: loss for a, scale, loss in trainings if a == arm}
        assert len(set(losses.values())) == 2, "two learning rates, two different losses"
        assert first[arm]["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
        assert first[arm]["value"] == min(losses.values())
        assert first[arm]["params"] == {"optim.lr_scale": min(losses, key=losses.get)}
        assert first[arm]["steps"] == 2 and first[arm]["overrides"][-1] == f"model/connector={arm}"
    out = capsys.readouterr().out
    assert "toy/mlp: 0 of 2 trials done, 2 to run" in out and "best per arm" in out
    assert not list((workspace / "outputs" / "tuning").rglob("*.ckpt")), "finished trials keep no checkpoints"

    # The same number of trials again: nothing trains, and no file changes (a git-friendly no-op).
    before = {path.name: path.read_bytes() for path in tuning.iterdir()}
    trainings.clear()
    assert tune(cache_dir, "--trials", "2") == 0
    assert trainings == []
    assert {path.name: path.read_bytes() for path in tuning.iterdir()} == before
    assert "toy/linear: 2 of 2 trials done, 0 to run" in capsys.readouterr().out

    # One more trial per arm trains exactly one more per arm.
    assert tune(cache_dir, "--trials", "3") == 0
    assert [arm for arm, _, _ in trainings] == ["mlp", "linear"]
    tuned = best(workspace)
    assert {arm: tuned[arm]["trials"]["complete"] for arm in tuned} == {"mlp": 3, "linear": 3}

    # The sweep trains each arm at its best value, labels it, and the table shows it.
    assert sweep(cache_dir) == 0
    found = records(workspace)
    for arm in ("mlp", "linear"):
        scale = tuned[arm]["params"]["optim.lr_scale"]
        assert 2.0 <= scale <= 20.0
        assert found[arm]["config"]["optim"]["lr_scale"] == scale
        assert found[arm]["config"]["ablation"]["tuned"] == {"optim.lr_scale": scale}
    table = (workspace / "results" / "tables" / "toy.md").read_text()
    assert "| Avg. | lr × | params |" in table
    for arm in ("mlp", "linear"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {arm}"))
        assert f"| {tuned[arm]['params']['optim.lr_scale']:.3g} |" in row
    csv = (workspace / "results" / "tables" / "toy.csv").read_text()
    assert "tuned:optim.lr_scale" in csv.splitlines()[0]



def test_an_interrupted_trial_is_repeated_and_nothing_finished_is(workspace, cache_dir, monkeypatch):
    calls: list = []
    fake_training(monkeypatch, calls, {2: KeyboardInterrupt()})  # the second trial of the first arm
    with pytest.raises(KeyboardInterrupt):
        tune(cache_dir, "--trials", "4")
    assert not (workspace / "results" / "tuning" / "toy" / "best.json").exists()
    assert [t.state for t in trials(workspace, "mlp")] == [TrialState.COMPLETE, TrialState.RUNNING]
    interrupted = calls[-1][1]

    calls.clear()
    fake_training(monkeypatch, calls)
    assert tune(cache_dir, "--trials", "4") == 0
    assert [arm for arm, _ in calls] == ["mlp"] * 3 + ["linear"] * 4
    assert calls[0][1] == interrupted, "the interrupted trial is repeated with its own values"
    mlp = trials(workspace, "mlp")
    assert [t.state for t in mlp] == [TrialState.COMPLETE, TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert mlp[2].user_attrs["retry_of"] == 1
    assert best(workspace)["mlp"]["trials"] == {"complete": 4, "pruned": 0, "failed": 1}

    # An uninterrupted search proposes the very same values, TPE's included: the interruption changed nothing.
    GlobalHydra.instance().clear()
    assert main(["tune", "toy", "--trials", "4", "--results-dir", "fresh", f"paths.cache_dir={cache_dir}"]) == 0
    for arm in ("mlp", "linear"):
        resumed = [t.params for t in trials(workspace, arm) if t.state == TrialState.COMPLETE]
        assert [t.params for t in trials(workspace, arm, "fresh")] == resumed
        assert len({t["optim.lr_scale"] for t in resumed}) == 4


def test_diverged_and_crashed_trials_never_stop_the_search(workspace, cache_dir, monkeypatch, capsys):
    calls: list = []
    fake_training(monkeypatch, calls, {2: DivergedError("training loss is nan"), 3: RuntimeError("boom"),
                                       4: float("nan")})
    assert tune(cache_dir, "--trials", "4") == 0
    out = capsys.readouterr().out
    assert "diverged: training loss is nan" in out and "failed: RuntimeError: boom" in out
    assert [t.state for t in trials(workspace, "mlp")] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                                           TrialState.PRUNED]
    assert best(workspace)["mlp"]["trials"] == {"complete": 1, "pruned": 2, "failed": 1}
    # The crashed trial left the arm one short: the next tune runs that one, and the complete arm none.
    calls.clear()
    assert tune(cache_dir, "--trials", "4") == 0
    assert [arm for arm, _ in calls] == ["mlp"]


def test_the_baseline_is_the_first_trial_when_the_space_holds_it(workspace, cache_dir, monkeypatch):
    path = workspace / "ablations" / "toy.yaml"
    path.write_text(TEMPLATE.replace("TUNE", "tune: {steps: 2}"))
    calls: list = []
    fake_training(monkeypatch, calls)
    assert tune(cache_dir, "--trials", "2") == 0
    assert [scale for arm, scale in calls if arm == "mlp"][0] == 1.0
    assert best(workspace)["mlp"]["space"] == {"optim.lr_scale": {"low": 0.1, "high": 10.0, "log": True, "int": False}}


def test_the_sweep_refuses_tuning_that_no_longer_fits_unless_untuned(workspace, cache_dir, monkeypatch, capsys):
    fake_training(monkeypatch, [])
    assert tune(cache_dir, "--trials", "1") == 0
    capsys.readouterr()
    assert sweep(cache_dir, "optim.lr_scale=2") == 2
    assert "optim.lr_scale is tuned per arm" in capsys.readouterr().err
    path = workspace / "ablations" / "toy.yaml"
    path.write_text(TOY.replace("linear: [model/connector=linear]",
                                "linear: [model/connector=linear, optim.optimizer.eps=1e-6]"))
    assert sweep(cache_dir) == 2
    err = capsys.readouterr().err
    assert "best.json: arm 'linear' was tuned with overrides" in err and "--untuned" in err
    assert not (workspace / "results" / "runs").exists()

    # --untuned trains the defaults, unlabelled (the runs fail here, after their configs are seen).
    configs = []

    def refuse(cfg, run_dir, rid, stop=None):
        configs.append((cfg.optim.lr_scale, dict(cfg.ablation.tuned)))
        raise RuntimeError("not trained in this test")

    monkeypatch.setattr(run_module, "train_and_evaluate", refuse)
    assert sweep(cache_dir, "--untuned") == 1
    assert configs == [(1.0, {}), (1.0, {})]
    assert "lr ×" not in (workspace / "results" / "tables" / "toy.md").read_text()


@pytest.mark.parametrize(("block", "expected"), [
    ("tune: {trials: 0}", "toy.yaml: tune.trials: must be a positive integer, got 0"),
    ("tune: {steps: 2.5}", "toy.yaml: tune.steps: must be an integer, got 2.5"),
    ("tune: {seeds: 1}", "toy.yaml: tune.seeds: key 'seeds' is not a field of `tune`"),
    ("tune: {params: {optim.lr_scale: {low: 10, high: 1}}}", "tune.params.optim.lr_scale.low: must be below `high`"),
    ("tune: {params: {optim.lr_scale: {low: 0, high: 1, log: true}}}", "must be positive on a log scale"),
    ("tune: {params: {optim.lr_scale: {low: 1, high: 2, step: 1}}}",
     "tune.params.optim.lr_scale.step: key 'step' is not a field of `tune.params.optim.lr_scale`"),
    ("tune: {params: {seed: {low: 1, high: 2}}}", "toy.yaml: tune.params.seed: seed cannot be tuned"),
    ("tune: {params: {optim.nosuch: {low: 1, high: 2}}}", "`tune.params.optim.nosuch`: arm 'mlp' has no config key"),
    ("tune: {params: {optim.lr: {low: 1, high: 2}}}", "`tune.params.optim.lr`: arm 'mlp': optim.lr is a config node"),
    ("tune: {params: {model.connector._target_: {low: 1, high: 2}}}", "is 'vlmlab.models.connectors.MLPProjector', not a number"),
])
def test_a_bad_tune_block_names_the_file_and_key_and_writes_nothing(workspace, cache_dir, monkeypatch, capsys,
                                                                   block, expected):
    calls: list = []
    fake_training(monkeypatch, calls)
    (workspace / "ablations" / "toy.yaml").write_text(TEMPLATE.replace("TUNE", block))
    assert tune(cache_dir) == 2
    err = capsys.readouterr().err
    assert "ablations/toy.yaml" in err and expected in err and "Traceback" not in err
    assert calls == [] and not (workspace / "results").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["nosuch"], "no ablation named 'nosuch'"),
    (["toy", "--trials", "0"], "--trials must be a positive number"),
])
def test_bad_command_lines_exit_2_and_write_nothing(workspace, args, expected, capsys):
    assert main(["tune", *args]) == 2
    assert expected in capsys.readouterr().err
    assert not (workspace / "results").exists()


def test_lr_scale_multiplies_every_components_learning_rate():
    import torch
    from omegaconf import OmegaConf

    from vlmlab.train.module import VLMTrainingModule

    model = torch.nn.Module()
    for name in ("vision", "connector", "fusion", "lm"):
        setattr(model, name, torch.nn.Linear(2, 2))
    optim = OmegaConf.create({"lr": {"vision": 1.0, "connector": 2.0, "fusion": 3.0, "lm": 4.0}, "weight_decay": 0.0})
    plain = {g["name"]: g["lr"] for g in VLMTrainingModule(model, optim, 10).parameter_groups()}
    optim.lr_scale = 0.5
    scaled = {g["name"]: g["lr"] for g in VLMTrainingModule(model, optim, 10).parameter_groups()}
    assert scaled == {name: lr * 0.5 for name, lr in plain.items()} and len(scaled) == 8
