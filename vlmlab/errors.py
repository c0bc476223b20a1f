"""Errors that name the configuration key at fault, so a bad ablation fails before any training."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot work; `key` is the dotted path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message

    def under(self, prefix: str) -> "ConfigError":
        """The same error with its key placed under `prefix` (e.g. 'model.connector')."""
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.detail)


class DivergedError(RuntimeError):
    """The training loss stopped being finite; the run's record says `diverged`."""
