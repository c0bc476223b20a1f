"""Every bad input to `vlmlab sweep | tune | status | train` is refused before anything trains: one line naming
the file, arm and key, exit code 2, no traceback, and results/ (the whole checkout, in fact) left as it was."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

import vlmlab.train.run as run_module
from vlmlab.cli import main
from vlmlab.errors import ConfigError
from vlmlab.sweep.plan import check_config

TOY = """
question: Does the connector matter?
control: mlp
seeds: [0]
metrics: [synth_count, synth_vqa]
common: [trainer.max_steps=2, data.batch_size=2, eval.limit_per_task=1, eval.max_new_tokens=2, logger=none]
arms:
  mlp: [model/connector=mlp]
  linear: [model/connector=linear]
"""
FILE = "ablations/toy.yaml"
# A run that passes planning and fails when its optimizer is built, on a small dataset (shared with test_sweep.py).
TINY = ("logger=none", "trainer.max_steps=2", "data.batch_size=2", "eval.limit_per_task=1", "eval.max_new_tokens=2",
        "data.suite.train_images=40")


def nothing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No setup: the bad input is in the command line or the ablation file."""


def a_file(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file named `afile` where a directory is expected."""
    (root / "afile").write_text("not a directory\n")


def read_only_results(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results/ exists and refuses new files, as on a read-only mount.

    The tests run as root, whom chmod does not stop, and mounting needs privileges: so the OS call that creates
    a file answers EROFS for anything inside results/, as a read-only mount would, and the real probe meets it.
    """
    results = root / "results"
    results.mkdir()
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(os.path.abspath(path)).is_relative_to(results):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)


@dataclass(frozen=True)
class Case:
    """One bad input: the command after `vlmlab`, the ablation file, a setup, what the error line must say."""

    argv: tuple[str, ...]
    expected: tuple[str, ...]
    toy: str = TOY
    setup: Callable[[Path, pytest.MonkeyPatch], None] = nothing


def sweep(*args: str, toy: str = TOY, setup: Callable = nothing, expected: tuple[str, ...] = ()) -> Case:
    return Case(("sweep", "toy", *args), expected, toy, setup)


def train(*args: str, setup: Callable = nothing, expected: tuple[str, ...] = ()) -> Case:
    return Case(("train", *TINY, *args), ("vlmlab train: ", *expected), TOY, setup)


