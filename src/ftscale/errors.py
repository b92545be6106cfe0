"""Errors a user can cause, printed by the CLI as one line with exit code 2, and the CLI's exit codes."""

from __future__ import annotations

# Exit codes of the ``ftscale`` command: scripts and CI may rely on them (docs/ARCHITECTURE.md, "Guarantees").
EXIT_OK = 0
EXIT_INTERNAL = 1  # an unexpected error: a traceback, a bug to report
EXIT_USAGE = 2  # bad input, a usage error or an unusable path: one line that says what to fix
EXIT_JOBS_FAILED = 3  # the study ran to its end but some jobs failed for good (listed; see 'study status')
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT: nothing is lost, rerun the same command to resume


class UserError(Exception):
    """A problem with the user's input: the message names the file, the field and the fix."""

    exit_code = EXIT_USAGE


class DataError(UserError):
    """Bad or missing data: files, columns, values."""


class SpecError(UserError):
    """An invalid study specification."""


class FitError(UserError):
    """A scaling-law fit that cannot be done with the given points."""


class StoreError(UserError):
    """A study store that cannot be read or written: damaged, not a study, or on an unusable filesystem."""
