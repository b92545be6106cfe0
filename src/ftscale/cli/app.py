"""The ``ftscale`` app: its commands, and the entry point that turns every outcome into an exit code.

Every command turns a :class:`ftscale.errors.UserError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

from ftscale.cli._console import make_console
from ftscale.cli.cache import cache_app
from ftscale.cli.demo import demo_command
from ftscale.cli.fit import fit_command
from ftscale.cli.importer import import_command
from ftscale.cli.rank import rank_command
from ftscale.cli.report import advise as advise_command
from ftscale.cli.report import report as report_command
from ftscale.cli.report import reproduce as reproduce_command
from ftscale.cli.study import study_app
from ftscale.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UserError

app = typer.Typer(
    name="ftscale",
    help="Scaling studies of LLM finetuning: fit joint scaling laws, find critical data sizes, advise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(study_app, name="study")
app.add_typer(cache_app, name="cache")
app.command("report")(report_command)
app.command("advise")(advise_command)
app.command("fit")(fit_command)
app.command("rank")(rank_command)
app.command("import")(import_command)
app.command("demo")(demo_command)
app.command("reproduce")(reproduce_command)
err_console = make_console(stderr=True)


@app.callback()
def _root() -> None:
    """ftscale command line."""


def _click_exception_classes() -> tuple[type[BaseException], ...]:
    """The ``ClickException`` classes a usage error may come as: the click that the installed typer uses (its
    own vendored copy in typer >= 0.2x, the separate ``click`` package before) and, if installed, ``click``."""
    classes = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"]
    try:
        import click

        classes.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer brings its own click
        pass
    return tuple(dict.fromkeys(classes))


def _interrupted() -> NoReturn:
    err_console.print("[yellow]interrupted[/]; rerun the same command to resume", highlight=False)
    sys.exit(EXIT_INTERRUPTED)


def _one_line(message: str) -> None:
    err_console.print(f"error: {message}", highlight=False, soft_wrap=True, markup=False, style="bold red")


def main() -> None:
    """Console-script entry point: run the app and turn its outcome into an exit code.

    0 success · 1 an unexpected error (traceback) · 2 a usage error or bad input (one line) · 3 a study ran but
    some of its jobs failed · 130 interrupted (Ctrl-C). See ``ftscale.errors`` and docs/ARCHITECTURE.md.
    """
    args = sys.argv[1:3]
    if args[:1] == ["demo"] or args == ["study", "run"]:
        from ftscale.models.runtime import maybe_reexec_with_tcmalloc

        # Training jobs run 10-40 % faster with tcmalloc; the process re-execs itself once when it is present.
        maybe_reexec_with_tcmalloc()
    usage_errors = _click_exception_classes()
    try:
        code = app(standalone_mode=False)
    except UserError as exc:
        _one_line(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as exc:  # typer versions that re-raise instead of returning the code
        code = exc.exit_code
    except typer.Abort as exc:
        # click turns Ctrl-C into Abort; an Abort of its own (a declined prompt) is exit 1
        if isinstance(exc.__context__, KeyboardInterrupt):
            _interrupted()
        err_console.print("aborted")
        sys.exit(EXIT_INTERNAL)
    except usage_errors as exc:  # usage errors: the usual "Usage: ... Error: ..." lines, exit 2
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except BrokenPipeError:  # e.g. `ftscale study status DIR | head`: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the interpreter flushes stdout at exit
        sys.exit(EXIT_INTERNAL)
    except OSError as exc:  # a path of the user's that cannot be read or written (read-only, full disk, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        _one_line(f"{where}{exc.strerror or exc}; check the path, its permissions and the free space")
        sys.exit(EXIT_USAGE)
    # With standalone_mode=False typer returns the exit code of a typer.Exit (Ctrl-C arrives as 130) and
    # a command's own return value (None) otherwise.
    code = code if isinstance(code, int) else EXIT_OK
    if code == EXIT_INTERRUPTED:
        _interrupted()
    sys.exit(code)