CASES = {
    # 1. numbers of the wrong type (the other keys of the table: test_every_numeric_rule below)
    "max_steps": sweep("trainer.max_steps=abc", expected=(
        f"{FILE}: arm 'mlp': trainer.max_steps: must be a positive integer, got 'abc'",)),
    "lr_scale": sweep("optim.lr_scale=abc", expected=(
        f"{FILE}: arm 'mlp': optim.lr_scale: must be a positive number, got 'abc'",)),
    # 2. two arms that are one run
    "same_config": sweep(toy=TOY + "  mlp_again: [model/connector=mlp]\n", expected=(
        f"{FILE}: arms 'mlp' and 'mlp_again' compose to the same config (run_id ",
        "one would overwrite the other's record")),
    # 3. a metric the suite does not score
    "unknown_metric": sweep(toy=TOY.replace("[synth_count, synth_vqa]", "[synth_count, nosuch]"), expected=(
        f"{FILE}: metrics: unknown benchmark(s) nosuch;", "synth_ocr, synth_count")),
    # 4. an arm given twice (YAML alone keeps the last)
    "duplicate_arm": sweep(toy=TOY + "  mlp: [model/connector=pixel_shuffle]\n", expected=(
        f"{FILE}: line 10: key 'mlp' is given twice in one mapping (first at line 8)",)),
    # 5. names that are no single directory
    "arm_with_slash": sweep(toy=TOY + "  a/b: [model/connector=linear]\n", expected=(
        f"{FILE}: arms: 'a/b' cannot be an arm name",)),
    "axis_outside": Case(("sweep", "../toy"), ("no ablation named '../toy' in ablations/", "ablations are: toy")),
    "axis_absolute": Case(("sweep", "/etc/hosts"), ("no ablation named '/etc/hosts'", "ablations are: toy")),
    "tune_outside": Case(("tune", "../toy"), ("vlmlab tune: no ablation named '../toy'", "ablations are: toy")),
    "status_outside": Case(("status", "../toy"), ("vlmlab status: no ablation named '../toy'", "ablations are: toy")),
    # 5b. a file that does not fit the ablation schema (vlmlab.sweep.ablation_schema): file and dotted key named
    "unknown_key": sweep(toy=TOY + "seedz: [1]\n", expected=(
        f"{FILE}: seedz: key 'seedz' is not a field of the ablation file (known: question, control, arms,",)),
    "wrong_type": sweep(toy=TOY.replace("seeds: [0]", "seeds: [zero]"), expected=(
        f"{FILE}: seeds[0]: must be an integer, got 'zero'",)),
    "missing_key": sweep(toy=TOY.replace("control: mlp\n", ""), expected=(
        f"{FILE}: control: missing; every ablation file gives question, control, arms",)),
    "control_not_an_arm": sweep(toy=TOY.replace("control: mlp", "control: perceiver"), expected=(
        f"{FILE}: control: 'perceiver' is not one of the arms: mlp, linear",)),
    "arm_not_a_list": sweep(toy=TOY.replace("[model/connector=linear]", "model/connector=linear"), expected=(
        f"{FILE}: arms.linear: must be a list of strings, got 'model/connector=linear'",)),
    "arm_not_an_override": sweep(toy=TOY.replace("[model/connector=linear]", "[model/connector=linear, linear]"),
                                 expected=(f"{FILE}: arms.linear[1]: 'linear' is not a Hydra override",)),
    "bad_tune_block": sweep(toy=TOY + "tune: {trials: many}\n", expected=(
        f"{FILE}: tune.trials: must be an integer, got 'many'",)),
    # 6. directories that cannot be written
    "results_is_file": sweep("--results-dir", "afile", setup=a_file, expected=(
        f"{FILE}: arm 'mlp': paths.results_dir: cannot write to afile/runs/toy: afile: Not a directory",)),
    "results_under_file": sweep("--results-dir", "afile/results", setup=a_file, expected=(
        "paths.results_dir: cannot write to afile/results/runs/toy: afile: Not a directory",)),
    "output_is_file": sweep("paths.output_dir=afile", setup=a_file, expected=(
        f"{FILE}: arm 'mlp': paths.output_dir: cannot write to afile: Not a directory",)),
    "cache_under_file": sweep("paths.cache_dir=afile/cache", setup=a_file, expected=(
        "paths.cache_dir: cannot write to afile/cache: afile: Not a directory",)),
    "results_read_only": sweep(setup=read_only_results, expected=(
        f"{FILE}: arm 'mlp': paths.results_dir: cannot write to results/runs/toy: results: Read-only file system",)),
    # 7. a single run gets the same checks, before Hydra makes its run directory
    "train_max_steps": train("trainer.max_steps=abc", expected=(
        "trainer.max_steps: must be a positive integer, got 'abc'",)),
    "train_output_is_file": train("paths.output_dir=afile", setup=a_file, expected=(
        "paths.output_dir: cannot write to afile: Not a directory",)),
    "train_arm_label": train("ablation.arm=a/b", expected=("ablation.arm: 'a/b' cannot be a directory name",)),
}


