"""Pretrained base-model families, built once and shared between studies.

A family's jobs (the tokenizer and each size's pretraining run) are identified by their job ids, which hash
everything that determines them: the task, or for the shared corpus only its languages, data directory and
version (through the tokenizer job), tokenizer settings, ladder, size,
token budget, schedule, seed, checkpoints and the code version. Each finished job is kept in the cache directory
as ``<root>/<kind>-<id16>/`` with its outputs and an ``entry.json`` written last (atomically): an entry without it
is partial, and the next run that needs it resumes it there (pretraining restarts from its resume file).

A study links its job directory (``DIR/jobs/<kind>-<id16>``) to the entry, so everything that reads a base model
(finetuning jobs, the LR sweep, ``study status``) reads it through the link. Two studies that need the same entry
at once are serialised by an OS file lock on ``<root>/.locks/<kind>-<id16>.lock`` (released by the kernel if its
holder dies): the second waits and then finds the entry finished.

The root is ``execution.family_cache`` of the spec, else ``$FTSCALE_FAMILY_CACHE``, else ``families/`` under the
user's cache directory (``platformdirs``); ``off`` in either place keeps every job inside the study directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftscale.errors import UserError

CACHE_ENV = "FTSCALE_FAMILY_CACHE"
OFF_VALUES = ("off", "none", "false", "0")
FAMILY_KINDS = ("tokenizer", "pretrain")
ENTRY_FILE = "entry.json"
LOCKS_DIR = ".locks"


def user_cache(env: str, subdir: str, setting: str | None = None) -> Path | None:
    """A cache directory of ftscale: ``setting`` (or else ``$env``) names it or turns it off (``off``, ``none``,
    ``false``, ``0``); by default ``subdir`` under the user's cache directory. None: caching is off."""
    value = setting if setting is not None else os.environ.get(env)
    if value is not None and value.strip().lower() in OFF_VALUES:
        return None
    if value and value.strip():
        # absolute: study directories link to entries, and a relative link target would resolve from the link
        return Path(value.strip()).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ftscale")) / subdir


def cache_root(setting: str | None = None) -> Path | None:
    """The family cache directory (None: caching is off). ``setting`` is the spec's ``execution.family_cache``."""
    return user_cache(CACHE_ENV, "families", setting)


def lock_path(entry: Path) -> Path:
    return entry.parent / LOCKS_DIR / f"{entry.name}.lock"


def read_entry(entry: Path) -> dict[str, Any] | None:
    """The finished entry's record (its job's metrics and what it is), or None while it is partial or absent."""
    try:
        return json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _describe(kind: str, params: Mapping[str, Any]) -> str:
    if kind == "pretrain":
        pre = params.get("pretrain", {})
        return (
            f"pretrain {params.get('size')} · {pre.get('ladder')} ladder · {pre.get('total_tokens'):,} tokens"
        )
    shared = params.get("shared")
    source = (
        f"shared corpus {'+'.join(shared['langs'])}"
        if shared
        else (params.get("task") or {}).get("name", "?")
    )
    return f"tokenizer · {source} · vocabulary {params.get('tokenizer', {}).get('vocab_size')}"


@contextmanager
def entry_lock(entry: Path, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the entry's lock. ``wait=False`` raises :class:`UserError` when another process holds it."""
    path = lock_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise UserError(
                    f"{entry}: in use by another process (a study is building it); wait for it, then retry"
                ) from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cached(
    kind: str,
    params: Mapping[str, Any],
    work_dir: Path,
    run: Callable[[], Mapping[str, Any]],
    on_wait: Callable[[], None] | None = None,
) -> Mapping[str, Any]:
    """Run a family job in its cache entry ``work_dir`` under the entry's lock, or return the metrics of the
    finished entry that another study built meanwhile. The record is written only after ``run`` returns."""
    with entry_lock(work_dir, on_wait=on_wait):
        done = read_entry(work_dir)
        if done is not None:
            return done["metrics"]
        metrics = dict(run())
        record = {
            "kind": kind,
            "description": _describe(kind, params),
            "params": params,
            "metrics": metrics,
            "finished_at": time.time(),
        }
        tmp = work_dir / (ENTRY_FILE + ".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, work_dir / ENTRY_FILE)
        return metrics


def link_job_dir(link: Path, entry: Path) -> Path:
    """Make the study's job directory ``link`` point at the cache ``entry``; a real directory already there (a run
    from before the cache, or with it off) is kept and used instead. Returns the directory the job uses."""
    if link.is_symlink():
        if Path(os.readlink(link)) == entry:
            return entry
        link.unlink()
    elif link.exists():
        return link
    entry.mkdir(parents=True, exist_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(link.name + ".link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(entry, target_is_directory=True)
    os.replace(tmp, link)
    return entry


@dataclass(frozen=True)
class CacheEntry:
    name: str
    path: Path
    kind: str
    description: str
    complete: bool
    bytes: int
    finished_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "description": self.description,
            "complete": self.complete,
            "bytes": self.bytes,
            "finished_at": self.finished_at,
        }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def list_entries(root: Path) -> list[CacheEntry]:
    """Every entry under ``root``, finished or partial, by kind and name."""
    if not root.is_dir():
        return []
    entries = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or path.name.split("-", 1)[0] not in FAMILY_KINDS:
            continue
        record = read_entry(path)
        entries.append(
            CacheEntry(
                name=path.name,
                path=path,
                kind=path.name.split("-", 1)[0],
                description=record["description"] if record else "partial (being built, or interrupted)",
                complete=record is not None,
                bytes=_size(path),
                finished_at=record.get("finished_at") if record else None,
            )
        )
    return sorted(entries, key=lambda e: (FAMILY_KINDS.index(e.kind), e.name))


def remove_entries(root: Path, names: list[str]) -> list[CacheEntry]:
    """Delete the named entries (a name or a prefix of at least 6 characters of it). An entry in use by a
    running study is refused; studies linked to a removed entry rebuild it when they next need it."""
    entries = list_entries(root)
    chosen: list[CacheEntry] = []
    for name in names:
        hits = [e for e in entries if e.name == name or (len(name) >= 6 and e.name.startswith(name))]
        if not hits:
            raise UserError(
                f"{root}: no cache entry matches {name!r}; 'ftscale cache list' shows the names (or use --all)"
            )
        if len(hits) > 1:
            raise UserError(f"{root}: {name!r} matches {len(hits)} entries; give more of the name")
        chosen += hits
    for entry in chosen:
        try:
            with entry_lock(entry.path, wait=False):
                shutil.rmtree(entry.path)
        except OSError as exc:
            raise UserError(
                f"{entry.path}: cannot remove it ({exc.strerror or exc}); check the cache directory's permissions"
            ) from None
    return chosen
