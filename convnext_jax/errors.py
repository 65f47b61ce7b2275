"""Errors that describe a user's mistake (a bad config value, a missing file, a checkpoint that
does not fit). The command lines print them as one short message and exit with status 2;
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user asked for; the message says what was wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (wrong type, unknown choice, out of range, missing path)."""
