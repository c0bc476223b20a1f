"""The task function Hydra launches: one (arm, seed) run, trained by one trainer, its record written whatever happens.

A run of several processes (DDP, FSDP) is one trainer: its processes come from SLURM or torchrun, or from
here (vlmlab.launch.ranks), and rank 0 alone evaluates and writes what the run produced.

A run holds a lock while it trains (vlmlab.launch.lock), so two sweeps of one ablation never train the same
run: the second skips it and reports who holds it. SIGTERM and SIGINT stop a run at its next checkpoint
(vlmlab.train.interrupt); it resumes exactly when the sweep is started again. A run that fails gets a
`failed` record and the sweep goes on. A trained run whose outputs cannot be written (a full disk, a
read-only folder) is reported with the path at fault, leaves no orphan file beside a missing record, and
keeps its final checkpoint, so the next sweep writes it without training again. A done run's checkpoints are
removed unless `checkpoint.keep` says otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import traceback
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vlmlab.errors import DivergedError
from vlmlab.results.records import (
    ANSWERS, LOSS_LOG, RecordError, atomic_write_text, is_done, newer_schema, read_record, record_path, sibling_paths,
    write_record,
)
from vlmlab.run_record import SCHEMA_VERSION, ArmLabel, Provenance, RunError, RunRecord
from vlmlab.sweep.identity import run_id
from vlmlab.launch.lock import RunLock, lock_path
from vlmlab.launch.provenance import provenance
from vlmlab.launch.reuse import copy_finished_run, finished_elsewhere
from vlmlab.launch.ranks import LOCK_HELD, processes_to_start, start_ranks
from vlmlab.train.checkpoints import remove_checkpoints
from vlmlab.train.interrupt import RunInterrupted, stop_on_signals
from vlmlab.train.parallel import global_rank

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Keep a sweep's console to one line per event: Lightning's banners and wandb's run summaries go."""
    import lightning  # noqa: F401  (Lightning sets its loggers to INFO when imported: quiet them after)

    os.environ.setdefault("WANDB_SILENT", "true")
    # Lightning 2.6 trips a torch deprecation of its own on every fit; it says nothing about the run.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_job(cfg: DictConfig) -> str:
    """Train and evaluate one run unless it is done or another process trains it; returns what happened:
    done, failed, diverged, skipped (done already, or left alone), running (elsewhere) or unsaved."""
    rid = run_id(cfg)
    axis, arm, seed, results = cfg.ablation.name, cfg.ablation.arm, cfg.seed, Path(cfg.paths.results_dir)
    label = f"{axis}/{arm} seed {seed} ({rid})"
    path = record_path(results, axis, arm, rid)
    if (version := newer_schema(path)) is not None:
        log.warning("%s: %s was written by a newer vlmlab (schema %s, this one writes %s); left alone",
                    label, path, version, SCHEMA_VERSION)
        return "skipped"
    if is_done(results, axis, arm, rid, seed=seed):
        log.info("%s: done already, skipped", label)
        return "skipped"
    run_dir = Path(cfg.paths.output_dir) / "runs" / axis / rid  # checkpoints and logs: not committed
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(lock_path(run_dir))
    # The ranks of one multi-process run are one trainer: the lock is rank 0's (or that of the process that
    # started them); the others train beside it.
    if global_rank() == 0 and LOCK_HELD not in os.environ and (holder := lock.acquire()) is not None:
        log.warning("%s: being trained by %s; skipped", label, holder.describe())
        return "running"
    try:
        if is_done(results, axis, arm, rid, seed=seed):  # finished by another sweep since this one planned it
            log.info("%s: done already, skipped", label)
            return "skipped"
        if _copied_from_another_axis(cfg, results, rid, label):
            return "skipped"
        log.info("%s: training, %s", label, _progress(results, axis))
        if (count := processes_to_start(cfg)) > 0:
            return _train_in_processes(cfg, count, rid, run_dir, lock, label)
        return _train_and_record(cfg, rid, run_dir, lock, label)
    finally:
        lock.release()


def _copied_from_another_axis(cfg: DictConfig, results: Path, rid: str, label: str) -> bool:
    """Whether another ablation's sweep finished this very run and its record is now copied here
    (vlmlab.launch.reuse); a copy that cannot be written is reported and the run trains."""
    found = finished_elsewhere(results, cfg.ablation.name, rid, cfg.seed)
    if found is None:
        return False
    try:
        copy_finished_run(results, *found, ablation=portable_config(cfg)["ablation"])
    except (OSError, RecordError) as err:
        log.warning("%s: could not copy the record of %s (%s); training it", label, found[0], err)
        return False
    return True


def _train_in_processes(cfg: DictConfig, count: int, rid: str, run_dir: Path, lock: RunLock, label: str) -> str:
    """Train the run in `count` processes of this node (vlmlab.launch.ranks); rank 0 writes the record. A run
    whose ranks died without one gets a `failed` record here, so the sweep sees it and goes on."""
    from vlmlab.train.pipeline import DataPipeline

    DataPipeline.of(cfg).tokenizer  # noqa: B018 (suite and tokenizer built and cached on disk once, here: the
    # ranks would otherwise all build the same caches at once)
    exits = start_ranks(cfg, count, run_dir)
    if exits.interrupted_by is not None:
        raise RunInterrupted(exits.interrupted_by)
    path = record_path(Path(cfg.paths.results_dir), cfg.ablation.name, cfg.ablation.arm, rid)
    if exits.ok and path.exists():
        return read_record(path).status
    error = RunError("RankFailure", f"the run's {count} processes did not finish: {exits.describe()}")
    log.error("%s failed: %s", label, error.message)
    record = _new_record(cfg, rid, "failed")
    record.error = error
    return _write_outputs(cfg, record, {}, None, lock, run_dir, label)


