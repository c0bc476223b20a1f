"""Errors that name the configuration key at fault, so a bad ablation fails before any training."""

from __future__ import annotations

from typing import Any


def is_int(value: Any) -> bool:
    """An integer that is not a bool: True is an int to Python, but never a step count, seed or size."""
    return isinstance(value, int) and not isinstance(value, bool)


class ConfigError(ValueError):
    """A configuration value that cannot work; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str, absolute: bool = False) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message
        self.absolute = absolute  # the key is already a full path from the config root (e.g. data.image.size)

    def under(self, prefix: str) -> "ConfigError":
        """The same error with its key placed under `prefix` (e.g. 'model.connector'), unless already absolute."""
        if self.absolute or not prefix:
            return self
        return ConfigError(f"{prefix}.{self.key}", self.detail)


class DivergedError(RuntimeError):
    """The training loss stopped being finite; the run's record says `diverged`."""
