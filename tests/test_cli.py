"""The `vlmlab` command line: sub-commands and their help, global flags, paths from the config, Hydra's flags passed
through, and the typed command carried to the records' provenance in the job's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from vlmlab.cli import COMMANDS, main
from vlmlab.results.records import write_plan
from vlmlab.sweep.identity import run_id
from vlmlab.launch.provenance import command, provenance

from .conftest import ROOT

# A run that trains in seconds (as in test_bad_input.py), with the overrides the brief of the command names.
TINY = ("logger=none", "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2",
        "data.suite.train_images=40", "model/connector=mlp", "trainer.max_steps=2")


@pytest.mark.parametrize(("name", "expected"), [
    ("sweep", ["AXIS", "--untuned", "key=value", "--results-dir", "--ablations-dir"]),
    ("tune", ["AXIS", "--trials N", "key=value"]),
    ("prefetch", ["AXIS", "--untuned", "key=value"]),
    ("status", ["AXIS", "key=value"]),
    ("train", ["key=value", "--cfg job", "-m", "--results-dir"]),
])
def test_each_command_has_its_own_help(name, expected, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vlmlab {name} ")
    for word in expected:
        assert word in out, f"{word!r} not in the help of {name}"


def test_the_command_list_names_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(f"    {command.name} " in out for command in COMMANDS)


@pytest.mark.parametrize("argv", [["sweep", "toy", "--trials", "3"], ["status", "toy", "--untuned"],
                                  ["tables", "--nosuch"], ["sweep"], ["nosuch"]])
def test_flags_of_another_command_are_refused_by_argparse(checkout, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vlmlab") and "error:" in err
    if "--trials" in argv:
        assert "vlmlab sweep: error: unrecognized arguments: --trials" in err
    assert not (checkout / "results").exists() and not (checkout / "outputs").exists()


def test_python_m_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "vlmlab.cli", "list", "--ablations-dir", str(ROOT / "ablations")],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "connector" in out.split()


def _plan(results: Path) -> str:
    """A plan of one run of axis `toy` in `results`; its run_id."""
    rid = "0123456789ab"
    write_plan(results, "toy", {"name": "toy", "question": "q", "paper_table": None, "control": "a", "arms": ["a"],
                                "metrics": ["count"], "seeds": [0]}, [{"run_id": rid, "arm": "a", "seed": 0}])
    return rid


@pytest.mark.parametrize("where", ["override", "flag before", "flag after"])
def test_status_reads_the_paths_of_the_config(checkout, where, capsys):
    results, outputs = checkout / "elsewhere" / "results", checkout / "scratch"
    rid = _plan(results)
    (outputs / "runs" / "toy" / rid).mkdir(parents=True)  # a run directory, nobody training it: interrupted
    paths = {"override": ["status", "toy", f"paths.results_dir={results}"],
             "flag before": ["--results-dir", str(results), "status", "toy"],
             "flag after": ["status", "toy", "--results-dir", str(results)]}[where]
    assert main([*paths]) == 0
    assert "1 missing" in capsys.readouterr().out  # outputs/ (conf/paths/default.yaml) has no run directory
    assert main([*paths, f"paths.output_dir={outputs}"]) == 0
    assert "1 interrupted" in capsys.readouterr().out


def test_an_override_that_does_not_compose_is_refused(checkout, capsys):
    assert main(["status", "toy", "paths.nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlmlab status: Could not override 'paths.nosuch'") and "Traceback" not in err


def test_hydra_flags_pass_through_train_and_argv_is_left_alone(checkout, capsys):
    argv = list(sys.argv)
    assert main(["train", "--cfg", "job", "logger=none", "trainer.max_steps=7"]) == 0
    assert main(["train", "trainer.max_steps=8", "--cfg", "job", "--resolve"]) == 0  # a flag after an override
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "max_steps: 8" in out
    assert sys.argv == argv, "Hydra reads its arguments from vlmlab, not from the process's argv"
    assert not (checkout / "outputs").exists(), "--cfg job prints the config and runs nothing"


def test_the_command_in_the_config_leaves_the_run_id_as_it_is(make_cfg):
    plain = make_cfg("model/connector=mlp", "trainer.max_steps=5")
    labelled = make_cfg("model/connector=mlp", "trainer.max_steps=5",
                        "+ablation.command='vlmlab sweep connector model/connector=mlp trainer.max_steps=5'")
    assert labelled.ablation.command == "vlmlab sweep connector model/connector=mlp trainer.max_steps=5"
    assert run_id(labelled) == run_id(plain)


def test_provenance_takes_the_command_from_the_config_else_from_argv():
    typed = "vlmlab sweep connector model/connector=mlp trainer.max_steps=5"
    assert command(OmegaConf.create({"ablation": {"command": typed}})) == typed
    assert command(OmegaConf.create({"ablation": {"name": "adhoc"}})) == " ".join(sys.argv)
    assert command(None) == " ".join(sys.argv)  # a job started by other means
    assert "VLMLAB_COMMAND" not in os.environ


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> tuple[str, dict]:
    """`vlmlab train` run once in a scratch checkout: the command typed, and the record it wrote."""
    root = tmp_path_factory.mktemp("checkout")
    before = Path.cwd()
    os.chdir(root)
    GlobalHydra.instance().clear()
    try:
        argv = ["train", f"paths.cache_dir={cache_dir}", *TINY]
        assert main(argv) == 0
    finally:
        GlobalHydra.instance().clear()
        os.chdir(before)
    [path] = (root / "results" / "runs" / "adhoc" / "default").glob("*.json")
    return " ".join(["vlmlab", *argv]), json.loads(path.read_text())


def test_the_typed_command_reaches_the_run_in_its_config(trained):
    typed, record = trained
    assert typed.endswith(" model/connector=mlp trainer.max_steps=2")
    assert record["config"]["ablation"]["command"] == typed  # what every process of the run receives
    assert provenance(OmegaConf.create(record["config"]))["command"] == typed
    assert record["run_id"] == run_id(OmegaConf.create(record["config"]))


def test_the_record_provenance_names_the_typed_command(trained):
    typed, record = trained
    assert record["provenance"]["command"] == typed
