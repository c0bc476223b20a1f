"""The small-VLM papers' files at their own scales (`+scale=mobilevlm | llava_phi | mm15`): every arm plans on the
real models' configs (tests/fixtures/hub, built on the meta device), with the papers' sizes, token counts and steps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vlmlab.models.build import check_model_config, instantiate_group
from vlmlab.sweep.ablation import AblationError, available, load_ablation
from vlmlab.sweep.plan import plan_sweep
from vlmlab.train.stages import resolve_stages

from .conftest import ROOT
from .test_paper_scale import SCALES, adaptation, base_parameters, conf, hub, scales_of  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # planning 18 arms of 1.7B to 3B models on meta: the slow tier, as the smoke test

# Parameters from the fixtures' config.json, as the papers give them (MobileLLaMA 1.4B, Phi-2 2.7B).
PHI2, MOBILELLAMA_1_4B = 2_779_683_840, 1_364_297_728
TOWERS = {"CLIPVisionModel": 303_507_456, "SiglipVisionModel": 412_987_248}  # CLIP ViT-L/14-336, SigLIP-SO400M
FILES = {"mobile_connector": "mobilevlm", "two_stage": "llava_phi", "sft_mixture": "mm15", "cpt_ocr": "mm15",
         "anyres": "mm15"}


@pytest.fixture(scope="module")
def planned(hub, conf):  # noqa: F811 (the imported fixtures)
    """Each file planned at its scale as the sweep plans it (one seed), with each arm's model as its last stage
    builds it on the meta device (what planning checked; cached, so built once)."""
    plans = {}
    for name, scale in FILES.items():
        spec = load_ablation(ROOT / "ablations", name).at_scale(scale, SCALES)
        jobs = plan_sweep(replace(spec, seeds=spec.seeds[:1]), conf, (f"+scale={scale}",))
        plans[name] = {}
        for job in jobs:
            last = resolve_stages(job.config)[-1].config
            images = instantiate_group("data.image", last.data.image, _convert_="all")
            plans[name][job.run.arm] = (job.config, check_model_config(last.model, images.tower_size))
    return plans


def test_the_small_vlm_files_are_exactly_those_naming_these_scales():
    assert {name for name in FILES} == {name for name in available(ROOT / "ablations")
                                        if scales_of(name) & set(FILES.values())}
    assert all(scales_of(name) == {scale} for name, scale in FILES.items())


def test_every_arm_plans_on_the_papers_models(planned):
    for name, arms in planned.items():
        assert set(arms) == set(load_ablation(ROOT / "ablations", name).arms), name
        for arm, (cfg, model) in arms.items():
            where = f"{name}/{arm}"
            assert cfg.scale.name == FILES[name], where
            assert base_parameters(model.lm) == (MOBILELLAMA_1_4B if FILES[name] == "mobilevlm" else PHI2), where
            assert base_parameters(model.vision) == TOWERS[type(model.vision.encoder).__name__], where
            assert cfg.data.suite.probes, where


def test_mobilevlm_reducers_keep_a_quarter_of_clip_patches(planned):
    tokens = {arm: model.visual_tokens([(336, 336)]) for arm, (_, model) in planned["mobile_connector"].items()}
    assert tokens == {"mlp": 576, "ldp": 144, "ldpv2": 144, "pixel_shuffle": 144, "avg_pool": 144}


def test_the_recipes_stages_at_scale_train_as_the_papers_did(planned):
    for name, arm in (("mobile_connector", "ldp"), ("two_stage", "two_stage")):
        cfg, model = planned[name][arm]
        align, instruct = resolve_stages(cfg)
        assert (align.config.trainer.max_steps, instruct.config.trainer.max_steps) == (4360, 5200)
        assert dict(align.config.data.mixture) == {"caption": 1.0}
    # the model planning builds is the last stage's: tower frozen, LM trained fully
    _, model = planned["two_stage"]["two_stage"]
    assert (adaptation(model.vision.encoder), adaptation(model.lm.model)) == ("frozen", "full")


def test_arms_of_one_file_train_the_same_steps(planned):
    for name in ("two_stage", "cpt_ocr"):
        totals = {arm: sum(s.config.trainer.max_steps for s in resolve_stages(cfg))
                  for arm, (cfg, _) in planned[name].items()}
        assert len(set(totals.values())) == 1, (name, totals)


def test_a_small_vlm_file_is_refused_at_the_idefics2_scale():
    with pytest.raises(AblationError, match="mobile_connector.yaml: runs at the scales mobilevlm"):
        load_ablation(ROOT / "ablations", "mobile_connector").at_scale("paper", SCALES)


def test_mobilevlm_shapes_rebuild_its_backbones_with_random_weights(conf):  # noqa: F811 (the imported fixture)
    """`+shapes=mobilevlm_1b` (latency at the paper's shapes without the hub) builds the scale's two backbones at
    their hub sizes from configs alone: the tower to the parameter, the LM but for its vocabulary (the suite's)."""
    spec = load_ablation(ROOT / "ablations", "mobile_connector").at_scale("mobilevlm", SCALES)
    jobs = plan_sweep(replace(spec, seeds=spec.seeds[:1]), conf, ("+scale=mobilevlm", "+shapes=mobilevlm_1b"))
    job = next(job for job in jobs if job.run.arm == "ldp")
    last = resolve_stages(job.config)[-1].config
    assert last.model.vision.pretrained is None and last.model.lm.pretrained is None
    images = instantiate_group("data.image", last.data.image, _convert_="all")
    model = check_model_config(last.model, images.tower_size)
    assert base_parameters(model.vision) == TOWERS["CLIPVisionModel"]
    vocabulary = model.lm.model.get_input_embeddings().num_embeddings
    hub_vocabulary, width = 32_000, 2048  # MobileLLaMA's, untied: an embedding and a head of vocabulary x width
    assert base_parameters(model.lm) == MOBILELLAMA_1_4B + 2 * width * (vocabulary - hub_vocabulary)
    assert model.visual_tokens([(336, 336)]) == 144
