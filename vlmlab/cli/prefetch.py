"""`vlmlab prefetch`: what a sweep's runs read from the Hugging Face hub, into the cache, for an offline cluster."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from vlmlab.cli.command import Command, Invocation, pinned_paths, scales, train_composer
from vlmlab.cli.training import untuned_flag

if TYPE_CHECKING:
    from vlmlab.data.hub_files import HubFiles


def prefetch(inv: Invocation) -> int:
    """Fetch into the Hugging Face cache every file the runs of `vlmlab sweep AXIS overrides...` read: 0 when all
    are there, 1 when some could not be fetched, 2 when the ablation is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from huggingface_hub import is_offline_mode

    from hydra_plugins.vlmlab_ablation_sweeper.ablation_sweeper import plan_ablation
    from vlmlab.data.hub_files import hub_cache
    from vlmlab.data.needs import all_needed
    from vlmlab.sweep.ablation import AblationError

    axis, overrides = inv.args.axis, [*pinned_paths(inv.config().paths), *inv.overrides]
    # The sweep's jobs are composed from its task overrides; hydra/launcher=... and hydra.* go to Hydra alone.
    task = [o.input_line for o in OverridesParser.create().parse_overrides(overrides) if not o.is_hydra_override()]
    try:  # the ablation from paths.ablations_dir, as the sweep reads it; a misspelt axis gets the list of them
        with train_composer() as compose:
            plan = plan_ablation(axis, compose(task), compose, scales(), task, not inv.args.untuned)
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


PREFETCH = Command("prefetch", "download what the sweep's runs read from the Hugging Face hub", prefetch, axis=True,
                   options=untuned_flag,
                   description="Download what the runs of `vlmlab sweep AXIS` read from the Hugging Face hub (dataset "
                   "files, pretrained models) into its cache, for a cluster that runs with HF_HUB_OFFLINE=1.")
