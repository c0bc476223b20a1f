"""The `vlmlab` command: train one run, sweep an ablation, or regenerate the tables."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from vlmlab.train.interrupt import RunInterrupted  # signal and threading only: no heavy imports

if TYPE_CHECKING:
    from vlmlab.data.hub_files import HubFiles

# The config tree lives beside the package in the repository (the product's layout), not inside it.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

USAGE = """vlmlab train [key=value ...]     one run of conf/train.yaml with Hydra overrides
vlmlab sweep AXIS [key=value ...] every (arm, seed) of ablations/AXIS.yaml (at each arm's tuned values if
                                  `vlmlab tune AXIS` ran; --untuned ignores them), then its table
vlmlab tune AXIS [--trials N] [key=value ...]
                                  per arm, an Optuna search of the learning rate on a short run; resumes
vlmlab prefetch AXIS [--untuned] [key=value ...]
                                  download what the sweep's runs read from the Hugging Face hub (dataset files,
                                  pretrained models) into its cache, for a cluster that runs with HF_HUB_OFFLINE=1
vlmlab tables                     regenerate every table from results/ alone
vlmlab status AXIS                every planned run of an ablation: done, running, failed, missing; time left
vlmlab list                       the ablations in ablations/"""


# The status of each run `_hydra_main` ran in this process: @hydra.main throws the task function's return value
# away (hydra/main.py calls _run_hydra, which returns nothing), so `vlmlab train` reads its run's status here.
_RUN_STATUSES: list[str] = []
_TRAIN_OK = ("done", "skipped")  # what `vlmlab train` exits 0 for; "failed", "diverged", ... exit 1


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> str:
    from vlmlab.sweep.job import run_job  # Hydra's own startup stays light; the job imports torch & co.

    status = run_job(cfg)
    _RUN_STATUSES.append(status)
    return status


class TrainChecks(Callback):
    """Refuses a single run's bad config (exit 2) before Hydra makes its run directory or anything trains."""

    # on_run_start: Hydra calls it in single-run mode only, after composing the config and before run_job
    # creates hydra.run.dir under paths.output_dir (so a bad output_dir is refused here, not met as a trace).
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from vlmlab.errors import ConfigError
        from vlmlab.sweep.plan import check_config
        from vlmlab.train.parallel import check_devices

        task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])  # what the job receives
        try:
            check_config(task)
            check_devices(task)  # a single run trains here
        except ConfigError as err:
            print(f"vlmlab train: {err}", file=sys.stderr)
            raise SystemExit(2) from None  # an Exception would be swallowed by Hydra's callback runner


def _run_hydra(args: list[str]) -> None:
    """Hand `args` to Hydra as if they were the command line."""
    sys.argv = ["vlmlab", *args]
    _hydra_main()


def _train(overrides: list[str]) -> int:
    """One run of conf/train.yaml, checked first: 0 if it is done (or was already), 2 if refused, else 1."""
    _RUN_STATUSES.clear()
    try:  # the callback first: a trailing Hydra flag (--info) could take it for its own value
        _run_hydra([f"+hydra.callbacks.vlmlab_checks._target_={TrainChecks.__module__}.TrainChecks", *overrides])
    except SystemExit as stop:  # a refused config, Hydra's own error (it has printed why), or --help
        if stop.code:
            return stop.code if isinstance(stop.code, int) else 2
    return 0 if all(status in _TRAIN_OK for status in _RUN_STATUSES) else 1


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
            # At a scale (`+scale=paper`), the arms are the ones the file's `scales.<name>` block gives them.
            spec = spec.at_scale(OmegaConf.select(compose_train(list(overrides)), "scale.name", default=None),
                                 _scales())
            plans = plan_tuning(spec, compose_train, tuple(overrides), results_dir)
        except AblationError as err:
            print(f"vlmlab tune: {err}", file=sys.stderr)
            return 2
        output_dir = Path(plans[0].job.config.paths.output_dir)
        return tune_axis(spec, plans, trials, compose_train, results_dir, output_dir)


def _scales() -> list[str]:
    """The options of conf/scale/ (`+scale=paper`)."""
    return [path.stem for path in (Path(CONF_DIR) / "scale").glob("*.yaml")]


