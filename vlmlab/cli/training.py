"""The commands that train: `vlmlab train` (one run), `vlmlab sweep` (an ablation), `vlmlab tune` (its learning rates)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import OmegaConf

from vlmlab.cli.command import Command, Invocation, pinned_paths, scales, train_composer
from vlmlab.cli.reports import write_tables
from vlmlab.cli.run import HydraTask, TrainChecks, run_hydra

TRAIN_OK = ("done", "skipped")  # what `vlmlab train` exits 0 for; "failed", "diverged", ... exit 1


def train(inv: Invocation) -> int:
    """One run of conf/train.yaml, checked first: 0 if it is done (or was already), 2 if refused, else 1."""
    task = HydraTask(inv.typed)
    checks = f"+hydra.callbacks.vlmlab_checks._target_={TrainChecks.__module__}.TrainChecks"
    try:
        run_hydra([checks, *inv.flag_overrides, *inv.overrides], task, prog="vlmlab train")
    except SystemExit as stop:  # a refused config, Hydra's own error (it has printed why), or its help
        if stop.code:
            return stop.code if isinstance(stop.code, int) else 2
    return 0 if all(status in TRAIN_OK for status in task.statuses) else 1


def sweep(inv: Invocation) -> int:
    """Every (arm, seed) of the ablation, then its table: 0 when every run is done, 2 if refused, else 1."""
    from vlmlab.results.records import load_axis
    from vlmlab.sweep.ablation import AblationError, load_ablation
    from vlmlab.launch.status import axis_status

    axis, paths = inv.args.axis, inv.config().paths
    try:
        load_ablation(Path(paths.ablations_dir), axis)  # a misspelt axis gets the list of ablations, not a trace
    except AblationError as err:
        print(f"vlmlab sweep: {err}", file=sys.stderr)
        return 2
    untuned = ["hydra.sweeper.tuned=false"] if inv.args.untuned else []
    try:  # the sweep's Hydra files beside its runs' outputs, one folder per axis
        run_hydra(["--multirun", "hydra/sweeper=ablation", f"hydra.sweeper.axis={axis}",
                   f"hydra.sweep.dir=${{paths.output_dir}}/hydra/{axis}", *pinned_paths(paths), *untuned,
                   *inv.overrides], HydraTask(inv.typed), prog="vlmlab sweep")
    except SystemExit as stop:  # Hydra exits on a refused config; it has printed why
        if stop.code:
            return int(stop.code) if isinstance(stop.code, int) else 2
    results = Path(paths.results_dir)
    write_tables(results)
    table = results / "tables" / f"{axis}.md"
    if table.exists():
        print(table.read_text())
    _plan, _runs, warnings = load_axis(results, axis)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    unfinished = [s for s in axis_status(results, Path(paths.output_dir), axis) if s.state != "done"]
    for run in unfinished:  # running: another sweep holds it; interrupted: it resumes on the next sweep
        held = f", held by {run.holder.describe()}" if run.holder is not None else ""
        print(f"{run.state}: {axis}/{run.arm} seed {run.seed} ({run.run_id}{held})", file=sys.stderr)
    return 1 if unfinished else 0


def tune(inv: Invocation) -> int:
    """Per arm, an Optuna search of the learning rate on a short run: 0 when done, 2 if refused."""
    from vlmlab.sweep.ablation import AblationError, load_ablation

    axis, paths = inv.args.axis, inv.config().paths
    results = Path(paths.results_dir)
    try:
        spec = load_ablation(Path(paths.ablations_dir), axis)
    except AblationError as err:
        print(f"vlmlab tune: {err}", file=sys.stderr)
        return 2
    trials = spec.tune.trials if inv.args.trials is None else inv.args.trials
    if trials <= 0:
        print(f"vlmlab tune: --trials must be a positive number of trials per arm, got {trials}", file=sys.stderr)
        return 2
    from vlmlab.tune.runner import plan_tuning, tune_axis  # Optuna and the planning imports: only when tuning

    overrides = [*pinned_paths(paths), *inv.overrides]
    with train_composer() as compose:
        try:
            # At a scale (`+scale=paper`), the arms are the ones the file's `scales.<name>` block gives them.
            spec = spec.at_scale(OmegaConf.select(compose(overrides), "scale.name", default=None), scales())
            plans = plan_tuning(spec, compose, tuple(overrides), results)
        except AblationError as err:
            print(f"vlmlab tune: {err}", file=sys.stderr)
            return 2
        output_dir = Path(plans[0].job.config.paths.output_dir)
        return tune_axis(spec, plans, trials, compose, results, output_dir)


def untuned_flag(parser: argparse.ArgumentParser) -> None:
    """--untuned: sweep or prefetch each arm at the config's own values, not at those `vlmlab tune` found."""
    parser.add_argument("--untuned", action="store_true",
                        help="ignore what `vlmlab tune AXIS` found (tuning/AXIS/best.json under paths.results_dir): "
                        "each arm at the config's own values")


def _trials(parser: argparse.ArgumentParser) -> None:
    """--trials N: how many trials per arm."""
    parser.add_argument("--trials", type=int, metavar="N", help="trials per arm (default: the file's tune.trials)")


TRAIN = Command("train", "one run of conf/train.yaml with Hydra overrides", train, overrides="hydra",
                description="One run of conf/train.yaml with Hydra overrides, its config checked before anything "
                "trains. Exit status: 0 when the run is done (or was already), 2 when refused, 1 when it fails.")
SWEEP = Command("sweep", "every (arm, seed) of ablations/AXIS.yaml, then its table", sweep, axis=True,
                options=untuned_flag, description="Every (arm, seed) of the ablation, at each arm's tuned values if "
                "`vlmlab tune AXIS` ran, then its table (tables/ under paths.results_dir). A run that is done is "
                "skipped, an interrupted one resumes.")
TUNE = Command("tune", "per arm, an Optuna search of the learning rate on a short run; resumes", tune, axis=True,
               options=_trials)
