"""The one way CLI modules make their rich console."""

from __future__ import annotations

import sys

from rich.console import Console

#: Width when the output is not a terminal (a log file, a pipe, a notebook cell): rich's default there (80 columns,
#: or an inherited ``COLUMNS``) wraps the wider tables (fit summaries, law comparisons) into unreadable slivers.
PIPE_WIDTH = 160


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    is_terminal = hasattr(stream, "isatty") and stream.isatty()
    width = None if is_terminal else PIPE_WIDTH
    return Console(stderr=stderr, width=width)
