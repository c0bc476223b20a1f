"""The files of one Hugging Face hub repository that a run reads, found in the local cache or fetched into it.

A compute node of an offline cluster (HF_HUB_OFFLINE=1) can only read what `vlmlab prefetch` put in the cache
beforehand; `HubFiles.paths` answers from the cache alone, so a sweep can tell before training whether every
file it needs is there, and `HubFiles.fetch` downloads exactly those files on a machine with the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError, IncompleteSnapshotError, LocalEntryNotFoundError
from huggingface_hub.utils import filter_repo_objects


class MissingHubFiles(RuntimeError):
    """Files of `files` that the local cache (or its `local_dir`) does not hold; the message names the repository,
    revision and patterns."""

    def __init__(self, files: HubFiles, reason: str) -> None:
        super().__init__(f"{files.describe()}: {reason}")
        self.files = files
        self.reason = reason


@dataclass(frozen=True)
class HubFiles:
    """Files of one hub repository at one revision: what a dataset source (or a model) reads.

    Every pattern of `patterns` must match at least one file; `optional` patterns are fetched and read along
    when the repository has them (a tokenizer has merges.txt or tokenizer.model, not both).
    """

    repo: str                                # "HuggingFaceM4/the_cauldron"
    patterns: tuple[str, ...] = ("*",)       # globs inside the repo, e.g. ("ai2d/train-*.parquet",)
    revision: str | None = None              # a branch, tag or commit, e.g. "refs/convert/parquet"; None: main
    repo_type: str = "dataset"               # or "model"
    local_dir: str | None = None             # a directory laid out like the repo, read instead of the hub
    optional: tuple[str, ...] = ()           # globs fetched when present, never required

    def __post_init__(self) -> None:
        # YAML and Hydra hand lists; a tuple keeps the spec hashable (deduplicated across runs).
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "optional", tuple(self.optional))

    @property
    def wanted(self) -> list[str]:
        """Every pattern to fetch and read: the required ones, then the optional ones."""
        return [*self.patterns, *self.optional]

    def describe(self) -> str:
        """e.g. "dataset HuggingFaceM4/COCO (revision refs/convert/parquet, files 2014_captions/test/*.parquet)"."""
        where = f"local directory {self.local_dir}" if self.local_dir else f"revision {self.revision or 'main'}"
        return f"{self.repo_type} {self.repo} ({where}, files {', '.join(self.patterns)})"

    def paths(self) -> list[Path]:
        """The local files matching the patterns, sorted: from `local_dir` if set, else from the Hugging Face cache
        only (never the network). MissingHubFiles when the cache lacks the repository or a pattern matches nothing."""
        root = Path(self.local_dir) if self.local_dir is not None else self._cached_snapshot()
        if not root.is_dir():
            raise MissingHubFiles(self, f"{root} is not a directory")
        # is_file follows the cache's symlinks to its blobs: a link whose blob is gone is a missing file.
        present = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        found = list(filter_repo_objects(present, allow_patterns=self.wanted))
        # Matched with huggingface_hub's own globbing, so "found" means what snapshot_download would fetch.
        if unmatched := [p for p in self.patterns if not any(filter_repo_objects(found, allow_patterns=[p]))]:
            raise MissingHubFiles(self, f"no file in {root} matches {', '.join(unmatched)}")
        return [root / name for name in found]

    def fetch(self) -> Path:
        """Download exactly these files into the Hugging Face cache (a no-op for `local_dir`); the snapshot's path."""
        if self.local_dir is not None:
            return Path(self.local_dir)
        return Path(snapshot_download(self.repo, repo_type=self.repo_type, revision=self.revision,
                                      allow_patterns=self.wanted))

    def _cached_snapshot(self) -> Path:
        """The cached snapshot folder of the revision; MissingHubFiles when the cache has none."""
        try:
            return Path(snapshot_download(self.repo, repo_type=self.repo_type, revision=self.revision,
                                          allow_patterns=self.wanted, local_files_only=True))
        except HFValidationError as err:  # e.g. a local path that does not exist, taken for a hub id
            raise MissingHubFiles(self, f"neither an existing local path nor a hub repository id ({err})") from None
        except IncompleteSnapshotError:  # the cached file listing names files that an interrupted download left out
            raise MissingHubFiles(self, f"its snapshot in {hub_cache()} is incomplete") from None
        except LocalEntryNotFoundError:
            raise MissingHubFiles(self, f"not in the Hugging Face cache {hub_cache()}") from None


def hub_cache() -> str:
    """The Hugging Face cache directory in use (HF_HUB_CACHE, or HF_HOME/hub), as huggingface_hub resolves it."""
    return os.path.expanduser(constants.HF_HUB_CACHE)


def total_bytes(paths: list[Path]) -> int:
    """Bytes of the files (the blobs the cache's symlinks point to)."""
    return sum(path.stat().st_size for path in paths)
