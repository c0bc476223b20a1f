"""Serving latency (vlmlab.eval.latency): what each timed request runs, what a run records, the table's columns,
the run identity, and `make bench-latency`. No test asserts a speed: timings belong to benchmarks."""

from __future__ import annotations

import io
import json
import math
import re

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf, open_dict

from vlmlab.bench import latency as bench
from vlmlab.data.collate import Example, VLMCollator
from vlmlab.data.images import SquareResize
from vlmlab.data.tokenizer import IMAGE_TOKEN, synthetic_tokenizer
from vlmlab.errors import ConfigError
from vlmlab.eval.latency import LatencySettings, measure_latency, spread, unreachable_token
from vlmlab.models.build import build_vlm
from vlmlab.results import load_axis, render_csv, render_latex, render_markdown
from vlmlab.sweep.identity import hashes_to, run_id
from vlmlab.train.run import train_and_evaluate

from .conftest import ROOT
from .test_tables import table_row_of, write_with_costs

TEMPLATE = "question: {prompt} answer:"
SIZE = 32


@pytest.fixture
def served(make_cfg, tmp_path):
    """A tiny random-weight VLM, its collator, and test items of three tasks (task-ordered, as a split is)."""
    tokenizer = synthetic_tokenizer([TEMPLATE.format(prompt="what word is written?"), " cat", " 3"], tmp_path)
    torch.manual_seed(0)
    model = build_vlm(make_cfg().model, len(tokenizer), tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), SIZE)
    collator = VLMCollator(tokenizer, SquareResize(size=SIZE), model.sequence_tokens, template=TEMPLATE)
    examples = [Example(torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8), task, "what word is written?",
                        "cat") for task in ("a", "b", "c") for _ in range(4)]
    return model, collator, examples


class Recorder:
    """Counts the LM's forward passes and records each generate call's prompt batch and new tokens."""

    def __init__(self, model) -> None:
        self.forwards = 0
        self.calls: list[tuple[int, int]] = []  # (prompts in the batch, new tokens generated)
        model.lm.model.register_forward_hook(self._forward)
        real = model.generate

        def generate(**batch):
            out = real(**batch)
            self.calls.append((batch["input_ids"].shape[0], out.shape[1]))
            return out

        model.generate = generate

    def _forward(self, module, args, output) -> None:
        self.forwards += 1


def always_end(model, eos: int) -> None:
    """Make the LM score `eos` highest at every position: a model that would answer with an empty string."""
    def hook(module, args, output):
        output.logits[..., eos] = 1e4
        return output

    model.lm.model.register_forward_hook(hook)


def test_each_request_is_one_prompt_decoding_exactly_new_tokens_even_when_the_model_would_stop(served):
    model, collator, examples = served
    eos = collator.tokenizer.eos_token_id
    always_end(model, eos)
    stops_at_once = model.generate(**collator.generation_batch(examples[:1]), max_new_tokens=8, eos_token_id=eos,
                                   pad_token_id=collator.tokenizer.pad_token_id)
    assert stops_at_once.shape[1] == 1, "with its own end of sequence, this model answers one token"
    recorder = Recorder(model)
    latency = measure_latency(model, collator, examples, LatencySettings(samples=3, new_tokens=5))
    # One untimed warm-up, then 3 timed requests; each a batch of one prompt, 5 new tokens, one LM forward per token
    # (the prefill makes the first; the KV cache makes each later one a forward of its own).
    assert recorder.calls == [(1, 5)] * 4
    assert recorder.forwards == 4 * 5
    assert latency.requests == 3 and latency.new_tokens == 5
    for value in (latency.ttft_ms, latency.decode_tokens_per_s):
        assert value > 0 and math.isfinite(value)
    assert unreachable_token(model) == model.lm.model.get_output_embeddings().weight.shape[0]
    assert model.training, "measured in eval mode, handed back in the mode it came in"


def test_zero_samples_time_nothing(served):
    model, collator, examples = served
    recorder = Recorder(model)
    assert measure_latency(model, collator, examples, LatencySettings(samples=0)) is None
    assert measure_latency(model, collator, [], LatencySettings(samples=8)) is None
    assert recorder.forwards == 0 and recorder.calls == []


def test_timed_items_spread_over_every_task_of_the_split(served):
    _, _, examples = served
    assert [ex.task for ex in spread(examples, 3)] == ["a", "b", "c"]
    assert [ex.task for ex in spread(examples, 6)] == ["a", "a", "b", "b", "c", "c"]
    assert spread(examples, 100) == examples


@pytest.mark.parametrize(("block", "key"), [
    ({"samples": -1}, "latency.samples"), ({"samples": 1.5}, "latency.samples"), ({"samples": True}, "latency.samples"),
    ({"new_tokens": 1}, "latency.new_tokens"), ({"tokens": 4}, "latency.tokens"),
])
def test_bad_settings_are_refused_naming_the_key(block, key):
    with pytest.raises(ConfigError) as refused:
        LatencySettings.from_config(block)
    assert refused.value.key == key
    assert LatencySettings.from_config(None) == LatencySettings()  # an older config without the block


