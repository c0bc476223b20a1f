"""Paper scale (`+scale=paper`): every ablation file plans on the real models' configs, and `scales` blocks parse.

The hub models are read from tests/fixtures/hub, a Hugging Face cache holding the real `config.json` of each
model the paper-scale configs name (no weights): the models are built on the meta device, as every sweep checks
its arms, so sizes are the real ones and nothing is downloaded or allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import huggingface_hub.constants
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import vlmlab.sweep.plan as plan_module
from vlmlab.cli import main
from vlmlab.models.build import check_model_config
from vlmlab.models.flops import training_flops
from vlmlab.models.vlm import VisionLanguageModel
from vlmlab.sweep.ablation import AblationError, available, load_ablation
from vlmlab.sweep.plan import Job, plan_sweep
from vlmlab.train.budget import Budget, SampleCost
from vlmlab.tune.best import tuned_overrides, write_best

from .conftest import CONF, ROOT

HUB = Path(__file__).parent / "fixtures" / "hub"
SCALES = sorted(path.stem for path in (CONF / "scale").glob("*.yaml"))
GLOBAL_BATCH = 256  # conf/scale/paper.yaml
MISTRAL, LLAMA = 7_241_732_096, 6_738_415_616  # parameters, from the fixtures' config.json (vocabulary 32,000)
TOWERS = {"SiglipVisionModel": 412_987_248, "CLIPVisionModel": 630_766_080, "Dinov2Model": 304_368_640}
# What the paper trained each backbone with, per file (and per arm for Table 3); LoRA where it is not listed.
FROZEN_FILES = {"lm_backbone", "vision_backbone", "connector", "connector_matched"}


def scales_of(name: str) -> set[str]:
    """The scales a shipped ablation file has blocks for."""
    return set(yaml.safe_load((ROOT / "ablations" / f"{name}.yaml").read_text()).get("scales") or {})


# The files that run at the Idefics2 paper's scale: a block for it, or no block at all (the files of other papers'
# questions run at their own scales only: tests/test_small_vlm_scales.py).
PAPER_FILES = [name for name in available(ROOT / "ablations") if not scales_of(name) or "paper" in scales_of(name)]


@pytest.fixture(scope="module")
def hub() -> Iterator[None]:
    """The hub cache is the fixtures, offline. huggingface_hub reads both settings once, at import."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(HUB))
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        patch.setenv("HF_HUB_CACHE", str(HUB))  # for any child process
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def conf(tmp_path_factory) -> Callable[[list[str]], DictConfig]:
    """A compose function over conf/, with results in a scratch directory."""
    results = tmp_path_factory.mktemp("results")

    def _compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose(config_name="train", overrides=[f"paths.results_dir={results}", *overrides])

    return _compose


@dataclass(frozen=True)
class Planned:
    """One arm as the sweep planned it: its job and the model its planning built on the meta device."""

    job: Job
    model: VisionLanguageModel

    @property
    def config(self) -> DictConfig:
        return self.job.config


@pytest.fixture(scope="module")
def planned(hub, conf) -> dict[str, dict[str, Planned]]:
    """Every shipped ablation planned at paper scale as the sweep plans it (one seed: seeds change no config)."""
    built: list[VisionLanguageModel] = []

    def keep(*args, **kwargs) -> VisionLanguageModel:
        built.append(check_model_config(*args, **kwargs))
        return built[-1]

    plans = {}
    with pytest.MonkeyPatch.context() as patch:  # the models planning builds, kept to check their sizes
        patch.setattr(plan_module, "check_model_config", keep)
        for name in PAPER_FILES:
            spec = load_ablation(ROOT / "ablations", name).at_scale("paper", SCALES)
            built.clear()
            jobs = plan_sweep(replace(spec, seeds=spec.seeds[:1]), conf, ("+scale=paper",))
            assert len(built) == len(jobs), name  # one build per arm, in the order of its jobs
            plans[name] = {job.run.arm: Planned(job, model) for job, model in zip(jobs, built)}
    return plans


