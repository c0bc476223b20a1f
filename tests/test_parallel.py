"""Several processes per run: the global batch is the run, its split is not; rank 0 alone reports."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from torch import nn

from vlmlab.cli import main
from vlmlab.errors import ConfigError
from vlmlab.sweep.identity import run_id
from vlmlab.train.parallel import Parallelism, check_devices
from vlmlab.train.sampler import ResumableSampler
from vlmlab.train.sharding import fully_sharded, layer_classes


def test_the_global_batch_splits_into_devices_and_micro_batches(make_cfg):
    layout = Parallelism.from_config(make_cfg("data.batch_size=32", "trainer.devices=2", "+trainer.num_nodes=2",
                                              "performance.micro_batch_size=4"))
    assert (layout.world_size, layout.micro_batch, layout.accumulation) == (4, 4, 2)
    assert Parallelism.from_config(make_cfg("data.batch_size=32", "trainer.devices=4")).micro_batch == 8


@pytest.mark.parametrize("overrides, key", [
    (["data.batch_size=6", "trainer.devices=4"], "data.batch_size"),
    (["data.batch_size=8", "performance.micro_batch_size=3"], "data.batch_size"),
    (["data.batch_size=8", "performance.micro_batch_size=0"], "performance.micro_batch_size"),
    (["trainer.devices=[]"], "trainer.devices"),
])
def test_a_batch_that_does_not_split_is_refused_naming_the_key(make_cfg, overrides, key):
    with pytest.raises(ConfigError) as err:
        Parallelism.from_config(make_cfg(*overrides))
    assert err.value.key == key


def test_identity_holds_the_global_batch_not_the_devices(make_cfg):
    one = run_id(make_cfg("data.batch_size=16"))
    assert run_id(make_cfg("data.batch_size=16", "trainer=ddp", "trainer.accelerator=cpu",
                           "trainer.precision=32-true", "trainer.devices=8", "trainer.num_nodes=2")) == one
    assert run_id(make_cfg("data.batch_size=16", "performance.micro_batch_size=2",
                           "performance.compile=true")) == one
    assert run_id(make_cfg("data.batch_size=32")) != one, "another global batch is another run"
    assert run_id(make_cfg("data.batch_size=16", "trainer.precision=bf16-true")) != one


@pytest.mark.parametrize("world, micro", [(2, 4), (4, 2), (3, 1)])
def test_the_processes_share_one_order_step_by_step(world, micro):
    single = ResumableSampler(60, seed=3, chunk=micro * world)
    shards = []
    for rank in range(world):
        sampler = ResumableSampler(60, seed=3, chunk=micro)
        sampler.shard(rank, world)
        shards.append(list(sampler))
    global_batch = micro * world
    steps = len(shards[0]) // micro
    order = list(single)
    for step in range(steps):
        taken = [i for shard in shards for i in shard[step * micro:(step + 1) * micro]]
        assert sorted(taken) == sorted(order[step * global_batch:(step + 1) * global_batch])
    assert len({len(s) for s in shards}) == 1, "every process runs the same number of batches"


def test_a_resume_continues_each_shard_at_the_global_position():
    reference = []
    for rank in range(2):
        sampler = ResumableSampler(40, seed=1, chunk=4)
        sampler.shard(rank, 2)
        reference.append(list(sampler))
    for rank in range(2):
        sampler = ResumableSampler(40, seed=1, chunk=4)
        sampler.shard(rank, 2)
        sampler.resume_at(0, consumed=16)  # two steps of a global batch of 8
        assert list(sampler) == reference[rank][8:]


def test_fsdp_wraps_the_encoder_and_decoder_layers(make_cfg):
    from vlmlab.models.build import check_model_config

    cfg = make_cfg("model/fusion=cross_attention")
    model = check_model_config(cfg.model, 32)
    names = {cls.__name__ for cls in layer_classes(model)}
    assert names == {"SiglipEncoderLayer", "LlamaDecoderLayer"}
    with pytest.raises(ConfigError, match="no layer classes"):
        fully_sharded(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_gpu_trainer_is_refused_without_cuda_before_anything_is_written(checkout, cache_dir, capsys):
    assert main(["train", "trainer=gpu", f"paths.cache_dir={cache_dir}", "logger=none"]) == 2
    assert "trainer.accelerator" in capsys.readouterr().err
    assert not (checkout / "results").exists() and not (checkout / "outputs").exists()
    with pytest.raises(ConfigError, match="no CUDA device"):
        from hydra import compose, initialize_config_dir

        from tests.conftest import CONF
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            check_devices(compose(config_name="train", overrides=["trainer=fsdp"]))


TOY = """
question: Does the connector matter?
control: mlp
seeds: [0]
metrics: [synth_count, synth_vqa]
common: [trainer.max_steps=3, data.batch_size=4, eval.limit_per_task=2, eval.max_new_tokens=3, logger=none,
         trainer.log_every_n_steps=1, trainer=ddp, trainer.accelerator=cpu, trainer.precision=32-true,
         trainer.devices=2, performance.micro_batch_size=1, data.num_workers=0, performance.pin_memory=false]
