"""The `vlmlab` command: train one run, sweep or tune an ablation, prefetch what it reads, report on its runs.

A sub-command is a `Command` (vlmlab.cli.command): its name, help, arguments and the function that runs it.
Adding one is that function, its `Command`, and one entry in COMMANDS below.
"""

from __future__ import annotations

import argparse
import sys

from hydra.errors import HydraException

from vlmlab.cli.command import CONF_DIR, Command, Invocation
from vlmlab.cli.prefetch import PREFETCH
from vlmlab.cli.pretrain import PRETRAIN
from vlmlab.cli.reports import LIST, MIGRATE, STATUS, TABLES
from vlmlab.cli.training import SWEEP, TRAIN, TUNE
from vlmlab.train.interrupt import RunInterrupted  # signal and threading only: no heavy imports

__all__ = ["CONF_DIR", "COMMANDS", "build_parser", "main"]

COMMANDS: tuple[Command, ...] = (TRAIN, SWEEP, TUNE, PRETRAIN, PREFETCH, TABLES, STATUS, LIST, MIGRATE)


def _path_flags(default: object) -> argparse.ArgumentParser:
    """--results-dir and --ablations-dir, shorthands for paths.* overrides, accepted before or after the command."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--results-dir", metavar="DIR", default=default,
                       help="where records and tables go: paths.results_dir=DIR (default: conf/paths/default.yaml)")
    flags.add_argument("--ablations-dir", metavar="DIR", default=default,
                       help="where the ablation files are: paths.ablations_dir=DIR")
    return flags


def build_parser() -> argparse.ArgumentParser:
    """The command line of `vlmlab`: the global flags, then one of COMMANDS with its own arguments."""
    main_parser = argparse.ArgumentParser(prog="vlmlab", description=__doc__.splitlines()[0],
                                          parents=[_path_flags(None)], allow_abbrev=False)
    commands = main_parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        # SUPPRESS: a flag not given after the command leaves the one given before it (or None) as it is.
        command.add_to(commands, _path_flags(argparse.SUPPRESS))
    return main_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `vlmlab` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)  # the rest: overrides after a flag, and Hydra's flags (train)
    command: Command = args.command
    if command.overrides == "hydra":
        overrides = rest  # in the order typed: Hydra parses them
    elif unknown := [arg for arg in rest if arg.startswith("-")]:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    else:  # those typed before any flag, then those after one
        overrides = [*args.overrides, *rest]
    invocation = Invocation(args, tuple(overrides), typed=" ".join(["vlmlab", *argv]))
    try:
        return args.handler(invocation)
    except HydraException as err:  # overrides that do not compose (Hydra's own runs report theirs and exit)
        print(f"vlmlab {command.name}: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as stopped:  # SIGTERM/SIGINT: the run saved what it could; not a failure to report
        print(f"vlmlab {command.name}: {stopped}; run the same command again to resume", file=sys.stderr)
        return stopped.exit_code
