"""Building the zoo's backbones: each one a pretraining run with an identity (its recipe's hash), a record, and
resumable state; cached, so a backbone is built once for every sweep and command that needs it.

Weights go to `<paths.zoo_dir>/<name>-<id>/level_<k>/` (git-ignored); the record of each build, with each level's
quality score, to `<paths.results_dir>/zoo/<name>-<id>.json` (committed, like the runs' records).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vlmlab.launch.lock import RunLock
from vlmlab.launch.provenance import provenance
from vlmlab.models.zoo import QUALITY_FILE, backbone_dir, level_dir, plain, recipe_id
from vlmlab.pretrain.backbone import Built, Pretraining
from vlmlab.results.records import atomic_write_text, read_record
from vlmlab.results.zoo_table import ZOO_DIR
from vlmlab.run_record import ArmLabel, Cost, Provenance, RunRecord
from vlmlab.train.pipeline import DataPipeline

log = logging.getLogger(__name__)
RECIPE_KEYS = ("model.vision.recipe", "model.lm.recipe")  # where a run config holds a zoo backbone's recipe


def record_file(results_dir: str | Path, recipe: DictConfig) -> Path:
    """Where the record of `recipe`'s build goes."""
    return Path(results_dir) / ZOO_DIR / f"{plain(recipe)['name']}-{recipe_id(recipe)}.json"


def is_built(zoo_dir: str | Path, recipe: DictConfig) -> bool:
    """Whether every level of `recipe` is saved, each with its quality file (the last thing written)."""
    return all((level_dir(zoo_dir, recipe, k) / QUALITY_FILE).is_file() for k in range(1, len(recipe.levels) + 1))


def build(recipe: DictConfig, cfg: DictConfig) -> bool:
    """Build `recipe`'s backbone unless it is built; True if it trained. `cfg` is a run config on the suite whose
    tokenizer the backbone uses, and names the directories (paths.zoo_dir, paths.results_dir)."""
    zoo_dir, results_dir = cfg.paths.zoo_dir, cfg.paths.results_dir
    if is_built(zoo_dir, recipe):
        return False
    home = backbone_dir(zoo_dir, recipe)
    home.mkdir(parents=True, exist_ok=True)
    with RunLock(home / "lock") as other:
        if other is not None:
            raise RuntimeError(f"{home}: another process ({other.describe()}) is building this backbone; "
                               "run again once it is done")
        if is_built(zoo_dir, recipe):  # built by the holder we waited for
            return False
        pretraining: Pretraining = instantiate(recipe, _convert_="all")
        log.info("zoo: pretraining %s (%s) into %s", pretraining.name, recipe_id(recipe), home)
        built = pretraining.run(home / "work", lambda level: level_dir(zoo_dir, recipe, level),
                                DataPipeline.of(cfg).tokenizer)
        path = record_file(results_dir, recipe)
        if not path.is_file():
            atomic_write_text(path, _record(recipe, pretraining, built, cfg).to_json())
        elif differences := _quality_differences(path, built):
            # A committed record stays: the runs committed beside it were trained on its build. The build is
            # byte-identical on one machine, not across CPUs (their float kernels differ), so say so where it is not.
            log.warning("zoo: %s built here is not the build %s records (%s): runs on these weights compare with "
                        "each other, and only approximately with the committed runs", pretraining.name, path,
                        "; ".join(differences))
        shutil.rmtree(home / "work", ignore_errors=True)  # resumable state: the build is over
        for quality in built.qualities:
            log.info("zoo: %s step %d: %s %.3f", pretraining.name, quality["step"], quality["metric"],
                     quality["value"])
    return True


def build_needed(configs: Iterable[DictConfig]) -> list[str]:
    """Build every zoo backbone that one of the run `configs` loads and that is not built yet (with that config's
    suite and directories); the names of those trained."""
    trained, seen = [], set()
    for cfg in configs:
        for key in RECIPE_KEYS:
            recipe = OmegaConf.select(cfg, key, default=None)
            if recipe is None or recipe_id(recipe) in seen:
                continue
            seen.add(recipe_id(recipe))
            if build(recipe, cfg):
                trained.append(plain(recipe)["name"])
    return trained


def _quality_differences(path: Path, built: Built) -> list[str]:
    """Each level whose quality, built here, is not the one the record at `path` holds."""
    recorded = read_record(path).metrics
    differences = []
    for k, quality in enumerate(built.qualities, start=1):
        value, before = float(quality["value"]), recorded.get(f"level_{k}/value")
        if before is None:
            differences.append(f"level {k}: {quality['metric']} {value:.3f} here, none recorded")
        elif abs(value - before) > 1e-9:
            differences.append(f"level {k}: {quality['metric']} {value:.3f} here, {before:.3f} recorded")
    return differences


def _record(recipe: DictConfig, pretraining: Pretraining, built: Built, cfg: DictConfig) -> RunRecord:
    metrics = {f"level_{k}/{key}": float(value) for k, quality in enumerate(built.qualities, start=1)
               for key, value in quality.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    cost = Cost(params_total=built.params, train_steps=built.loop.steps, train_seconds=round(built.loop.seconds, 3))
    return RunRecord(run_id=recipe_id(recipe), ablation=ArmLabel(ZOO_DIR, pretraining.name), seed=int(recipe.seed),
                     status="done", config=plain(recipe), metrics=metrics, cost=cost,
                     provenance=Provenance(**provenance(cfg)))
