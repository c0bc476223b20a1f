"""Ablation files: parsing, and bad arms refused before training with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from vlmlab.sweep.ablation import AblationError, available, load_ablation
from vlmlab.sweep.ablation_schema import read_ablation_file
from vlmlab.sweep.identity import run_id
from vlmlab.sweep.plan import plan_sweep, with_run_defaults

from .conftest import CONF, ROOT

GOOD = """
question: Which connector?
control: mlp
seeds: [0, 1]
metrics: [synth_count, synth_vqa]
arms:
  mlp: [model/connector=mlp]
  {arm}
"""


def write(tmp_path: Path, arm_line: str, name: str = "toy") -> Path:
    (tmp_path / f"{name}.yaml").write_text(GOOD.format(arm=arm_line))
    return tmp_path


@pytest.fixture
def compose_fn(cache_dir, tmp_path):
    def _compose(overrides):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=[f"paths.results_dir={tmp_path / 'results'}", *overrides])
    return _compose


def test_every_shipped_ablation_plans_cleanly(compose_fn):
    names = available(ROOT / "ablations")
    assert "connector" in names
    for name in names:
        spec = load_ablation(ROOT / "ablations", name)
        jobs = plan_sweep(spec, compose_fn)
        assert len(jobs) == len(spec.arms) * len(spec.seeds)
        assert len({job.run_id for job in jobs}) == len(jobs), "every (arm, seed) must be a distinct run"


def test_unknown_axis_lists_the_ablations(tmp_path):
    write(tmp_path, "linear: [model/connector=linear]", name="alpha")
    with pytest.raises(AblationError, match="no ablation named 'nosuch'.*alpha"):
        load_ablation(tmp_path, "nosuch")


@pytest.mark.parametrize(
    ("arm_line", "expected"),
    [
        ("bad: [model.connector.nosuchkey=3]", r"arm 'bad': override 'model.connector.nosuchkey=3'"),
        ("bad: [model/connector=nosuch]", r"arm 'bad': override 'model/connector=nosuch'.*nosuch"),
        ("bad: [model/connector=perceiver, model.connector.num_latents=0]", r"arm 'bad': model\.connector\.num_latents: must be positive"),
        ("bad: [data.image.size=60]", r"arm 'bad': data\.image\.size: 60 is not a positive multiple"),
        ("bad: [model/connector=pixel_shuffle, model.connector.factor=3]", r"arm 'bad': model\.connector\.factor"),
        ('bad: ["eval.tasks=[synth_count,nosuch]"]', r"arm 'bad': eval\.tasks: unknown task\(s\) nosuch; synthetic-v2.2 has"),
        ("bad: [data=synthetic_v2, data.mixture.nosuch=1]", r"arm 'bad': override 'data.mixture.nosuch=1'"),
        ("bad: [data=synthetic_v2, eval.tasks=null, +data.mixture.nosuch=1]",
         r"arm 'bad': data\.mixture: unknown training task\(s\) nosuch"),
        ("bad: [data=synthetic_v2, eval.tasks=null, data.mixture.caption=0, data.mixture.ocr=0, data.mixture.count=0, "
         "data.mixture.wide=0, data.mixture.vqa=0, data.mixture.know=0]", r"data\.mixture: every weight is 0"),
        ("bad: [data=synthetic_v2, data.suite.caption_style=fancy]", r"arm 'bad': data\.suite: .*caption_style"),
        ("bad: [trainer.max_steps=abc]", r"arm 'bad': trainer\.max_steps: must be a positive integer, got 'abc'"),
        ('bad: ["eval.tasks=[synth_count]"]', r"metrics: arm 'bad' does not evaluate synth_vqa \(its eval\.tasks"),
        ("bad: [model/connector=mlp]", r"arms 'mlp' and 'bad' compose to the same config \(run_id [0-9a-f]{12}\)"),
    ],
)
def test_bad_arms_are_refused_naming_file_arm_and_key(tmp_path, compose_fn, arm_line, expected):
    spec = load_ablation(write(tmp_path, arm_line), "toy")
    with pytest.raises(AblationError, match=expected) as err:
        plan_sweep(spec, compose_fn)
    assert str(tmp_path / "toy.yaml") in str(err.value)


MINIMAL = "question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], b: [x=1]}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the schema: keys, types, required keys
        (MINIMAL + "seedz: [1]\n", r"seedz: key 'seedz' is not a field of the ablation file \(known: question, "),
        (MINIMAL + "steps: 3\n", r"steps: key 'steps' is not a field of the ablation file"),
        (MINIMAL.replace("control: a\n", ""), r"control: missing; every ablation file gives question, control, arms"),
        (MINIMAL.replace("question: q\n", ""), r"question: missing"),
        (MINIMAL.replace("seeds: [0]", "seeds: [0, 1.5]"), r"seeds\[1\]: must be an integer, got 1\.5"),
        (MINIMAL.replace("seeds: [0]", "seeds: 3"), r"seeds: must be a list of integers \(or null\), got 3"),
        (MINIMAL.replace("question: q", "question: [q]"), r"question: must be a string, got \['q'\]"),
        (MINIMAL.replace("{a: [], b: [x=1]}", "[a, b]"), r"arms: must be a mapping of name -> a list of strings"),
        (MINIMAL.replace("a: []", "a: model/connector=mlp"), r"arms\.a: must be a list of strings, got "
                                                             r"'model/connector=mlp'"),
        (MINIMAL.replace("b: [x=1]", "b: [x=1, {y: 2}]"), r"arms\.b\[1\]: must be a string, got \{'y': 2\}"),
        (MINIMAL + "tune: 3\n", r"tune: must be a mapping with any of the keys trials, steps, seed, params"),
        (MINIMAL + "tune: {params: {optim.lr_scale: {low: 1, high: 2, step: 1}}}\n",
         r"tune\.params\.optim\.lr_scale\.step: key 'step' is not a field of `tune\.params\.optim\.lr_scale` "
         r"\(known: low, high, log, choices, int\)"),
        (MINIMAL + "scales:\n  paper: [x=1]\n", r"scales\.paper: must be a mapping with any of the keys common, arms"),
        # the rules across keys
        (MINIMAL.replace("control: a", "control: c"), r"control: 'c' is not one of the arms: a, b"),
        ("question: q\ncontrol: a\narms: {}\n", r"arms: must name at least one arm"),
        (MINIMAL.replace("b: [x=1]", "b: [x=1, mlp]"), r"arms\.b\[1\]: 'mlp' is not a Hydra override: write key=value"),
        (MINIMAL + "common: [model/connector mlp]\n", r"common\[0\]: 'model/connector mlp' is not a Hydra override"),
        (MINIMAL.replace("seeds: [0]", "seeds: []"), r"seeds: must list at least one seed"),
        (MINIMAL.replace("seeds: [0]", "seeds: [0, 0]"), r"seeds: 0 is listed twice"),
        (MINIMAL.replace("[count]", "[count, count]"), r"metrics: 'count' is listed twice"),
        (MINIMAL + "tune: {trials: 0}\n", r"tune\.trials: must be a positive integer, got 0"),
        (MINIMAL + "tune: {params: {seed: {low: 1, high: 2}}}\n", r"tune\.params\.seed: seed cannot be tuned"),
        (MINIMAL + "tune: {params: {a.b: {choices: [1, 2], low: 1}}}\n", r"tune\.params\.a\.b: `choices` cannot be "
                                                                         r"combined with low"),
        # YAML alone keeps the last of two equal keys, at any depth: the file is refused, naming key and line
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms:\n  a: []\n  b: []\n  a: [x=1]\n",
         r"line 8: key 'a' is given twice in one mapping \(first at line 6\)"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: []}\ntune:\n  steps: 2\n  steps: 3\n",
         r"line 8: key 'steps' is given twice"),
        (MINIMAL.replace("b: [x=1]", "a/b: []"), r"arms: 'a/b' cannot be"),
        (MINIMAL.replace("b: [x=1]", "..: []"), r"arms: '\.\.' cannot be"),
        (MINIMAL.replace("b: [x=1]", "-x: []"), r"arms: '-x' cannot be"),
        (MINIMAL.replace("b: [x=1]", "'a b': []"), r"arms: 'a b' cannot be"),
        (MINIMAL.replace("b: [x=1]", "1: []"), r"arms: key 1 is not a name: write it in quotes"),
        ("- a\n", r"expected a mapping with the keys question, control, arms"),
    ],
)
def test_malformed_files_are_refused_naming_file_and_key(tmp_path, text, expected):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(AblationError, match=expected) as err:
        load_ablation(tmp_path, "bad")
    assert str(err.value).startswith(f"{tmp_path / 'bad.yaml'}: ")
    assert "Traceback" not in str(err.value) and "full_key" not in str(err.value)  # no OmegaConf text


def test_every_shipped_file_fits_the_schema():
    for name in available(ROOT / "ablations"):
        file = read_ablation_file(ROOT / "ablations" / f"{name}.yaml")
        spec = load_ablation(ROOT / "ablations", name)
        assert spec.seeds and spec.metrics and spec.control in spec.arms, name  # every shipped file names its own
        assert len(set(spec.seeds)) >= 3, name  # a paired t-test over seeds with at least 2 df
        assert spec.arms == {arm: tuple(overrides) for arm, overrides in file.arms.items()}


def test_overrides_keep_their_interpolations_for_hydra(tmp_path):
    (tmp_path / "ok.yaml").write_text(MINIMAL.replace("b: [x=1]", "b: ['x=${model.lm.hidden}', '~y', 'z=\\\\${w}']"))
    assert load_ablation(tmp_path, "ok").arms["b"] == ("x=${model.lm.hidden}", "~y", "z=\\\\${w}")


def test_seeds_and_metrics_default_from_the_run_config_and_its_suite(tmp_path, compose_fn):
    (tmp_path / "toy.yaml").write_text("question: q\ncontrol: mlp\narms: {mlp: [model/connector=mlp]}\n")
    spec = load_ablation(tmp_path, "toy")
    assert spec.seeds is None and spec.metrics is None
    with pytest.raises(AblationError, match="toy.yaml: seeds are left to the run config"):
        spec.meta()
    suite = compose_fn([]).data.suite
    benchmarks = tuple(instantiate(suite).task_metrics())
    assert benchmarks and with_run_defaults(spec, compose_fn).meta()["metrics"] == list(benchmarks)
    jobs = plan_sweep(spec, compose_fn)
    # three seeds from conf/train.yaml's `seed` on
    assert [(job.run.arm, job.run.seed) for job in jobs] == [("mlp", 0), ("mlp", 1), ("mlp", 2)]
    # The run config as the sweep's command line makes it: its seed, and the benchmarks its eval.tasks names.
    extra = ("seed=3", "eval.tasks=[synth_count,synth_ocr]")
    resolved = with_run_defaults(spec, compose_fn, extra)
    assert resolved.seeds == (3, 4, 5) and resolved.metrics == ("synth_count", "synth_ocr")
    assert [job.config.seed for job in plan_sweep(spec, compose_fn, extra)] == [3, 4, 5]
    assert spec.tune.seed == 0  # the default run config's seed: `vlmlab tune` needs one before composing


def test_yaml_merge_keys_and_plain_arm_names_are_accepted(tmp_path):
    (tmp_path / "ok.yaml").write_text("question: q\ncontrol: a.b+c-d_e\nseeds: [0]\nmetrics: [count]\n"
                                      "notes: {base: &base {x: 1}, more: {<<: *base, x: 2}}\n"
                                      "arms: {a.b+c-d_e: [], '2': []}\n")
    spec = load_ablation(tmp_path, "ok")
    assert list(spec.arms) == ["a.b+c-d_e", "2"] and spec.notes["more"] == {"x": 2}


@pytest.mark.parametrize("axis", ["../toy", "/etc/hosts", "sub/toy", "..", ""])
def test_an_axis_that_is_a_path_is_refused_with_the_list(tmp_path, axis):
    (tmp_path / "ablations").mkdir()
    write(tmp_path / "ablations", "linear: [model/connector=linear]")
    write(tmp_path, "linear: [model/connector=linear]")  # ../toy from ablations/ would find this one
    with pytest.raises(AblationError, match=r"no ablation named .*; the ablations are: toy"):
        load_ablation(tmp_path / "ablations", axis)


def test_run_id_ignores_paths_and_labels_but_not_science(compose_fn):
    base = run_id(compose_fn([]))
    assert run_id(compose_fn(["paths.output_dir=/elsewhere", "logger=none", "ablation.arm=x"])) == base
    assert run_id(compose_fn(["data.num_workers=4"])) == base
    assert run_id(compose_fn(["model/connector=linear"])) != base
    assert run_id(compose_fn(["seed=1"])) != base
    assert run_id(compose_fn(["trainer.max_steps=7"])) != base
