"""Copying a run another ablation finished (vlmlab.launch.reuse), without training: which records prove
themselves, and that a failed copy leaves nothing behind."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

import vlmlab.launch.reuse as reuse
from vlmlab.results.records import read_record, record_path, sibling_paths, write_record
from vlmlab.run_record import ArmLabel, RunRecord
from vlmlab.sweep.identity import run_id

CONFIG = {"model": {"connector": "mlp"}, "seed": 0}
RID = run_id(OmegaConf.create(CONFIG))


def finished(results, axis="first", arm="a", seed=0, status="done", config=CONFIG) -> RunRecord:
    record = RunRecord(run_id=RID, ablation=ArmLabel(axis, arm), seed=seed, status=status, config=config,
                       metrics={"synth_vqa": 50.0})
    path = write_record(results, record)
    for sibling in sibling_paths(path).values():
        sibling.write_bytes(b"step,loss\r\n1,2.0\r\n")
    return record


def test_only_a_done_genuine_record_of_the_same_seed_under_another_axis_is_found(tmp_path):
    assert reuse.finished_elsewhere(tmp_path, "second", RID, 0) is None
    finished(tmp_path, status="failed")
    finished(tmp_path, axis="other", seed=1)
    finished(tmp_path, axis="tampered", config=CONFIG | {"seed": 5})  # its config no longer hashes to RID
    assert reuse.finished_elsewhere(tmp_path, "second", RID, 0) is None
    finished(tmp_path, axis="second")  # its own axis is not "elsewhere"
    assert reuse.finished_elsewhere(tmp_path, "second", RID, 0) is None
    finished(tmp_path, axis="zeta")
    path, record = reuse.finished_elsewhere(tmp_path, "second", RID, 0)
    assert path == record_path(tmp_path, "zeta", "a", RID) and record.done


def test_a_copy_is_relabelled_and_a_failed_one_leaves_no_file(tmp_path, monkeypatch):
    finished(tmp_path)
    source, record = reuse.finished_elsewhere(tmp_path, "second", RID, 0)
    ablation = {"name": "second", "arm": "b", "command": "vlmlab sweep second"}
    path = reuse.copy_finished_run(tmp_path, source, record, ablation)
    copy = read_record(path)
    assert copy.ablation == ArmLabel("second", "b") and copy.config["ablation"] == ablation
    assert copy.metrics == record.metrics and copy.run_id == RID
    assert all(s.read_bytes() == b"step,loss\r\n1,2.0\r\n" for s in sibling_paths(path).values())

    def full_disk(*args):
        raise OSError("No space left on device")

    monkeypatch.setattr(reuse, "write_record", full_disk)
    with pytest.raises(OSError):
        reuse.copy_finished_run(tmp_path, source, record, ablation | {"arm": "c"})
    failed_arm = tmp_path / "runs" / "second" / "c"
    assert not failed_arm.exists() or not any(failed_arm.iterdir()), "the answers were copied, then removed"
