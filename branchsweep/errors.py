"""The one exception type for user mistakes.

The CLI catches :class:`BranchsweepError` and prints its message on one line (exit code 2); any other
exception is a bug and keeps its traceback. Raise it for anything a user can fix: a bad flag, an unknown
name, a malformed file, a data set that does not match its published layout.
"""

from __future__ import annotations


class BranchsweepError(Exception):
    """A user-facing error whose message names the problem in one line."""


class ConfigError(BranchsweepError, ValueError):
    """A configuration value or file is invalid."""


class DataError(BranchsweepError):
    """A data set on disk is missing, truncated or does not match its published layout."""