def _new_record(cfg: DictConfig, rid: str, status: str) -> RunRecord:
    """A record of the run with nothing measured yet."""
    return RunRecord(run_id=rid, ablation=ArmLabel(cfg.ablation.name, cfg.ablation.arm), seed=cfg.seed,
                     status=status, config=portable_config(cfg))


def _train_and_record(cfg: DictConfig, rid: str, run_dir: Path, lock: RunLock, label: str) -> str:
    """Train and evaluate under signal handling, then write the record and what goes beside it."""
    quiet_libraries()
    record = _new_record(cfg, rid, "failed")  # until training says otherwise
    reporting = global_rank() == 0  # of a run's processes, rank 0 alone writes what the run produced
    outputs: dict[str, str] = {}  # suffix -> text, written beside the record
    dataset_version = None
    with stop_on_signals() as stop:
        try:
            from vlmlab.train.run import train_and_evaluate  # the heavy imports happen once, inside the first job

            outcome = train_and_evaluate(cfg, run_dir, rid, stop=stop)
            if outcome is None or not reporting:  # another rank evaluates and reports
                return "done"
            record.status, record.metrics, record.cost = "done", outcome.metrics, outcome.cost
            dataset_version = outcome.dataset_version
            outputs[LOSS_LOG] = outcome.loss_log  # the loss curve: tables and plots need only results/
            # What the model answered: the first place to look when a score surprises.
            outputs[ANSWERS] = "".join(json.dumps(p, sort_keys=True) + "\n" for p in outcome.predictions)
        except RunInterrupted as stopped:
            log.warning("%s: %s; run the same command again to resume", label, stopped)
            raise
        except Exception as err:  # a failing arm gets its record and the sweep moves on
            log.error("%s failed: %s: %s", label, type(err).__name__, err)
            if not reporting:  # rank 0 fails with it (a collective never completes) and reports the run
                return "failed"
            record.status = "diverged" if isinstance(err, DivergedError) else "failed"
            record.error = RunError(type(err).__name__, portable_text(str(err)), portable_text(traceback.format_exc()))
        finally:
            finish_wandb()
        with stop.deferred():  # a signal now waits until the record and its files are whole
            status = _write_outputs(cfg, record, outputs, dataset_version, lock, run_dir, label)
    if status == "done" and not (cfg.get("checkpoint") or {}).get("keep", False):
        freed = remove_checkpoints(run_dir)  # its record says done: nothing will resume from them
        log.info("%s: checkpoints removed (%.1f MB); checkpoint.keep=true keeps them", label, freed / 2**20)
    return status


def _write_outputs(cfg: DictConfig, record: RunRecord, outputs: dict[str, str], dataset_version: str | None,
                   lock: RunLock, run_dir: Path, label: str) -> str:
    """Write the files beside the record, then the record; on any failure, report it and leave no orphan."""
    results = Path(cfg.paths.results_dir)
    path = record_path(results, cfg.ablation.name, cfg.ablation.arm, record.run_id)
    siblings = sibling_paths(path)
    if lock.lost:
        log.error("%s: another process took over this run while it trained; its record is left to that one", label)
        return "unsaved"
    target = path
    try:
        facts = provenance(cfg)
        record.provenance = Provenance(**facts | {"command": portable_text(facts["command"]),
                                                  "dataset_version": dataset_version})
        for suffix, sibling in siblings.items():
            target = sibling
            if suffix in outputs:
                atomic_write_text(sibling, outputs[suffix])
            else:  # a failed run keeps no curve or answers of an earlier attempt beside its record
                sibling.unlink(missing_ok=True)
        target = path
        write_record(results, record)
    except (OSError, RecordError, ValueError, TypeError) as err:
        for sibling in siblings.values():
            with contextlib.suppress(OSError):
                sibling.unlink(missing_ok=True)
        kept = f"its final checkpoint stays in {portable_text(str(run_dir))}, so " if record.done else ""
        log.error("%s: could not write %s (%s: %s); %sa re-run writes it", label, portable_text(str(target)),
                  type(err).__name__, err, kept)
        return "unsaved"
    if record.done:
        log.info("%s: %s", label, {k: round(v, 1) for k, v in record.metrics.items()})
    return record.status


# The checkout vlmlab runs from: paths inside it are written relative to it (the working directory too,
# which is the checkout whenever vlmlab runs through its Makefile).
_CHECKOUT = Path(__file__).resolve().parents[2]


def portable_text(text: str) -> str:
    """`text` with the project's absolute paths made relative and the home directory written `~`, so records
    that are committed and shared name no user's directories."""
    for root in dict.fromkeys(str(p) for p in (Path.cwd().resolve(), _CHECKOUT)):
        if root != os.sep:
            text = text.replace(root + os.sep, "")
    home = str(Path.home())
    return text.replace(home + os.sep, "~" + os.sep) if home not in ("", os.sep) else text


def portable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data, with its paths relative to the project (or to `~`)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    paths = config.get("paths") or {}
    for key, value in paths.items():
        if isinstance(value, str) and os.path.isabs(value):
            paths[key] = _portable_path(value)
    return config


def _portable_path(value: str) -> str:
    """An absolute path relative to the project if it lies inside it, else with the home directory as `~`."""
    path, root = Path(value), Path.cwd().resolve()
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix() or "."
    return portable_text(value)


def _progress(results: Path, axis: str) -> str:
    """'run k of N, about T left', when the run belongs to a planned sweep."""
    from vlmlab.launch.status import progress_line

    try:
        return progress_line(results, axis)
    except (FileNotFoundError, ValueError):  # a single run outside any sweep has no plan
        return "outside a sweep"


def finish_wandb() -> None:
    """Close the run's wandb run so the next job in this process starts its own."""
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].finish()
