"""Ablation files: parsing, and bad arms refused before training with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from vlmlab.sweep.ablation import AblationError, available, load_ablation
from vlmlab.sweep.identity import run_id
from vlmlab.sweep.plan import plan_sweep

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
        ('bad: ["eval.tasks=[synth_count,nosuch]"]', r"arm 'bad': eval\.tasks: unknown task\(s\) nosuch; synthetic-v2.1 has"),
        ("bad: [data=synthetic_v2, data.mixture.nosuch=1]", r"arm 'bad': override 'data.mixture.nosuch=1'"),
        ("bad: [data=synthetic_v2, eval.tasks=null, +data.mixture.nosuch=1]",
         r"arm 'bad': data\.mixture: unknown training task\(s\) nosuch"),
        ("bad: [data=synthetic_v2, eval.tasks=null, data.mixture.caption=0, data.mixture.ocr=0, data.mixture.count=0, "
         "data.mixture.wide=0, data.mixture.vqa=0]", r"data\.mixture: every weight is 0"),
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {b: []}\n", "`control` is 'a'"),
        ("question: q\ncontrol: a\nseeds: []\nmetrics: [count]\narms: {a: []}\n", "`seeds`"),
        ("question: q\ncontrol: a\nmetrics: [count]\narms: {a: []}\n", "missing key `seeds`"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: model/connector=mlp}\n", "arms.a"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: []}\nsteps: 3\n", "unknown key"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count, count]\narms: {a: []}\n", "distinct benchmark names"),
        # YAML alone keeps the last of two equal keys, at any depth: the file is refused, naming key and line
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms:\n  a: []\n  b: []\n  a: [x=1]\n",
         r"line 8: key 'a' is given twice in one mapping \(first at line 6\)"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: []}\ntune:\n  steps: 2\n  steps: 3\n",
         r"line 8: key 'steps' is given twice"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], a/b: []}\n", r"arms: 'a/b' cannot be"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], ..: []}\n", r"arms: '\.\.' cannot be"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], -x: []}\n", r"arms: '-x' cannot be"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], 'a b': []}\n", r"arms: 'a b' cannot be"),
        ("question: q\ncontrol: a\nseeds: [0]\nmetrics: [count]\narms: {a: [], 1: []}\n", r"arms: 1 cannot be"),
    ],
)
def test_malformed_files_are_refused_naming_the_key(tmp_path, text, expected):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(AblationError, match=expected):
        load_ablation(tmp_path, "bad")


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