def _prefetch(axis: str, overrides: list[str], tuned: bool) -> int:
    """Fetch into the Hugging Face cache every file the runs of `vlmlab sweep AXIS overrides...` read: 0 when all
    are there, 1 when some could not be fetched, 2 when the ablation is refused."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from huggingface_hub import is_offline_mode

    from hydra_plugins.vlmlab_ablation_sweeper.ablation_sweeper import plan_ablation
    from vlmlab.data.hub_files import hub_cache
    from vlmlab.data.needs import all_needed
    from vlmlab.sweep.ablation import AblationError

    # The sweep's jobs are composed from its task overrides; hydra/launcher=... and hydra.* go to Hydra alone.
    task = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
    GlobalHydra.instance().clear()  # a command run before in this process (in tests) may have left Hydra set up
    try:  # the ablation from paths.ablations_dir, as the sweep reads it; a misspelt axis gets the list of them
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            def compose_train(extra: list[str]) -> DictConfig:
                return compose(config_name="train", overrides=extra)

            plan = plan_ablation(axis, compose_train(task), compose_train, _scales(), task, tuned)
    except (AblationError, HydraException) as err:
        print(f"vlmlab prefetch: {err}", file=sys.stderr)
        return 2
    arms = {job.run.arm: job.config for job in plan.jobs}  # seeds do not change what a run reads
    needed = all_needed(arms.values())
    if not needed:
        print(f"{axis}: nothing to prefetch: no run reads from the Hugging Face hub")
        return 0
    download = not is_offline_mode()
    if not download:
        print("HF_HUB_OFFLINE=1: checking the cache only; unset it to download")
    failed = [files for files in needed if not _fetch_one(files, download)]
    print(f"Hugging Face cache: {hub_cache()}; {len(needed) - len(failed)} of {len(needed)} ready")
    images_ready = all([_fetch_images(cfg, download) for cfg in _distinct_suites(arms.values())]) if not failed else True
    return 1 if failed or not images_ready else 0


def _distinct_suites(configs: Iterable[DictConfig]) -> list[DictConfig]:
    """One config per distinct data suite among `configs`: arms that share a suite share its images."""
    return list({OmegaConf.to_yaml(cfg.data.suite): cfg for cfg in configs}.values())


def _fetch_images(cfg: DictConfig, download: bool) -> bool:
    """The images of the suite's URL-only documents into its image store (or, offline, how many are there);
    False when the suite has such documents and no `data.suite.image_store` to keep them."""
    from hydra.utils import instantiate

    from vlmlab.data.hub_suite import HubSuite
    from vlmlab.data.image_store import fetch_images, stored

    suite = instantiate(cfg.data.suite)
    urls = suite.image_urls() if isinstance(suite, HubSuite) else []  # only a hub suite has URL-only documents
    if not urls:
        return True
    store = suite.image_store
    if store is None:
        print(f"vlmlab prefetch: suite {suite.name}: its documents' {len(urls):,} images are URLs; set "
              "data.suite.image_store=DIR (a directory every node reads) to download them", file=sys.stderr)
        return False
    counts = fetch_images(urls, store) if download else {"present": stored(urls, store)}
    print(f"images of {suite.name} in {store}: " + ", ".join(f"{n:,} {what}" for what, n in counts.items() if n)
          + " (a dead link stays missing: its document trains without that image, counted in the record)")
    return True


def _fetch_one(files: HubFiles, download: bool) -> bool:
    """Fetch one HubFiles (when `download`) and print what the cache holds of it now; False (and why, on stderr)
    if some of it is not there."""
    from vlmlab.data.hub_files import MissingHubFiles, total_bytes

    try:
        if download:
            files.fetch()
        found = files.paths()  # every required pattern matched: what the run will read is there
    except MissingHubFiles as err:
        print(f"vlmlab prefetch: {err}", file=sys.stderr)
        return False
    except (OSError, ValueError) as err:  # not found, gated, no network: huggingface_hub says which
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"vlmlab prefetch: {files.describe()}: {first}", file=sys.stderr)
        return False
    verb = "read in place" if files.local_dir is not None else "fetched" if download else "cached"
    print(f"{verb} {files.describe()}: {len(found)} files, {total_bytes(found):,} bytes")
    return True


def _output_dir(overrides: list[str]) -> Path:
    """`paths.output_dir` as the overrides set it (conf/paths/default.yaml's otherwise)."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("paths.output_dir=")]
    return Path(given[-1] if given else "outputs")


def _sweep(axis: str, overrides: list[str], ablations_dir: Path, results_dir: Path) -> int:
    from vlmlab.results.records import load_axis
    from vlmlab.sweep.ablation import AblationError, load_ablation
    from vlmlab.sweep.status import axis_status

    try:
        load_ablation(ablations_dir, axis)  # a misspelt axis gets the list of ablations, not a Hydra trace
    except AblationError as err:
        print(f"vlmlab sweep: {err}", file=sys.stderr)
        return 2
    output_dir = _output_dir(overrides)
    try:
        _run_hydra(["--multirun", "hydra/sweeper=ablation", f"hydra.sweeper.axis={axis}",
                    f"hydra.sweep.dir={output_dir / 'hydra' / axis}", *overrides])
    except SystemExit as stop:  # Hydra exits on a refused config; it has printed why
        if stop.code:
            return int(stop.code) if isinstance(stop.code, int) else 2
    _tables(results_dir)
    table = results_dir / "tables" / f"{axis}.md"
    if table.exists():
        print(table.read_text())
    _plan, _runs, warnings = load_axis(results_dir, axis)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    unfinished = [s for s in axis_status(results_dir, output_dir, axis) if s.state != "done"]
    for run in unfinished:  # running: another sweep holds it; interrupted: it resumes on the next sweep
        held = f", held by {run.holder.describe()}" if run.holder is not None else ""
        print(f"{run.state}: {axis}/{run.arm} seed {run.seed} ({run.run_id}{held})", file=sys.stderr)
    return 1 if unfinished else 0


def _status(axis: str, ablations_dir: Path, results_dir: Path, output_dir: Path) -> int:
    """Print where every planned run of `axis` stands; 2 if it has no plan."""
    from vlmlab.results.records import RecordError
    from vlmlab.sweep.ablation import AblationError, ablation_path
    from vlmlab.sweep.status import axis_status, render

    try:  # a plan may outlive its ablation file, but the axis must be a plain name, not a path
        ablation_path(ablations_dir, axis, must_exist=False)
    except AblationError as err:
        print(f"vlmlab status: {err}", file=sys.stderr)
        return 2
    try:
        print(render(axis, axis_status(results_dir, output_dir, axis)))
    except (FileNotFoundError, RecordError) as err:
        print(f"vlmlab status: no plan for '{axis}' in {results_dir}/runs ({err})", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vlmlab` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # What the user typed, for the records' provenance (Hydra's own argv is rewritten below; jobs in other
    # processes, e.g. submitit's, inherit the environment).
    os.environ["VLMLAB_COMMAND"] = " ".join(["vlmlab", *argv])
    parser = argparse.ArgumentParser(prog="vlmlab", usage=USAGE)
    parser.add_argument("command", choices=["train", "sweep", "tune", "prefetch", "tables", "list", "status"])
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--ablations-dir", default="ablations")
    parser.add_argument("--trials", type=int, default=None, help="tune: trials per arm (default: the file's, or 6)")
    parser.add_argument("--untuned", action="store_true",
                        help="sweep, prefetch: ignore results/tuning/AXIS/best.json")
    args, args.rest = parser.parse_known_args(argv)  # the rest: the axis and Hydra overrides
    if (args.trials is not None and args.command != "tune") or (
            args.untuned and args.command not in ("sweep", "prefetch")):
        parser.error("--trials goes with tune, --untuned with sweep or prefetch")
    if args.command in ("sweep", "tune", "prefetch") and not args.rest:
        parser.error(f"{args.command} needs an AXIS: one of the files in ablations/ (see `vlmlab list`)")
    if args.command == "status" and not args.rest:
        parser.error("status needs an AXIS")
    try:
        return _dispatch(args)
    except RunInterrupted as stopped:  # SIGTERM/SIGINT: the run saved what it could; not a failure to report
        print(f"vlmlab {args.command}: {stopped}; run the same command again to resume", file=sys.stderr)
        return stopped.exit_code


def _dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; its exit status."""
    results_dir, ablations_dir = Path(args.results_dir), Path(args.ablations_dir)
    if args.command == "train":
        return _train(args.rest)
    if args.command == "tables":
        return 0 if _tables(results_dir) or not (results_dir / "runs").exists() else 1
    if args.command == "list":
        from vlmlab.sweep.ablation import available

        print("\n".join(available(ablations_dir)))
        return 0
    if args.command == "status":
        return _status(args.rest[0], ablations_dir, results_dir, _output_dir(args.rest[1:]))
    axis, overrides = args.rest[0], args.rest[1:]
    paths = [f"paths.results_dir={results_dir}", f"paths.ablations_dir={ablations_dir}"]
    if args.command == "tune":
        return _tune(axis, args.trials, [*paths, *overrides], ablations_dir, results_dir)
    if args.command == "prefetch":
        return _prefetch(axis, [*paths, *overrides], not args.untuned)
    untuned = ["hydra.sweeper.tuned=false"] if args.untuned else []
    return _sweep(axis, [*paths, *untuned, *overrides], ablations_dir, results_dir)


if __name__ == "__main__":
    sys.exit(main())
