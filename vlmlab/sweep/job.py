"""The task function Hydra launches: one (arm, seed) run, its record written atomically whatever happens."""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vlmlab.errors import DivergedError
from vlmlab.results.records import SCHEMA_VERSION, atomic_write_text, is_done, record_path, write_record
from vlmlab.sweep.identity import run_id
from vlmlab.sweep.provenance import provenance

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
    """Train and evaluate one run unless its record says done; returns the run's status."""
    rid = run_id(cfg)
    axis, arm, results = cfg.ablation.name, cfg.ablation.arm, Path(cfg.paths.results_dir)
    if is_done(results, axis, arm, rid):
        log.info("%s/%s seed %s (%s): done already, skipped", axis, arm, cfg.seed, rid)
        return "skipped"
    log.info("%s/%s seed %s (%s): training, %s", axis, arm, cfg.seed, rid, _progress(results, axis))
    quiet_libraries()
    run_dir = Path(cfg.paths.output_dir) / "runs" / axis / rid  # checkpoints and logs: not committed
    dataset_version, predictions = None, None
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": rid, "ablation": {"name": axis, "arm": arm}, "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True), "metrics": {}, "cost": {}, "error": None,
    }
    try:
        from vlmlab.train.run import train_and_evaluate  # the heavy imports happen once, inside the first job

        outcome = train_and_evaluate(cfg, run_dir, rid)
        record.update(status="done", metrics=outcome.metrics, cost=outcome.cost)
        predictions = outcome.predictions
        dataset_version = outcome.dataset_version
    except Exception as err:  # a failing arm gets its record and the sweep moves on
        log.error("%s/%s seed %s (%s) failed: %s: %s", axis, arm, cfg.seed, rid, type(err).__name__, err)
        record.update(status="diverged" if isinstance(err, DivergedError) else "failed", error={
            "type": type(err).__name__, "message": str(err), "traceback": traceback.format_exc(),
        })
    finally:
        finish_wandb()
    record["provenance"] = provenance() | {"dataset_version": dataset_version}
    path = record_path(results, axis, arm, rid)
    curve = run_dir / "metrics.csv"
    if curve.exists():  # the loss curve travels with the record, so tables and plots need only results/
        atomic_write_text(path.with_suffix(".metrics.csv"), curve.read_text())
    if predictions is not None:  # what the model answered: the first place to look when a score surprises
        atomic_write_text(path.with_suffix(".predictions.jsonl"),
                          "".join(json.dumps(p, sort_keys=True) + "\n" for p in predictions))
    write_record(results, record)
    if record["status"] == "done":
        log.info("%s/%s seed %s: %s", axis, arm, cfg.seed, {k: round(v, 1) for k, v in record["metrics"].items()})
    return record["status"]


def _progress(results: Path, axis: str) -> str:
    """'run k of N, about T left', when the run belongs to a planned sweep."""
    from vlmlab.sweep.status import progress_line

    try:
        return progress_line(results, axis)
    except (FileNotFoundError, ValueError):  # a single run outside any sweep has no plan
        return "outside a sweep"


def finish_wandb() -> None:
    """Close the run's wandb run so the next job in this process starts its own."""
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].finish()