def test_the_latency_block_is_outside_the_run_identity(make_cfg):
    base = make_cfg()
    assert OmegaConf.to_container(base.latency) == {"samples": 8, "new_tokens": 16}
    assert run_id(make_cfg("latency.samples=0", "latency.new_tokens=4")) == run_id(base)
    without = base.copy()
    with open_dict(without):
        del without["latency"]
    assert run_id(without) == run_id(base), "a config from before the block has the id it had"
    # The committed records keep their ids: each hashes to its own with the block (those trained since it came)
    # and without it (those trained before it), whatever its settings.
    paths = sorted((ROOT / "results" / "runs").glob("*/*/*[0-9a-f].json"))
    assert paths
    for path in paths:
        record = json.loads(path.read_text())
        before = {key: value for key, value in record["config"].items() if key != "latency"}
        assert hashes_to(before, record["run_id"]), path
        assert hashes_to(before | {"latency": {"samples": 2, "new_tokens": 4}}, record["run_id"]), path
    assert any("latency" in json.loads(path.read_text())["config"] for path in paths), "the sweeps record it"


RUN = ("trainer.max_steps=1", "data.batch_size=2", "data.suite.train_images=40", "eval.limit_per_task=1",
       "eval.max_new_tokens=2", "model/connector=mlp")


def test_a_run_records_its_latency_and_samples_0_records_none(make_cfg, tmp_path):
    timed = train_and_evaluate(make_cfg(*RUN, "latency.samples=2", "latency.new_tokens=3"), tmp_path / "a", "a")
    assert timed.cost.ttft_ms > 0 and math.isfinite(timed.cost.ttft_ms)
    assert timed.cost.decode_tokens_per_s > 0 and math.isfinite(timed.cost.decode_tokens_per_s)
    untimed = train_and_evaluate(make_cfg(*RUN, "latency.samples=0"), tmp_path / "b", "b")
    assert untimed.metrics == timed.metrics, "timing comes after the scores and changes none"
    assert not {"ttft_ms", "decode_tokens_per_s"} & set(untimed.cost.to_dict())


def test_a_bad_latency_setting_fails_before_training(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="latency.new_tokens"):
        train_and_evaluate(make_cfg(*RUN, "latency.new_tokens=1"), tmp_path / "run", "x")
    assert not (tmp_path / "run").exists()


def test_latency_columns_appear_only_where_a_record_measured_them(tmp_path):
    write_with_costs(tmp_path, lambda arm, seed: {})
    plan, runs, _ = load_axis(tmp_path, "pooling")
    assert "TTFT" not in render_markdown(plan, runs) and "ttft" not in render_csv(plan, runs)
    write_with_costs(tmp_path, lambda arm, seed: {} if arm == "linear" else {
        "ttft_ms": 10.0 + seed, "decode_tokens_per_s": 200.0})
    plan, runs, _ = load_axis(tmp_path, "pooling")
    markdown = render_markdown(plan, runs)
    assert "| infer FLOPs | TTFT ms | tok/s | train s |" in markdown
    assert table_row_of(markdown, "perceiver").endswith("| – | 10.5 | 200.0 | 10.5 | 5.0 | – | 2/2 |")
    assert table_row_of(markdown, "linear").endswith("| – | – | – | 10.5 | 5.0 | – | 2/2 |")
    assert "TTFT ms: time to the first answer token" in markdown
    frame = pd.read_csv(io.StringIO(render_csv(plan, runs))).set_index("arm")
    assert list(frame.columns[-2:]) == ["ttft_ms_mean", "decode_tokens_per_s_mean"]
    assert frame.loc["mean", "ttft_ms_mean"] == 10.5 and pd.isna(frame.loc["linear", "decode_tokens_per_s_mean"])
    assert r"TTFT ms & tok/s" in render_latex(plan, runs)


TOY = """
question: Does the connector matter?
control: mlp
seeds: [0, 1]
metrics: [synth_count]
common: [data.suite.train_images=40, eval.limit_per_task=1, latency.samples=2, latency.new_tokens=3, logger=none]
arms:
  mlp: [model/connector=mlp]
  pixel_shuffle: [model/connector=pixel_shuffle]
"""


def test_bench_latency_prints_one_line_per_arm_and_writes_no_record(checkout, cache_dir, capsys, monkeypatch):
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    timed = []
    real = bench.measure_latency
    monkeypatch.setattr(bench, "measure_latency", lambda *args: timed.append(args[-1]) or real(*args))
    assert bench.main(["toy", f"paths.cache_dir={cache_dir}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("toy: serving latency on cpu (") and "median of 2 test items, 3 new tokens" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == ["mlp", "pixel_shuffle"], "one line per arm, not per seed"
    number = r"([0-9.]+)"
    for arm, tokens in (("mlp", 64), ("pixel_shuffle", 16)):
        found = re.search(rf"visual tokens/image +{tokens} +TTFT +{number} ms +decode +{number} tok/s +"
                          r"\(vision random, lm random\)", rows[arm])
        assert found, rows[arm]
        assert all(float(value) > 0 for value in found.groups())
    assert timed == [LatencySettings(samples=2, new_tokens=3)] * 2
    assert not (checkout / "results").exists() and not (checkout / "outputs").exists()


def test_bench_latency_refuses_an_unknown_axis(checkout, capsys):
    assert bench.main(["nosuch"]) == 2
    assert "no ablation named 'nosuch'" in capsys.readouterr().err


def test_a_sweep_refuses_a_bad_latency_setting_when_it_plans(make_cfg):
    from vlmlab.errors import ConfigError
    from vlmlab.sweep.plan import check_config

    with pytest.raises(ConfigError) as err:
        check_config(make_cfg("latency.samples=-2"))
    assert "latency.samples" in str(err.value)
