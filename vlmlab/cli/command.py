"""What every sub-command of `vlmlab` is made of: its declaration, its parsed command line, the composed config."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from omegaconf import DictConfig

# The config tree lives beside the package in the repository (the product's layout), not inside it.
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

Compose = Callable[[Sequence[str]], DictConfig]


@dataclass(frozen=True)
class Invocation:
    """One parsed command line: the sub-command's own arguments, the user's overrides, and what was typed."""

    args: argparse.Namespace  # the sub-command's declared arguments (axis, --untuned, ...) and the global flags
    overrides: tuple[str, ...]  # the user's, in the order typed (for train: Hydra's flags among them)
    typed: str  # `vlmlab sweep connector ...`: the command the records' provenance names

    @property
    def flag_overrides(self) -> list[str]:
        """--results-dir and --ablations-dir as the paths.* overrides they are shorthands for."""
        flags = {"results_dir": self.args.results_dir, "ablations_dir": self.args.ablations_dir}
        return [f"paths.{key}={value}" for key, value in flags.items() if value is not None]

    def config(self) -> DictConfig:
        """conf/train.yaml composed with the flags and the user's task overrides, as the command's runs get it."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = [*self.flag_overrides, *self.overrides]
        # hydra/launcher=... and hydra.* shape how Hydra runs the jobs, not what a job's config holds.
        task = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
        with train_composer() as compose:
            return compose(task)


def pinned_paths(paths: DictConfig) -> list[str]:
    """`paths`' results and ablations directories as overrides, which the commands that plan runs put before the
    user's (as they always did): a command vlmlab prints back to the user (the sweep's prefetch hint) then names
    the directories this one used."""
    return [f"paths.results_dir={paths.results_dir}", f"paths.ablations_dir={paths.ablations_dir}"]


Handler = Callable[[Invocation], int]


@dataclass(frozen=True)
class Command:
    """One sub-command: its name and help, what it takes on the command line, and the function that runs it."""

    name: str
    help: str  # one line, in `vlmlab --help`
    run: Handler
    axis: bool = False  # takes an AXIS, a file of ablations/
    # "config": key=value overrides of conf/train.yaml; "hydra": those and Hydra's own flags (--cfg job, -m, ...)
    overrides: Literal["config", "hydra"] = "config"
    options: Callable[[argparse.ArgumentParser], None] | None = None  # adds the command's own flags
    description: str | None = None  # more, in `vlmlab NAME --help`

    def add_to(self, commands: argparse._SubParsersAction, flags: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Its parser among `commands`, taking the global `flags` too."""
        usage = None
        if self.overrides == "hydra":  # its overrides are the unparsed rest: argparse does not put them in the usage
            usage = "%(prog)s [-h] [--results-dir DIR] [--ablations-dir DIR] [key=value | Hydra flag ...]"
        parser = commands.add_parser(self.name, help=self.help, description=self.description or self.help,
                                     parents=[flags], usage=usage, allow_abbrev=False)
        if self.axis:
            parser.add_argument("axis", metavar="AXIS", help="an ablation: a file of ablations/ (`vlmlab list`)")
        if self.options is not None:
            self.options(parser)
        if self.overrides == "config":
            # default=[]: without one, argparse names an empty `*` positional among the missing required ones
            parser.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                                help="Hydra overrides of conf/train.yaml, as for `vlmlab train` (paths.* say where "
                                "it reads and writes)")
        else:
            parser.add_argument_group("overrides", "key=value Hydra overrides of conf/train.yaml, and Hydra's flags: "
                                      "--cfg job (print the config), --info, -m (a Hydra multirun), --hydra-help")
        parser.set_defaults(handler=self.run, command=self, parser=parser)
        return parser


@contextmanager
def train_composer() -> Iterator[Compose]:
    """Compose conf/train.yaml with overrides (without the hydra node), inside a Hydra setup of its own."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()  # a command run before in this process (in tests) may have left Hydra set up
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        yield lambda overrides: compose(config_name="train", overrides=list(overrides))


def scales() -> list[str]:
    """The options of conf/scale/ (`+scale=paper`)."""
    return [path.stem for path in (Path(CONF_DIR) / "scale").glob("*.yaml")]