arms:
  mlp: [model/connector=mlp]
"""


@pytest.mark.slow  # two gloo processes for 30 to 50 s: in the slow tier, run by CI after `make test`
def test_a_two_process_ddp_sweep_writes_one_record_per_run_and_a_table(checkout, cache_dir, monkeypatch, make_cfg):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two processes on two cores
    (checkout / "ablations" / "toy.yaml").write_text(TOY)
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}"]) == 0
    runs = checkout / "results" / "runs" / "toy"
    records = sorted(runs.glob("*/*.json"))
    assert [p.parent.name for p in records] == ["mlp"], "two processes, one record"
    for path in records:
        record = json.loads(path.read_text())
        assert record["status"] == "done" and record["cost"]["devices"] == 2
        cost = record["cost"]
        assert (cost["micro_batch_size"], cost["accumulation"], cost["train_images"]) == (1, 2, 12)
        log = list(csv.DictReader(io.StringIO(path.with_suffix(".metrics.csv").read_text())))
        assert [row["step"] for row in log if row["train/loss"]] == ["0", "1", "2"], "one loss row per step"
        assert len(list(path.parent.glob("*.predictions.jsonl"))) == 1
    assert (checkout / "results" / "tables" / "toy.md").exists()
    assert not list((checkout / "outputs" / "runs").rglob("*.ckpt")), "a done run keeps no checkpoint"

    # The same run in one process, whole batches: 2 processes × 2 micro-batches of 1 train the same steps, each
    # the one mean over the same global batch.
    from vlmlab.train.run import train_and_evaluate

    alone = train_and_evaluate(make_cfg("trainer.max_steps=3", "data.batch_size=4", "eval.limit_per_task=2",
                                        "eval.max_new_tokens=3", "trainer.log_every_n_steps=1",
                                        "model/connector=mlp"), checkout / "alone", "x")
    single = [float(r["train/loss"]) for r in csv.DictReader(io.StringIO(alone.loss_log)) if r["train/loss"]]
    assert [float(row["train/loss"]) for row in log if row["train/loss"]] == pytest.approx(single, rel=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_sweep_asking_for_gpus_here_is_refused_before_its_plan(checkout, cache_dir, capsys):
    (checkout / "ablations" / "toy.yaml").write_text(TOY.replace("trainer.accelerator=cpu, ", ""))
    assert main(["sweep", "toy", f"paths.cache_dir={cache_dir}"]) == 2
    err = capsys.readouterr().err
    assert "ablations/toy.yaml: arm 'mlp': trainer.accelerator" in err and "no CUDA device" in err
    assert not (checkout / "results").exists()


def test_several_nodes_without_a_launcher_on_each_are_refused(make_cfg, monkeypatch):
    for variable in ("LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(variable, raising=False)
    cfg = make_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.num_nodes=2",
                   "data.batch_size=8")
    with pytest.raises(ConfigError) as err:
        check_devices(cfg)
    assert err.value.key == "trainer.num_nodes" and "hydra/launcher=slurm" in str(err.value)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # one task of a SLURM job (srun sets both): the launcher started
    monkeypatch.setenv("SLURM_PROCID", "3")  # every rank
    check_devices(cfg)
