"""`vlmlab pretrain [--backbone NAME ...] [key=value ...]`: build the zoo's backbones (conf/zoo/), each once;
built ones are left alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlmlab.cli.command import CONF_DIR, Command, Invocation, train_composer

ZOO_DIR = Path(CONF_DIR) / "zoo"


def zoo_names() -> list[str]:
    """Every backbone recipe of conf/zoo/."""
    return sorted(path.stem for path in ZOO_DIR.glob("*.yaml"))


def pretrain(inv: Invocation) -> int:
    """Build the named backbones (all of conf/zoo/ by default) on the suite of the run config; print their
    quality levels."""
    import logging

    from vlmlab.launch.zoo import build, is_built, record_file
    from vlmlab.models.zoo import backbone_dir, level_dir, read_quality

    names = inv.args.backbones or zoo_names()
    if unknown := sorted(set(names) - set(zoo_names())):
        print(f"vlmlab pretrain: no recipe {', '.join(unknown)} in {ZOO_DIR} (known: {', '.join(zoo_names())})",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with train_composer() as compose:
        configs = {name: compose([*inv.flag_overrides, *inv.overrides, f"+zoo={name}"]) for name in names}
    for name, cfg in configs.items():
        trained = build(cfg.zoo, cfg)
        where = backbone_dir(cfg.paths.zoo_dir, cfg.zoo)
        print(f"{name}: {'built' if trained else 'already built'} at {where}; record "
              f"{record_file(cfg.paths.results_dir, cfg.zoo)}")
        assert is_built(cfg.paths.zoo_dir, cfg.zoo)
        for level in range(1, len(cfg.zoo.levels) + 1):
            quality = read_quality(level_dir(cfg.paths.zoo_dir, cfg.zoo, level))
            print(f"  level {level}: step {quality['step']}, {quality['metric']} {quality['value']:.3f}")
    return 0


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", dest="backbones", action="append", metavar="NAME", default=[],
                        help=f"a recipe of conf/zoo/ ({', '.join(zoo_names())}), repeatable; default: all")


PRETRAIN = Command("pretrain", "build the zoo's pretrained tiny backbones (conf/zoo/), each once, offline", pretrain,
                   options=_options)
