"""The task registry: ``load_task(name, data_dir, **options)`` for every named and patterned task."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftscale.data.datasets.csl import csl_task, sum_de_zh_task
from ftscale.data.datasets.klexikon import klexikon_task
from ftscale.data.datasets.multi30k import MULTI30K_LANGUAGES, multi30k_task
from ftscale.data.datasets.synthetic import synthetic_task
from ftscale.data.datasets.tatoeba import tatoeba_task
from ftscale.data.datasets.wmt import WMT_SETS, wmt_task
from ftscale.data.tasks import TaskData
from ftscale.errors import UserError


def _synthetic_translation(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"synthetic-([a-z]{2})-([a-z]{2})", name)
    if not match:
        return None
    src, tgt = match.groups()
    return lambda data_dir=None, **kw: synthetic_task("translation", src, tgt, **kw)


def _synthetic_summarization(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"synthetic-sum-([a-z]{2})", name)
    if not match:
        return None
    lang = match.group(1)
    return lambda data_dir=None, **kw: synthetic_task("summarization", lang, lang, **kw)


def _multi30k(name: str) -> Callable[..., TaskData] | None:
    match = re.fullmatch(r"multi30k-([a-z]{2})-([a-z]{2})", name)
    if not match or not set(match.groups()) <= set(MULTI30K_LANGUAGES) or match.group(1) == match.group(2):
        return None
    src, tgt = match.groups()
    return lambda data_dir=None, **kw: multi30k_task(data_dir, src, tgt, **kw)


def _wmt(name: str) -> Callable[..., TaskData] | None:
    if name not in WMT_SETS:
        return None
    src, tgt = name.split("-")[1:]
    return lambda data_dir=None, **kw: wmt_task(data_dir, src, tgt, **kw)


TASKS: dict[str, Callable[..., TaskData]] = {
    "tatoeba-en-zh": tatoeba_task,
    "klexikon-de": klexikon_task,
    "csl-zh": csl_task,
    "sum-de-zh": sum_de_zh_task,
}


# The languages a named task reads and writes, known without loading it (patterned names carry theirs).
TASK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "tatoeba-en-zh": ("en", "zh"),
    "klexikon-de": ("de",),
    "csl-zh": ("zh",),
    "sum-de-zh": ("de", "zh"),
}


# Families of names, with the function that takes their keyword arguments (for error messages).
TASK_PATTERNS: dict[str, tuple[Callable[[str], Callable[..., TaskData] | None], Callable[..., TaskData]]] = {
    "synthetic-<src>-<tgt> (e.g. synthetic-en-de)": (_synthetic_translation, synthetic_task),
    "synthetic-sum-<lang> (e.g. synthetic-sum-de)": (_synthetic_summarization, synthetic_task),
    "multi30k-<src>-<tgt> (en, de, fr, cs; e.g. multi30k-en-de)": (_multi30k, multi30k_task),
    "wmt14-en-de, wmt19-en-zh (Hugging Face datasets; option dataset= for a local copy)": (_wmt, wmt_task),
}


def task_names() -> list[str]:
    """Valid task names and name patterns, for help texts and error messages."""
    return [*TASKS, *TASK_PATTERNS]


def known_task(name: str) -> bool:
    """Whether ``name`` names a task of the registry (without loading anything)."""
    return name in TASKS or any(matcher(name) is not None for matcher, _ in TASK_PATTERNS.values())


def task_languages(name: str) -> tuple[str, ...]:
    """The languages of a registered task, from its name alone (nothing is loaded)."""
    if name in TASK_LANGUAGES:
        return TASK_LANGUAGES[name]
    if not known_task(name):
        raise UserError(f"unknown task {name!r}; valid names: {', '.join(task_names())}")
    return tuple(dict.fromkeys(re.findall(r"(?<![a-z0-9])([a-z]{2})(?![a-z0-9])", name.split("-", 1)[1])))


def _resolve(name: str) -> tuple[Callable[..., TaskData], Callable[..., TaskData]] | None:
    """(factory, function whose signature lists the options) of a registered task name, or None."""
    if name in TASKS:
        return TASKS[name], TASKS[name]
    for matcher, function in TASK_PATTERNS.values():
        factory = matcher(name)
        if factory is not None:
            return factory, function
    return None


def task_options(name: str) -> list[str] | None:
    """The option keys a task accepts (``task.options`` of a study file), sorted; None for an unknown name.

    The name fixes the data directory, the languages and (synthetic tasks) the kind, so those are not options.
    """
    resolved = _resolve(name)
    if resolved is None:
        return None
    function = resolved[1]
    fixed = {"data_dir", "kind", "src", "tgt"} if function is synthetic_task else {"data_dir", "src", "tgt"}
    return sorted(set(inspect.signature(function).parameters) - fixed)


def load_task(name: str, data_dir: Path | str | None = None, **kwargs: Any) -> TaskData:
    """Build a task by name, e.g. ``load_task("multi30k-en-de")`` or ``load_task("synthetic-en-de", n_train=2000)``.

    ``kwargs`` go to the task's function (see :func:`multi30k_task`, :func:`synthetic_task`, ...).
    """
    resolved = _resolve(name)
    if resolved is None:
        raise UserError(f"unknown task {name!r}; valid names: {', '.join(task_names())}")
    factory = resolved[0]
    allowed = task_options(name) or []
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UserError(f"task {name!r}: unknown option(s) {unknown}; allowed: {allowed}")
    return factory(data_dir=data_dir, **kwargs)