@pytest.fixture
def trained(monkeypatch) -> list:
    """The runs that really train (training still runs for real)."""
    calls = []
    real = run_module.train_and_evaluate

    def counting(cfg, *args, **kwargs):
        calls.append((cfg.ablation.arm, cfg.seed))
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, "train_and_evaluate", counting)
    return calls


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` and the bytes of each file: what a refused command must leave as it was."""
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_before_anything_trains(name, checkout, cache_dir, trained, monkeypatch, capsys):
    case = CASES[name]
    (checkout / FILE).write_text(case.toy)
    case.setup(checkout, monkeypatch)
    before = tree(checkout)
    command, rest = case.argv[0], case.argv[1:]
    with_cache = (f"paths.cache_dir={cache_dir}",) if command in ("sweep", "train") else ()
    axis = rest[:1] if command != "train" else ()  # the cache after the axis, before the case's own overrides
    assert main([command, *axis, *with_cache, *rest[len(axis):]]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in case.expected:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    assert trained == []
    assert tree(checkout) == before, "a refused command leaves results/ (and everything else) as it was"


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.max_steps=0", "trainer.max_steps: must be a positive integer, got 0"),
    ("trainer.max_steps=2.5", "trainer.max_steps: must be a positive integer, got 2.5"),
    ("optim.lr_scale=0", "optim.lr_scale: must be a positive number, got 0"),
    ("optim.lr_scale=true", "optim.lr_scale: must be a positive number, got True"),  # a bool is not a number
    ("optim.lr_scale=inf", "optim.lr_scale: must be a positive number, got inf"),
    ("optim.schedule.warmup_steps=-1", "optim.schedule.warmup_steps: must be an integer >= 0, got -1"),
    ("optim.weight_decay=-0.1", "optim.weight_decay: must be a number >= 0, got -0.1"),
    ("optim.lr.lm=abc", "optim.lr.lm: must be a number >= 0, got 'abc'"),
    ("optim.lr=0.1", "optim.lr: must be a mapping of component -> value, got 0.1"),
    ("data.batch_size=0", "data.batch_size: must be a positive integer, got 0"),
    ("checkpoint_every_n_steps=abc", "checkpoint_every_n_steps: must be a positive integer, got 'abc'"),
    ("data.num_workers=-1", "data.num_workers: must be an integer >= 0, got -1"),
    ("trainer.val_check_interval=1.5", "trainer.val_check_interval: must be a positive integer or a fraction"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval: must be a positive integer or a fraction"),
    ("trainer.log_every_n_steps=false", "trainer.log_every_n_steps: must be a positive integer, got False"),
    ("eval.batch_size=0", "eval.batch_size: must be a positive integer, got 0"),
    ("eval.limit_per_task=0", "eval.limit_per_task: must be a positive integer or null, got 0"),
    ("eval.shots=-1", "eval.shots: must be an integer >= 0, got -1"),
    ("eval.max_new_tokens=abc", "eval.max_new_tokens: must be a positive integer, got 'abc'"),
    ("data.mixture.ocr=abc", "data.mixture.ocr: must be a number >= 0, got 'abc'"),
    ("~trainer.max_steps", "trainer.max_steps: is missing; it must be a positive integer"),
])
def test_every_numeric_rule(make_cfg, override, message):
    with pytest.raises(ConfigError) as err:
        check_config(make_cfg(override))
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("override", ["trainer.val_check_interval=0.5", "eval.limit_per_task=null",
                                      "optim.lr.lm=0", "optim.lr_scale=2", "~optim.lr_scale", "~eval.shots"])
def test_good_numbers_and_optional_keys_pass(make_cfg, override):
    check_config(make_cfg(override))


def test_train_exits_1_when_its_run_fails(checkout, cache_dir, trained, capsys):
    assert main(["train", f"paths.cache_dir={cache_dir}", *TINY, "optim.optimizer.betas=[2.0,0.9]"]) == 1
    assert len(trained) == 1
    (path,) = (checkout / "results" / "runs" / "adhoc" / "default").glob("*.json")
    assert json.loads(path.read_text())["status"] == "failed"


def test_a_failed_sweep_names_the_arm_of_each_unfinished_run(checkout, cache_dir, trained, capsys):
    broken = '  broken: ["optim.optimizer.betas=[2.0,0.9]"]\n'
    (checkout / FILE).write_text(TOY.replace("  linear: [model/connector=linear]\n", broken)
                                 .replace("control: mlp", "control: broken").replace("  mlp: [model/connector=mlp]\n", ""))
    GlobalHydra.instance().clear()
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}", "data.suite.train_images=40"]) == 1
    assert trained == [("broken", 0)]
    assert "failed: toy/broken seed 0 (" in capsys.readouterr().err
