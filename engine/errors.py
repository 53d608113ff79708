"""The error every entry point turns into one line on stderr and exit code 2."""

from __future__ import annotations


class UsageError(ValueError):
    """A bad command-line value; the message names the option and what to do."""
