"""Command-line interface: ``ftscale demo | fit | ...`` (typer + rich).

Every command turns a :class:`ftscale.errors.UserError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from ftscale.errors import UserError
from ftscale.study.cli import study_app

app = typer.Typer(
    name="ftscale",
    help="Scaling studies of LLM finetuning: fit joint scaling laws, find critical data sizes, advise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(study_app, name="study")
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """ftscale command line."""


def main() -> None:
    """Console-script entry point: run the app, report user errors in one line."""
    try:
        app(standalone_mode=False)
    except UserError as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True, markup=False, style="bold red")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: rerun the same command to resume")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
