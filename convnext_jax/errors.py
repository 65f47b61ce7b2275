"""Errors that describe a user's mistake (a bad config value, a missing file, a checkpoint that
does not fit). The command lines print them as one short message and exit with status 2;
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; the message says what was wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (wrong type, unknown choice, out of range, missing path)."""


class DataError(UserError, ValueError):
    """Data that cannot be used as it is (class folders that differ between splits, an empty split,
    a dataset that is not prepared, an unreadable image where unreadable images stop the run)."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset, split or folder that is not where the config says."""


class WeightImportError(UserError, ValueError):
    """A weights file, directory or checkpoint that cannot be read, or does not fit the model."""
