"""``ftscale cache list | remove``: the pretrained families kept for reuse between studies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from ftscale.cli._console import make_console
from ftscale.errors import UserError

cache_app = typer.Typer(
    help="Pretrained base-model families kept for reuse between studies (tokenizers and pretraining runs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = make_console()

_DIR_HELP = "Cache directory (default: $FTSCALE_FAMILY_CACHE, else the user's cache directory)."


def _root(directory: Path | None) -> Path:
    from ftscale.study.cache import CACHE_ENV, cache_root

    root = directory if directory is not None else cache_root()
    if root is None:
        raise UserError(
            f"the family cache is off (${CACHE_ENV}=off); give --dir to inspect a cache directory"
        )
    return root


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:,.1f} MB"


@cache_app.command("list")
def list_command(
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON: root, entries (name, kind, complete, ...)."
    ),
) -> None:
    """Every cached family job, finished or partial, with its size on disk."""
    from ftscale.study.cache import list_entries

    root = _root(directory)
    entries = list_entries(root)
    if as_json:
        print(json.dumps({"root": str(root), "entries": [e.to_dict() for e in entries]}, indent=2))
        return
    table = Table(title=f"family cache {root}")
    for column in ("name", "what", "state", "size", "finished"):
        table.add_column(column)
    for e in entries:
        finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.finished_at)) if e.finished_at else "–"
        table.add_row(e.name, e.description, "done" if e.complete else "partial", _size(e.bytes), finished)
    console.print(table)
    total = sum(e.bytes for e in entries)
    console.print(f"{len(entries)} entries, {_size(total)}", highlight=False)


@cache_app.command("remove")
def remove_command(
    names: list[str] = typer.Argument(
        None, metavar="NAME...", help="Entry names (or 6+ character prefixes)."
    ),
    directory: Path | None = typer.Option(None, "--dir", help=_DIR_HELP),
    remove_all: bool = typer.Option(False, "--all", help="Remove every entry."),
) -> None:
    """Delete cached family jobs (refused for one a running study is building). A study linked to a removed
    entry builds it again when it next needs it."""
    from ftscale.study.cache import list_entries, remove_entries

    root = _root(directory)
    if remove_all:
        names = [e.name for e in list_entries(root)]
    elif not names:
        raise UserError("name at least one cache entry ('ftscale cache list' shows them), or give --all")
    removed = remove_entries(root, list(names))
    for entry in removed:
        console.print(f"removed {entry.name} ({entry.description}, {_size(entry.bytes)})", highlight=False)
    console.print(f"{len(removed)} entries removed from {root}", highlight=False)
