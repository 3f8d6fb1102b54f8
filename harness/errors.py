"""The one root of every error a user can cause or meet.

Each `HarnessError` carries a one-line message naming the input and what is
wrong with it; the command line prints that line and exits with status 2.
Anything else that escapes is a bug, and the command line says so.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error a user can cause or meet, with a one-line message."""


class UsageError(HarnessError):
    """Bad input from the user: an argument, an option value, a file they named."""