def parameters(module, trainable: bool = False) -> int:
    """Parameters of `module`, or only those that train."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def base_parameters(module) -> int:
    """Parameters of the pretrained weights, without LoRA / DoRA adapters."""
    return sum(p.numel() for name, p in module.named_parameters() if "lora_" not in name)


def adaptation(module) -> str:
    """How a backbone trains, read off the built module."""
    names = [name for name, _ in module.named_parameters()]
    if any("lora_magnitude_vector" in name for name in names):
        return "dora"
    if any("lora_A" in name for name in names):
        return "lora"
    return "frozen" if parameters(module, trainable=True) == 0 else "full"


def expected_adaptation(axis: str, arm: str) -> tuple[str, str]:
    """(vision tower, LM) as the paper trained them (the ablation files' comments say which table did what)."""
    if axis in FROZEN_FILES or arm.endswith("_frozen"):
        return "frozen", "frozen"
    return ("lora", "dora") if axis == "image_splitting" else ("lora", "lora")


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_every_arm_of_every_file_plans_at_paper_scale(planned, conf):
    fsdp = conf(["trainer=fsdp"]).trainer.strategy
    for axis, jobs in planned.items():
        spec = load_ablation(ROOT / "ablations", axis)
        dropped = set(spec.scales["paper"].drop) if "paper" in spec.scales else set()
        assert set(jobs) == set(spec.arms) - dropped, axis
        for arm, run in jobs.items():
            cfg, model, where = run.config, run.model, f"{axis}/{arm}"
            assert cfg.scale.name == "paper", where
            assert cfg.data.batch_size == GLOBAL_BATCH and cfg.trainer.strategy == fsdp, where
            assert cfg.trainer.max_steps == (5500 if axis == "ocr_data" else 6000), where
            assert cfg.eval.shots == 4, where
            lm_size = LLAMA if cfg.model.lm.pretrained == "huggyllama/llama-7b" else MISTRAL
            assert base_parameters(model.lm) == lm_size, where
            assert base_parameters(model.vision) == TOWERS[type(model.vision.encoder).__name__], where
            adapted = adaptation(model.vision.encoder), adaptation(model.lm.model)
            assert adapted == expected_adaptation(axis, arm), where
            # Adapters are a small share of a 7B LM; frozen or adapted, its pretrained weights never train.
            assert parameters(model.lm, trainable=True) < 0.01 * lm_size, where


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_the_global_batch_splits_over_the_gpus(planned):
    from vlmlab.train.parallel import Parallelism

    for axis, jobs in planned.items():
        for run in jobs.values():
            layout = Parallelism.from_config(run.config)
            assert layout.global_batch == GLOBAL_BATCH and layout.accumulation >= 1, axis


# Table 3 of the paper: total parameters of each row, and trainable ones where the row is frozen.
TABLE_3 = {"ar_no_perceiver_frozen": (7.6e9, 5e6), "ar_frozen": (8.3e9, None), "xattn_frozen": (10e9, 2.3e9),
           "xattn_lora": (10e9, None), "ar_lora": (8.3e9, None)}


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
@pytest.mark.parametrize("arm", TABLE_3)
def test_architecture_arms_have_table_3_sizes(planned, arm):
    model = planned["architecture"][arm].model
    total, trainable = TABLE_3[arm]
    assert parameters(model) == pytest.approx(total, rel=0.02)
    if trainable is not None:  # printed to one significant figure: 5M, 2.3B
        assert parameters(model, trainable=True) == pytest.approx(trainable, rel=0.06)


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_vision_backbone_arms_differ_in_tower_and_resolution(planned):
    seen = {}
    for arm, run in planned["vision_backbone"].items():
        size = run.config.data.image.size
        seen[arm] = (type(run.model.vision.encoder).__name__, size, run.model.vision.grid(size, size))
    # each family's arm at tiny scale loads the paper's encoder of that family (the zoo's levels are no rows)
    assert seen == {"random_clip": ("CLIPVisionModel", 224, (16, 16)),
                    "vit_s": ("SiglipVisionModel", 378, (27, 27)), "random_dinov2": ("Dinov2Model", 224, (16, 16))}


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_lm_backbone_compares_llama_1_and_mistral_under_cross_attention(planned):
    jobs = planned["lm_backbone"]
    assert set(jobs) == {"lm_s", "lm_m"}  # the weaker and the stronger LM; the levels are no rows of Table 1
    for arm, expected in (("lm_s", "LlamaForCausalLM"), ("lm_m", "MistralForCausalLM")):
        model = jobs[arm].model
        assert type(model.lm.model).__name__ == expected
        assert type(model.vision.encoder).__name__ == "CLIPVisionModel"
        assert len(model.fusion.blocks) == 8  # before every 4th of 32 decoder layers


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_resolution_arms_are_the_papers_two(planned):
    jobs = planned["resolution"]
    assert {arm: run.config.data.image.size for arm, run in jobs.items()} == {"res_64": 378, "res_128": 756}
    assert all(run.config.data.suite.canvas == 768 for run in jobs.values())  # no arm upsamples its images
    assert {run.model.visual_tokens([(size, size)]) for run in jobs.values() for size in (378, 756)} == {64}


@pytest.mark.slow  # plans every file at paper scale (7B models on meta): the slow tier
def test_connector_matched_budget_buys_the_control_the_papers_steps(planned):
    """The tiny file's budget would buy one step of the 8B model; the paper block's buys ~6,000 of the control."""
    jobs = planned["connector_matched"]
    budget = Budget.from_config(jobs["perceiver"].config.budget)
    steps = {}
    for arm, run in jobs.items():
        for text in (15, 20, 30):  # text tokens a sample: Mistral's tokenizer on the suite's prompts, not measured
            flops = training_flops(run.model, [[(378, 378)]], text).training
            steps[arm, text] = budget.steps(run.config.trainer.max_steps, GLOBAL_BATCH, SampleCost(text, 0, flops))
    assert steps["perceiver", 20] == 6000
    assert 5500 <= steps["perceiver", 30] <= steps["perceiver", 15] <= 6300
    # 729 visual tokens a sample in the LM: the per-patch connectors get a sixth of the steps.
    assert {steps["linear", 20], steps["mlp", 20], steps["pixel_shuffle", 20]} == {986, 983, 6321}


def test_every_scale_names_itself_and_the_tiny_default_has_no_scale(conf):
    assert SCALES == ["llava_phi", "mm15", "mobilevlm", "paper"]
    for scale in SCALES:
        assert yaml.safe_load((CONF / "scale" / f"{scale}.yaml").read_text())["scale"] == {"name": scale}
    # No `scale` key at the tiny default: the run ids of every committed record stay what they are.
    assert "scale" not in conf([])


# --- the `scales` block of an ablation file ---

FILE = """
question: q
control: a
seeds: [0]
metrics: [synth_count]
common: [trainer.max_steps=3]
arms:
  a: [model/connector=mlp]
  b: [model/connector=linear]
  c: [model/connector=pixel_shuffle]
"""


def write(tmp_path: Path, scales: str) -> Path:
    (tmp_path / "toy.yaml").write_text(FILE + scales)
    return tmp_path


def test_a_scale_adds_its_overrides_after_the_files_and_drops_arms(tmp_path):
    spec = load_ablation(write(tmp_path, "scales:\n  paper:\n    common: [x=1]\n    arms: {b: [y=2]}\n"
                                         "    drop: [c]\n"), "toy")
    assert spec.at_scale(None, SCALES) is spec
    paper = spec.at_scale("paper", SCALES)
    assert paper.arms == {"a": ("model/connector=mlp",), "b": ("model/connector=linear", "y=2")}
    assert [run.overrides[:4] for run in paper.runs(("z=3",))] == [
        ("trainer.max_steps=3", "x=1", "model/connector=mlp", "z=3"),
        ("trainer.max_steps=3", "x=1", "model/connector=linear", "y=2"),
    ]
    assert paper.meta()["arms"] == ["a", "b"] and paper.meta()["scale"] == "paper"
    assert "scale" not in spec.meta()  # a tiny sweep's plan.json keeps its bytes
    # A file without a block for the scale runs its own arms there, on top of conf/scale/<name>.yaml.
    plain = load_ablation(write(tmp_path, ""), "toy").at_scale("paper", SCALES)
    assert plain.arms == spec.arms and plain.common == spec.common and plain.scale == "paper"

    # A file whose blocks name other scales only is for those models: refused at this one, naming them.
    other = load_ablation(write(tmp_path, "scales:\n  mobilevlm:\n    common: [x=1]\n"), "toy")
    with pytest.raises(AblationError, match=r"toy.yaml: runs at the scales mobilevlm .* not at 'paper'"):
        other.at_scale("paper", SCALES)
    assert other.at_scale("mobilevlm", SCALES).common[-1] == "x=1"


@pytest.mark.parametrize(
    ("scales", "expected"),
    [
        ("scales: [paper]\n", r"scales: must be a mapping of name -> a mapping"),
        ("scales:\n  paper: [x=1]\n", r"scales.paper: must be a mapping with any of the keys common, arms, drop"),
        ("scales:\n  paper:\n    comon: [x=1]\n", r"scales.paper.comon: key 'comon' is not a field"),
        ("scales:\n  paper:\n    arms: {d: [x=1]}\n", r"scales.paper.arms: 'd' is not one of the arms: a, b, c"),
        ("scales:\n  paper:\n    arms: {b: x=1}\n", r"scales.paper.arms.b: must be a list of strings, got 'x=1'"),
        ("scales:\n  paper:\n    common: x=1\n", r"scales.paper.common: must be a list of strings"),
        ("scales:\n  paper:\n    drop: [d]\n", r"scales.paper.drop: 'd' is not one of the arms"),
        ("scales:\n  paper:\n    drop: [b, b]\n", r"scales.paper.drop: 'b' is listed twice"),
        ("scales:\n  paper:\n    drop: [a]\n", r"the control arm 'a' cannot be dropped"),
        ("scales:\n  paper:\n    arms: {b: [x=1]}\n    drop: [b]\n", r"arm 'b' is both dropped and given overrides"),
        ("scales:\n  ../x: {}\n", r"scales: '\.\./x' cannot be a scale name"),
    ],
)
def test_bad_scales_are_refused_naming_file_and_key(tmp_path, scales, expected):
    with pytest.raises(AblationError, match=expected) as err:
        load_ablation(write(tmp_path, scales), "toy")
    assert str(tmp_path / "toy.yaml") in str(err.value)


def test_tuned_learning_rates_are_not_applied_at_a_scale(tmp_path):
    """best.json holds values tuned on the tiny models and does not say so: a 7B arm must not train at them."""
    spec = load_ablation(write(tmp_path, ""), "toy")
    arms = {arm: {"params": {"optim.lr_scale": 2.0}, "overrides": [*spec.common, *overrides],
                  "space": spec.tune.space()} for arm, overrides in spec.arms.items()}
    write_best(tmp_path / "results", "toy", arms)
    assert tuned_overrides(spec, tmp_path / "results")["a"][0] == "optim.lr_scale=2.0"
    assert tuned_overrides(spec.at_scale("paper", SCALES), tmp_path / "results") is None


def test_a_scale_that_conf_does_not_have_is_refused(tmp_path):
    spec = load_ablation(write(tmp_path, "scales:\n  papr: {}\n"), "toy")
    with pytest.raises(AblationError, match=r"toy.yaml: scales: papr is no option of conf/scale/ .*paper"):
        spec.at_scale(None, SCALES)
    with pytest.raises(AblationError, match=r"scale.name is 'huge', which is no option of conf/scale/"):
        load_ablation(write(tmp_path, ""), "toy").at_scale("huge", SCALES)


def test_the_sweep_takes_the_scale_from_its_arguments(hub, checkout, capsys):
    """`vlmlab sweep AXIS +scale=paper` plans the file's paper arms; a block for an unknown scale is refused."""
    ablations = checkout / "ablations"
    (ablations / "toy.yaml").write_text(FILE + "scales:\n  paper:\n    arms: {b: [model.connector.nosuchkey=1]}\n")
    assert main(["sweep", "toy", "+scale=paper"]) == 2  # refused while planning: nothing trains
    assert "toy.yaml: arm 'b': override 'model.connector.nosuchkey=1'" in capsys.readouterr().err
    GlobalHydra.instance().clear()
    # The tiny default also checks the scale names (and this file's bad arm would stop it before training).
    (ablations / "toy.yaml").write_text(FILE.replace("[model/connector=linear]", "[model.connector.nosuchkey=1]")
                                        + "scales:\n  papr: {}\n")
    assert main(["sweep", "toy"]) == 2
    assert "toy.yaml: scales: papr is no option of conf/scale/" in capsys.readouterr().err
    assert not (checkout / "results").exists()
