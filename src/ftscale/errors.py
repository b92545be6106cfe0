"""Errors a user can cause, printed by the CLI as one line with exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input: the message names the file, the field and the fix."""

    exit_code = 2


class DataError(UserError):
    """Bad or missing data: files, columns, values."""


class SpecError(UserError):
    """An invalid study specification."""


class FitError(UserError):
    """A scaling-law fit that cannot be done with the given points."""
