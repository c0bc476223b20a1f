"""The `vlmlab` command: train one run, sweep an ablation, or regenerate the tables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# The config tree lives beside the package in the repository (the product's layout), not inside it.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

USAGE = """vlmlab train [key=value ...]     one run of conf/train.yaml with Hydra overrides
vlmlab sweep AXIS [key=value ...] every (arm, seed) of ablations/AXIS.yaml (at each arm's tuned values if
                                  `vlmlab tune AXIS` ran; --untuned ignores them), then its table
vlmlab tune AXIS [--trials N] [key=value ...]
                                  per arm, an Optuna search of the learning rate on a short run; resumes
vlmlab tables                     regenerate every table from results/ alone
vlmlab status AXIS                every planned run of an ablation: done, running, failed, missing; time left
vlmlab list                       the ablations in ablations/"""


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> str:
    from vlmlab.sweep.job import run_job  # Hydra's own startup stays light; the job imports torch & co.

    return run_job(cfg)


def _run_hydra(args: list[str]) -> None:
    """Hand `args` to Hydra as if they were the command line."""
    sys.argv = ["vlmlab", *args]
    _hydra_main()


def _tables(results_dir: Path) -> list[Path]:
    from vlmlab.results.tables import write_tables

    written = write_tables(results_dir)
    for path in written:
        print(f"wrote {path}")
    return written


def _tune(axis: str, trials: int | None, overrides: list[str], ablations_dir: Path, results_dir: Path) -> int:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from vlmlab.sweep.ablation import AblationError, load_ablation

    try:
        spec = load_ablation(ablations_dir, axis)
    except AblationError as err:
        print(f"vlmlab tune: {err}", file=sys.stderr)
        return 2
    trials = spec.tune.trials if trials is None else trials
    if trials <= 0:
        print(f"vlmlab tune: --trials must be a positive number of trials per arm, got {trials}", file=sys.stderr)
        return 2
    from vlmlab.tune.runner import plan_tuning, tune_axis  # Optuna and the planning imports: only when tuning

    GlobalHydra.instance().clear()  # a command run before in this process (in tests) may have left Hydra set up
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        def compose_train(extra: list[str]) -> DictConfig:
            return compose(config_name="train", overrides=extra)

        try:
            plans = plan_tuning(spec, compose_train, tuple(overrides), results_dir)
        except AblationError as err:
            print(f"vlmlab tune: {err}", file=sys.stderr)
            return 2
        output_dir = Path(plans[0].job.config.paths.output_dir)
        return tune_axis(spec, plans, trials, compose_train, results_dir, output_dir)


def _sweep(axis: str, overrides: list[str], ablations_dir: Path, results_dir: Path) -> int:
    from vlmlab.results.records import load_axis
    from vlmlab.sweep.ablation import AblationError, load_ablation

    try:
        load_ablation(ablations_dir, axis)  # a misspelt axis gets the list of ablations, not a Hydra trace
    except AblationError as err:
        print(f"vlmlab sweep: {err}", file=sys.stderr)
        return 2
    try:
        _run_hydra(["--multirun", "hydra/sweeper=ablation", f"hydra.sweeper.axis={axis}",
                    f"hydra.sweep.dir=outputs/hydra/{axis}", *overrides])
    except SystemExit as stop:  # Hydra exits on a refused config; it has printed why
        if stop.code:
            return int(stop.code) if isinstance(stop.code, int) else 2
    _tables(results_dir)
    table = results_dir / "tables" / f"{axis}.md"
    if table.exists():
        print(table.read_text())
    _plan, runs, warnings = load_axis(results_dir, axis)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    unfinished = [r for r in runs if r.get("status") != "done"]
    for run in unfinished:
        print(f"{run.get('status')}: {axis}/{run.get('arm')} seed {run.get('seed')} ({run.get('run_id')})", file=sys.stderr)
    return 1 if unfinished else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vlmlab` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # What the user typed, for the records' provenance (Hydra's own argv is rewritten below; jobs in other
    # processes, e.g. submitit's, inherit the environment).
    os.environ["VLMLAB_COMMAND"] = " ".join(["vlmlab", *argv])
    parser = argparse.ArgumentParser(prog="vlmlab", usage=USAGE)
    parser.add_argument("command", choices=["train", "sweep", "tune", "tables", "list", "status"])
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--ablations-dir", default="ablations")
    parser.add_argument("--trials", type=int, default=None, help="tune: trials per arm (default: the file's, or 6)")
    parser.add_argument("--untuned", action="store_true", help="sweep: ignore results/tuning/AXIS/best.json")
    args, args.rest = parser.parse_known_args(argv)  # the rest: the axis and Hydra overrides
    results_dir, ablations_dir = Path(args.results_dir), Path(args.ablations_dir)
    if (args.trials is not None and args.command != "tune") or (args.untuned and args.command != "sweep"):
        parser.error("--trials goes with tune, --untuned with sweep")
    if args.command == "train":
        _run_hydra(args.rest)
        return 0
    if args.command == "tables":
        return 0 if _tables(results_dir) or not (results_dir / "runs").exists() else 1
    if args.command == "list":
        from vlmlab.sweep.ablation import available

        print("\n".join(available(ablations_dir)))
        return 0
    if args.command == "status":
        from vlmlab.results.records import RecordError
        from vlmlab.sweep.status import axis_status, render

        if not args.rest:
            parser.error("status needs an AXIS")
        try:
            print(render(args.rest[0], axis_status(results_dir, Path("outputs"), args.rest[0])))
        except (FileNotFoundError, RecordError) as err:
            print(f"vlmlab status: no plan for '{args.rest[0]}' in {results_dir}/runs ({err})", file=sys.stderr)
            return 2
        return 0
    if not args.rest:
        parser.error(f"{args.command} needs an AXIS: one of the files in ablations/ (see `vlmlab list`)")
    axis, overrides = args.rest[0], args.rest[1:]
    paths = [f"paths.results_dir={results_dir}", f"paths.ablations_dir={ablations_dir}"]
    if args.command == "tune":
        return _tune(axis, args.trials, [*paths, *overrides], ablations_dir, results_dir)
    untuned = ["hydra.sweeper.tuned=false"] if args.untuned else []
    return _sweep(axis, [*paths, *untuned, *overrides], ablations_dir, results_dir)


if __name__ == "__main__":
    sys.exit(main())
