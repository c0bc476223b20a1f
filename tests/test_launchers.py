"""The submitit launchers: hydra/launcher=slurm asks SLURM for what the trainer needs and what the command line
says, a refused submission still ends with a table, and a sweep through hydra/launcher=local runs each run in a
job of its own, survives a job that is killed, and trains that run on the next sweep."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from omegaconf import DictConfig

from vlmlab.cli import main
from vlmlab.launch.lock import holder, lock_path

from .conftest import CONF

TOY = """
question: Does a killed job stop the sweep?
control: mlp
seeds: [0]
metrics: [synth_count]
common: [trainer.max_steps=2, trainer.log_every_n_steps=1, data.batch_size=2, data.suite.train_images=40,
         eval.limit_per_task=1, eval.max_new_tokens=2, logger=none]
arms:
  mlp: [model/connector=mlp]
  victim: [model/connector=linear]
"""


def slurm_launcher(*overrides: str) -> tuple[DictConfig, Any]:
    """The composed config for `hydra/launcher=slurm` and `overrides`, and the launcher Hydra makes of it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    GlobalHydra.instance().clear()
    context = HydraContext(config_loader=None, callbacks=None)  # type: ignore[arg-type]  (launch is not called)
    return cfg, Plugins.instance().instantiate_launcher(hydra_context=context, task_function=print, config=cfg)


def fake_slurm(bin_dir: Path, monkeypatch) -> Path:
    """`srun` and an `sbatch` that keeps the script it is given and refuses it, as for an unknown account."""
    bin_dir.mkdir()
    scripts = bin_dir / "scripts"
    refuse = f'cp "$1" {scripts}\necho "sbatch: error: Invalid account" >&2\nexit 1'
    for name, body in (("srun", ""), ("sbatch", refuse)):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return scripts


@pytest.fixture
def workspace(checkout):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    return checkout


def test_slurm_launcher_takes_overrides_and_writes_them_into_its_sbatch_script(tmp_path, monkeypatch):
    _cfg, launcher = slurm_launcher(
        "trainer.devices=4", "+trainer.num_nodes=2", "hydra.launcher.account=proj", "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=240", f"paths.output_dir={tmp_path / 'outputs'}")
    params = launcher.params
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (4, 4, 2)
    assert (params["account"], params["partition"], params["timeout_min"]) == ("proj", "gpu", 240)
    assert params["max_num_timeout"] > 0 and params["additional_parameters"] == {"requeue": True}
    assert params["submitit_folder"].startswith(str(tmp_path / "outputs"))
    # The sbatch script it would submit (submitit refuses to build a SLURM executor where srun is missing).
    fake_slurm(tmp_path / "bin", monkeypatch)
    script = launcher._executor()._executor._make_submission_file_text("python -m job", "uid")
    for flag in ("--account=proj", "--partition=gpu", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
                 "--time=240", "--requeue", "--signal=USR2@120", "--mem-per-gpu=64G", "--cpus-per-task=8"):
        assert f"#SBATCH {flag}\n" in script


@pytest.mark.parametrize("trainer", ["cpu", "ddp", "fsdp"])
def test_slurm_launcher_follows_the_trainer(trainer):
    """One task per device on trainer.num_nodes nodes (one node for a trainer config without the key)."""
    cfg, launcher = slurm_launcher(f"trainer={trainer}")
    devices, nodes = cfg.trainer.devices, cfg.trainer.get("num_nodes", 1)
    params = launcher.params
    assert (params["gpus_per_node"], params["tasks_per_node"], params["nodes"]) == (devices, devices, nodes)


def test_a_refused_submission_is_reported_and_the_table_still_written(workspace, cache_dir, tmp_path, monkeypatch,
                                                                      capsys):
    scripts = fake_slurm(tmp_path / "bin", monkeypatch)
    assert main(["sweep", "toy", "hydra/launcher=slurm", "hydra.launcher.account=nosuch",
                 f"paths.cache_dir={cache_dir}"]) == 1
    out, err = capsys.readouterr()
    assert "Invalid account" in out and "without a record: toy/mlp seed 0" in out
    assert "missing: toy/mlp seed 0" in err and "missing: toy/victim seed 0" in err
    assert (workspace / "results" / "tables" / "toy.md").exists()
    script = scripts.read_text()  # one job array for the two runs, named after the ablation
    assert "#SBATCH --array=0-1%2\n" in script and "#SBATCH --job-name=vlmlab-toy\n" in script
    assert "#SBATCH --account=nosuch\n" in script and "#SBATCH --ntasks-per-node=1\n" in script


def kill_when_locked(root: Path, arm: str, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the process that takes the lock of `arm`'s run (as the OOM killer or a lost node would)."""
    plan = root / "results" / "runs" / "toy" / "plan.json"
    while not stop.is_set():
        if plan.exists():
            run_id = next(r["run_id"] for r in json.loads(plan.read_text())["runs"] if r["arm"] == arm)
            found = holder(lock_path(root / "outputs" / "runs" / "toy" / run_id))
            if found is not None:
                os.kill(found.pid, signal.SIGKILL)
                killed.append(found.pid)
                return
        time.sleep(0.05)


def job_logs(root: Path) -> dict[str, str]:
    """Each submitit job's id and stdout log."""
    folder = root / "outputs" / "hydra" / "toy" / "submitit"
    return {path.parent.name: path.read_text() for path in folder.glob("*/*_0_log.out")}


@pytest.mark.slow  # 30 s of job processes: in the slow tier, run by CI after `make test`
def test_local_sweep_survives_a_killed_job_and_the_next_sweep_finishes_it(workspace, cache_dir, capsys):
    command = ["sweep", "toy", "hydra/launcher=local", f"paths.cache_dir={cache_dir}"]
    killed: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=kill_when_locked, args=(workspace, "victim", killed, stop), daemon=True)
    watcher.start()
    try:
        assert main(command) == 1, "a run left unfinished makes the exit status 1"
    finally:
        stop.set()
        watcher.join()
    assert killed and killed[0] != os.getpid(), "the run was trained in a job's process, not the sweep's"
    out, err = capsys.readouterr()
    assert "interrupted: toy/victim seed 0" in err
    assert "without a record: toy/victim seed 0" in out and "job(s) ended without a result" in out
    runs = workspace / "results" / "runs" / "toy"
    assert [json.loads(p.read_text())["status"] for p in runs.glob("*/*.json")] == ["done"]  # mlp's, no other
    table = (workspace / "results" / "tables" / "toy.md").read_text()
    assert "| mlp (control) |" in table and "victim" in table
    first = job_logs(workspace)
    assert len(first) == 2 and sum("toy/mlp seed 0" in log and ": training" in log for log in first.values()) == 1

    # The same command again: one job, for the killed run only; every run is then done, by its job.
    assert main(command) == 0
    records = [json.loads(p.read_text()) for p in runs.glob("*/*.json")]
    assert sorted((r["ablation"]["arm"], r["status"]) for r in records) == [("mlp", "done"), ("victim", "done")]
    typed = " ".join(["vlmlab", *command])  # reaches each job's process in its config, not its environment
    assert [r["config"]["ablation"]["command"] for r in records] == [typed, typed]
    second = {job: log for job, log in job_logs(workspace).items() if job not in first}
    assert len(second) == 1 and "toy/victim seed 0" in next(iter(second.values()))
    assert all((workspace / "outputs" / "hydra" / "toy" / "submitit" / job / f"{job}_0_result.pkl").exists()
               for job in second)
    assert "| victim |" in (workspace / "results" / "tables" / "toy.md").read_text()
